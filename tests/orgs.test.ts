import { describe, expect, it } from 'vitest'
import { anonClient, createUser, serviceClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'

describe('orgs through PostgREST', () => {
  it('gives every new user a personal org that only they can see', async () => {
    const alice = await createUser('alice')
    const bob = await createUser('bob')

    const { data, error } = await alice.client.from('orgs').select('id, has_usage_credits, personal_user_id')
    expect(error).toBeNull()
    expect(data).toEqual([{ id: alice.personalOrgId, has_usage_credits: false, personal_user_id: alice.id }])

    const other = await alice.client.from('orgs').select('id').eq('id', bob.personalOrgId)
    expect(other.error).toBeNull()
    expect(other.data).toEqual([])
  })

  it('lists the caller\'s orgs with list_my_orgs, personal org first', async () => {
    const alice = await createUser('alice')
    const bob = await createUser('bob')
    await primaryDb.query(`insert into public.org_members (org_id, user_id, role) values ($1, $2, 'admin')`, [bob.personalOrgId, alice.id])

    const { data, error } = await alice.client.rpc('list_my_orgs')
    expect(error).toBeNull()
    expect(data.map((o: { org_id: string; role: string; is_personal: boolean }) => [o.org_id, o.role, o.is_personal])).toEqual([
      [alice.personalOrgId, 'owner', true],
      [bob.personalOrgId, 'admin', false],
    ])
  })

  it('refuses direct writes from users and any read from anon', async () => {
    const alice = await createUser('alice')

    const update = await alice.client.from('orgs').update({ has_usage_credits: true }).eq('id', alice.personalOrgId).select()
    expect(update.error?.code).toBe('42501')
    const insert = await alice.client.from('orgs').insert({ name: 'mine' })
    expect(insert.error?.code).toBe('42501')
    const { rows } = await primaryDb.query('select has_usage_credits from public.orgs where id = $1', [alice.personalOrgId])
    expect(rows).toEqual([{ has_usage_credits: false }])

    const anon = await anonClient().from('orgs').select('id')
    expect(anon.error?.code).toBe('42501')
    const anonRpc = await anonClient().rpc('list_my_orgs')
    expect(anonRpc.error?.code).toBe('42501')
  })

  it('lets the service role read every org', async () => {
    const alice = await createUser('alice')
    const bob = await createUser('bob')
    const { data, error } = await serviceClient().from('orgs').select('id').in('id', [alice.personalOrgId, bob.personalOrgId])
    expect(error).toBeNull()
    expect(data).toHaveLength(2)
  })
})
