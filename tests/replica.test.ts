import { describe, expect, it } from 'vitest'
import { createUser } from './support/clients.ts'
import { eventually, primaryDb, replicaDb } from './support/db.ts'

describe('logical read replica (publication plugin_read)', () => {
  it('receives a new org and a flipped credits flag from the primary', async () => {
    const user = await createUser('replica')
    const row = await eventually('org on the replica', async () => {
      const { rows } = await replicaDb.query('select has_usage_credits from public.orgs where id = $1', [user.personalOrgId])
      return rows[0]
    })
    expect(row).toEqual({ has_usage_credits: false })

    // Through the engine, as in production: a grant flips the flag in the same transaction.
    await primaryDb.query(`select public.grant_credits($1, 1, 'promotion')`, [user.personalOrgId])
    await eventually('flag on the replica', async () => {
      const { rows } = await replicaDb.query('select 1 from public.orgs where id = $1 and has_usage_credits', [user.personalOrgId])
      return rows[0]
    })
  })

  it('holds only the published columns: no names or other org details', async () => {
    const { rows } = await replicaDb.query(
      `select column_name from information_schema.columns where table_schema = 'public' and table_name = 'orgs' order by ordinal_position`,
    )
    expect(rows.map((r) => r.column_name)).toEqual(['id', 'has_usage_credits'])
  })

  it('has tables only: none of our views or functions', async () => {
    const { rows } = await replicaDb.query(
      `select (select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname in ('public', 'private')) as functions,
              (select count(*)::int from pg_views where schemaname in ('public', 'private')) as views`,
    )
    expect(rows).toEqual([{ functions: 0, views: 0 }])
  })
})
