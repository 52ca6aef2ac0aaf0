import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { hostedPostgresRole, postgresRole, sqlstateOf } from './support/hosted.ts'

// On hosted Supabase `postgres` is not a superuser: a migration that needs one fails on
// `supabase db push` there. The stack `npm test` starts must refuse it the same way. A stack
// from the environment (yours, or `supabase start`) is whatever it is: not ours to assert on.
const ownStack = process.env.TOLLGATE_TESTS_OWN_STACK === '1'
if (!ownStack) {
  console.warn('hosted-privileges: skipped, SUPABASE_DB_URL names a stack `npm test` did not start (TOLLGATE_TESTS_OWN_STACK is not 1)')
}

const superuserDb = ownStack ? new pg.Pool({ connectionString: process.env.TOLLGATE_SUPERUSER_DB_URL, max: 1 }) : undefined
afterAll(async () => {
  await superuserDb?.end()
})

describe.skipIf(!ownStack)('postgres has hosted Supabase privileges, not a superuser\'s', () => {
  it('connects as postgres, which has the attributes and memberships it has on hosted Supabase', async () => {
    expect(new URL(env.SUPABASE_DB_URL).username).toBe('postgres')
    expect(await postgresRole(primaryDb)).toEqual(hostedPostgresRole)
  })

  it('leaves the cluster to supabase_admin, reached through TOLLGATE_SUPERUSER_DB_URL', async () => {
    const { rows } = await superuserDb!.query('select current_user::text as who, (select rolsuper from pg_roles where rolname = current_user) as superuser')
    expect(rows).toEqual([{ who: 'supabase_admin', superuser: true }])
  })

  it('refuses what only a superuser may do', async () => {
    const attempts = {
      event_trigger: 'create function public.probe() returns event_trigger language plpgsql as $$ begin end $$; create event trigger probe on ddl_command_end execute function public.probe()',
      session_replication_role: 'set local session_replication_role = replica',
      copy_from_program: 'copy public.credit_prices (operation) from program \'true\'',
      superuser_role: 'create role tollgate_probe superuser',
      checkpoint: 'checkpoint',
      untrusted_language: 'create function public.probe() returns int language c as \'probe\', \'probe\'',
      read_server_file: 'select pg_catalog.pg_read_file(\'postgresql.conf\')',
    }
    const outcomes = Object.fromEntries(await Promise.all(Object.entries(attempts).map(async ([what, sql]) => [what, await sqlstateOf(primaryDb, sql)])))
    expect(outcomes).toEqual(Object.fromEntries(Object.keys(attempts).map((what) => [what, '42501'])))
  })

  it('creates an allow-listed extension (as supautils allows on hosted), and no other', async () => {
    // postgres_fdw is untrusted but on hosted Supabase's list; file_fdw is left off it there.
    expect(await sqlstateOf(primaryDb, 'create extension postgres_fdw with schema extensions')).toBeNull()
    expect(await sqlstateOf(primaryDb, 'create extension file_fdw with schema extensions')).toBe('42501')
  })

  it('schedules pg_cron jobs and reads cron.job, but cannot write it directly', async () => {
    expect(await sqlstateOf(primaryDb, `select cron.schedule('tollgate-probe', '0 0 1 1 *', 'select 1')`)).toBeNull()
    const { rows } = await primaryDb.query(`select count(*)::int as jobs from cron.job where username = 'postgres'`)
    expect(rows[0].jobs).toBeGreaterThanOrEqual(4)
    expect(await sqlstateOf(primaryDb, `update cron.job set active = active`)).toBe('42501')
  })
})
