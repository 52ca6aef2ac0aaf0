import pg from 'pg'
import { afterAll, expect, it } from 'vitest'
import { freePorts, startStack, type RunningStack } from '@tollgate/local-stack'
import { hostedPostgresRole, postgresRole, sqlstateOf } from '../support/hosted.ts'
import { sleep } from './own-stack.ts'

// A named stack restarted warm: on other ports (named stacks take free ports each start), with
// the privileges the project's migrations set still in force afterwards, and `postgres` still
// what it is on hosted Supabase (not a superuser; allow-listed extensions only).

const name = `warm-restart-${process.pid}`
let stack: RunningStack | undefined

afterAll(async () => {
  await stack?.stop({ destroy: true })
}, 60_000)

async function withDb<T>(url: string, work: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  try {
    return await work(db)
  } finally {
    await db.end()
  }
}

/** Default privileges and who may execute what: everything the deny-by-default migration set. */
const privileges = (url: string) =>
  withDb(url, async (db) => ({
    defaults: (await db.query(`select defaclrole::regrole::text as role, defaclnamespace::regnamespace::text as schema, defaclobjtype as type, defaclacl::text as acl
                               from pg_default_acl order by 1, 2, 3`)).rows,
    anonExecutes: (await db.query(`select count(*)::int as n from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                                   where n.nspname in ('public', 'private') and has_function_privilege('anon', p.oid, 'execute')`)).rows[0].n,
  }))

it('restarts on new ports with replication following and the project\'s privileges intact', async () => {
  const first = await freePorts()
  stack = await startStack({ name, ports: first, watch: false, seed: false })
  const before = await privileges(stack.env.SUPABASE_DB_URL)
  expect(await withDb(stack.env.SUPABASE_DB_URL, postgresRole)).toEqual(hostedPostgresRole)
  await stack.stop()

  let second = await freePorts()
  while (second.db === first.db) second = await freePorts()
  stack = await startStack({ name, ports: second, watch: false, seed: false })
  const url = stack.env.SUPABASE_DB_URL
  expect(await privileges(url)).toEqual(before)

  // Still hosted Supabase's postgres: the superuser is supabase_admin, and what needs it is refused.
  expect(await withDb(url, postgresRole)).toEqual(hostedPostgresRole)
  expect(await withDb(stack.superuserDbUrl, async (db) => (await db.query('select current_user::text as who')).rows[0].who)).toBe('supabase_admin')
  expect(
    await withDb(url, async (db) => ({
      allowed_extension: await sqlstateOf(db, 'create extension postgres_fdw with schema extensions'),
      other_extension: await sqlstateOf(db, 'create extension file_fdw with schema extensions'),
      session_replication_role: await sqlstateOf(db, 'set local session_replication_role = replica'),
      write_cron_job: await sqlstateOf(db, 'update cron.job set active = active'),
    })),
  ).toEqual({ allowed_extension: null, other_extension: '42501', session_replication_role: '42501', write_cron_job: '42501' })

  // A function created after the restart is still nobody's until granted.
  const fresh = await withDb(url, async (db) => {
    await db.query('create function public.created_after_restart() returns int language sql set search_path = \'\' as $$ select 1 $$')
    return (await db.query(`select has_function_privilege('anon', 'public.created_after_restart()', 'execute') as anon`)).rows[0].anon
  })
  expect(fresh).toBe(false)

  // The replica follows the primary on its new port.
  const userId = crypto.randomUUID()
  const orgId = await withDb(url, async (db) => {
    await db.query(`insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)`, [userId, `${userId}@example.test`])
    return (await db.query('select id from public.orgs where personal_user_id = $1', [userId])).rows[0].id as string
  })
  const replicated = await withDb(stack.env.TOLLGATE_REPLICA_DB_URL, async (replica) => {
    for (let i = 0; i < 100; i++) {
      const { rowCount } = await replica.query('select 1 from public.orgs where id = $1', [orgId]).catch(() => ({ rowCount: 0 }))
      if (rowCount) return true
      await sleep(100)
    }
    return false
  })
  expect(replicated).toBe(true)
}, 120_000)

// The physical kind (a hot standby, as a Supabase Read Replica): the standby keeps its copy over
// a warm restart and streams from the primary's new port; switching the stack to the other kind
// replaces the replica and leaves no replication slot behind on the primary (a slot nobody reads
// keeps WAL forever).
const kindsName = `replica-kinds-${process.pid}`
let kindsStack: RunningStack | undefined

