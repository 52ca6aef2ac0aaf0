import { describe, expect, it } from 'vitest'
import { createUser } from './support/clients.ts'
import { eventually, primaryDb, replicaDb } from './support/db.ts'
import { sqlstateOf } from './support/hosted.ts'
import { replicaKind } from './support/replica.ts'

// The read replica at TOLLGATE_REPLICA_DB_URL, of either kind (`npm test` runs this file on
// both): a logical subscriber of publication plugin_read holds the published tables and
// columns and nothing else; a physical standby holds everything the primary has, read-only.

/** Our functions and views, by schema-qualified name. */
const objectsSql = `select array(select n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                                  where n.nspname in ('public', 'private') order by 1) as functions,
                           array(select schemaname || '.' || viewname from pg_views where schemaname in ('public', 'private') order by 1) as views`

describe('read replica', () => {
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

  it('logical: only the published columns of orgs (no names or other org details); physical: all of them', async () => {
    const columnsOf = async (db: typeof replicaDb) =>
      (await db.query(`select column_name from information_schema.columns where table_schema = 'public' and table_name = 'orgs' order by ordinal_position`))
        .rows.map((r) => r.column_name)
    const onReplica = await columnsOf(replicaDb)
    if ((await replicaKind()) === 'logical') {
      expect(onReplica).toEqual(['id', 'has_usage_credits'])
    } else {
      expect(onReplica).toEqual(await columnsOf(primaryDb))
      expect(onReplica).toContain('name')
    }
  })

  it('logical: tables only, none of our views or functions; physical: every one of the primary\'s, and read-only', async () => {
    const onReplica = (await replicaDb.query<{ functions: string[]; views: string[] }>(objectsSql)).rows[0]!
    if ((await replicaKind()) === 'logical') {
      expect(onReplica).toEqual({ functions: [], views: [] })
      return
    }
    const onPrimary = (await primaryDb.query<{ functions: string[]; views: string[] }>(objectsSql)).rows[0]!
    expect(onReplica).toEqual(onPrimary)
    expect(onReplica.functions).toContain('public.consume_credits(p_operation text, p_request_id text, p_quantity integer, p_org_id uuid, p_metadata jsonb)')
    // Hot standby: every session is read-only, whatever the role may do on the primary.
    expect(await sqlstateOf(replicaDb, `update public.orgs set name = name where false`)).toBe('25006')
    expect((await replicaDb.query('select pg_is_in_recovery() as standby')).rows[0]).toEqual({ standby: true })
  })
})