afterAll(async () => {
  await kindsStack?.stop({ destroy: true })
}, 60_000)

/** A new user's personal org, made on the primary; true once the replica has it. */
async function replicatesNewOrg(stack: RunningStack): Promise<boolean> {
  const userId = crypto.randomUUID()
  const orgId = await withDb(stack.env.SUPABASE_DB_URL, async (db) => {
    await db.query(`insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)`, [userId, `${userId}@example.test`])
    return (await db.query('select id from public.orgs where personal_user_id = $1', [userId])).rows[0].id as string
  })
  return withDb(stack.env.TOLLGATE_REPLICA_DB_URL, async (replica) => {
    for (let i = 0; i < 100; i++) {
      const { rowCount } = await replica.query('select 1 from public.orgs where id = $1', [orgId]).catch(() => ({ rowCount: 0 }))
      if (rowCount) return true
      await sleep(100)
    }
    return false
  })
}

const slotsOf = (stack: RunningStack) =>
  withDb(stack.env.SUPABASE_DB_URL, async (db) =>
    (await db.query('select slot_name, slot_type, active from pg_replication_slots order by 1')).rows)

/** Where the standby streams from, and whether it is one (as its superuser: supabase_admin). */
const standbyState = (stack: RunningStack) =>
  withDb(stack.replicaSuperuserDbUrl, async (db) =>
    (await db.query(`select pg_is_in_recovery() as standby, current_user::text as superuser,
                            (select sender_port from pg_stat_wal_receiver) as streams_from_port,
                            (select system_identifier::text from pg_control_system()) as system_id`)).rows[0])

it('a physical standby follows the primary to new ports; switching kinds drops the slot of the replica it replaces', async () => {
  const first = await freePorts()
  kindsStack = await startStack({ name: kindsName, ports: first, watch: false, seed: false, replicaKind: 'physical' })
  expect(kindsStack.env).toMatchObject({ TOLLGATE_REPLICA_KIND: 'physical' })
  expect(kindsStack.env.TOLLGATE_REPLICA_SUBSCRIPTION).toBeUndefined()
  const created = await standbyState(kindsStack)
  expect(created).toMatchObject({ standby: true, superuser: 'supabase_admin', streams_from_port: first.db })
  expect(await slotsOf(kindsStack)).toEqual([{ slot_name: 'tollgate_standby', slot_type: 'physical', active: true }])
  expect(await replicatesNewOrg(kindsStack)).toBe(true)
  await kindsStack.stop()

  let second = await freePorts()
  while (second.db === first.db) second = await freePorts()
  kindsStack = await startStack({ name: kindsName, ports: second, watch: false, seed: false, replicaKind: 'physical' })
  expect(await standbyState(kindsStack)).toEqual({ ...created, streams_from_port: second.db })
  expect(await slotsOf(kindsStack)).toEqual([{ slot_name: 'tollgate_standby', slot_type: 'physical', active: true }])
  expect(await replicatesNewOrg(kindsStack)).toBe(true)
  // On a standby `postgres` is the primary's: the same role, and read-only there.
  expect(await withDb(kindsStack.env.TOLLGATE_REPLICA_DB_URL, postgresRole)).toEqual(hostedPostgresRole)
  await kindsStack.stop()

  kindsStack = await startStack({ name: kindsName, ports: await freePorts(), watch: false, seed: false, replicaKind: 'logical' })
  expect(kindsStack.env).toMatchObject({ TOLLGATE_REPLICA_KIND: 'logical', TOLLGATE_REPLICA_SUBSCRIPTION: 'plugin_read_sub' })
  expect(await slotsOf(kindsStack)).toEqual([{ slot_name: 'plugin_read_sub', slot_type: 'logical', active: true }])
  expect(await replicatesNewOrg(kindsStack)).toBe(true)
  await kindsStack.stop()

  kindsStack = await startStack({ name: kindsName, ports: await freePorts(), watch: false, seed: false, replicaKind: 'physical' })
  expect(await slotsOf(kindsStack)).toEqual([{ slot_name: 'tollgate_standby', slot_type: 'physical', active: true }])
  expect(await replicatesNewOrg(kindsStack)).toBe(true)
}, 180_000)
