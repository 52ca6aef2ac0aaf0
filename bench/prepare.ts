// Data the scenarios run on, arranged as `postgres` (not a superuser, as on hosted Supabase) on
// the throwaway bench stack; the bulk ledger load alone runs as the superuser.
// Users are inserted into auth.users as GoTrue would (the trigger gives each a personal org and
// its balance row); credits arrive through grant_credits, as in production.
import fs from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { benchDir } from './lib/paths.ts'
import { log } from './lib/log.ts'
import { settings } from './lib/settings.ts'

/** Deterministic user ids, so pgbench scripts can name user n without a lookup. */
export const userId = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`
/** The same, as a SQL expression of an integer expression. */
export const userIdSql = (n: string): string => `('00000000-0000-4000-8000-' || lpad(to_hex(${n}), 12, '0'))`

/** Users outside the numbered range 1..maintenanceOrgs, each with one job. */
export const special = {
  hot: 900_000_001,
  gateSmall: 900_000_002,
  gateLarge: 900_000_003,
  ledgerSmall: 900_000_004,
  ledgerBig: 900_000_005,
  usageSmall: 900_000_006,
  usageBig: 900_000_007,
} as const

export const priceOperation = 'bench_op'
/** Funding per org: far more than any run can spend, so no charge meets insufficient_credits. */
export const funding = 1_000_000_000_000
export const gateApp = { small: 'com.bench.gate10.app', large: 'com.bench.gate10k.app' } as const

export interface Prepared {
  orgOf: Record<keyof typeof special, string>
  users: number
  timings_s: Record<string, number>
}

async function timed<T>(timings: Record<string, number>, what: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now()
  const result = await work()
  timings[what] = Math.round(performance.now() - started) / 1000
  log(`  ${what}: ${timings[what]} s`)
  return result
}

export async function prepare(db: pg.Client, admin: pg.Client, replica: pg.Client): Promise<Prepared> {
  const timings: Record<string, number> = {}
  log('preparing data')
  // pg_cron would expire grants and refresh flags under our feet (scenario 6 measures exactly
  // those jobs), and its runs would add noise to every other figure: stop its jobs.
  await db.query('select cron.alter_job(jobid, active => false) from cron.job')
  await db.query(fs.readFileSync(path.join(benchDir, 'sql/schema.sql'), 'utf8'))

  const specials = Object.values(special)
  await timed(timings, `${settings.maintenanceOrgs + specials.length} users (personal org + balance row each)`, async () => {
    await db.query(
      `insert into auth.users (id, aud, role, email, raw_user_meta_data)
       select ${userIdSql('n')}::uuid, 'authenticated', 'authenticated', 'bench-' || n || '@bench.test', '{}'
       from (select generate_series(1, $1::int) as n union all select unnest($2::int[])) u`,
      [settings.maintenanceOrgs, specials],
    )
  })
  const orgRows = await db.query<{ n: number; org_id: string }>(
    `select s.n, o.id as org_id from unnest($1::int[]) s(n) join public.orgs o on o.personal_user_id = ${userIdSql('s.n')}::uuid`,
    [specials],
  )
  const orgOf = Object.fromEntries(
    Object.entries(special).map(([key, n]) => [key, orgRows.rows.find((row) => Number(row.n) === n)!.org_id]),
  ) as Prepared['orgOf']

  await db.query(`insert into public.credit_prices (operation, credits, description) values ($1, 1, 'benchmark operation')`, [priceOperation])

  await timed(timings, `fund ${settings.distinctOrgs + specials.length} orgs with grant_credits`, async () => {
    const { rows } = await db.query<{ granted: string }>(
      `select count(public.grant_credits(o.id, $3::bigint, 'purchase', 'bench-fund')) as granted
       from public.orgs o
       where o.personal_user_id in (select ${userIdSql('n')}::uuid from (select generate_series(1, $1::int) as n union all select unnest($2::int[])) u)`,
      [settings.distinctOrgs, specials, funding],
    )
    if (Number(rows[0]!.granted) !== settings.distinctOrgs + specials.length) throw new Error(`setup: funded ${rows[0]!.granted} orgs`)
  })

  await timed(timings, 'floor, client-side locking and view-gate tables', async () => {
    // The floor's rows are keyed by the owner's user id: the pgbench client names both sides the
    // same way (user n), and the floor has no membership lookup to turn a user into an org.
    await db.query(
      `insert into bench.floor_balances (org_id, available)
       select ${userIdSql('n')}::uuid, $3::bigint from (select generate_series(1, $1::int) as n union all select $2::int) u`,
      [settings.distinctOrgs, special.hot, funding],
    )
    await db.query(`insert into bench.mcp_user_accounts (user_id, credits_balance) values ($1, $2)`, [userId(special.hot), funding])
    const [small, large] = settings.capgoGrants as [number, number]
    for (const [org, grants] of [[orgOf.gateSmall, small], [orgOf.gateLarge, large]] as const) {
      // A realistic mix: some grants used up, some expired, most still live.
      await db.query(
        `insert into bench.capgo_grants (org_id, amount, remaining, expires_at, created_at)
         select $1::uuid, 1000, (i % 3) * 500, now() + ((i % 10) - 3) * interval '1 day', now() - i * interval '1 minute'
         from generate_series(1, $2::int) i`,
        [org, grants],
      )
    }
    for (const [org, appId] of [[orgOf.gateSmall, gateApp.small], [orgOf.gateLarge, gateApp.large]] as const) {
      await db.query(`insert into public.apps (app_id, org_id, name) values ($1, $2, 'bench app')`, [appId, org])
      const versions = await db.query<{ id: string; name: string }>(
        `insert into public.app_versions (app_id, org_id, name, bundle_url, checksum)
         select $1, $2, v, 'https://example.com/' || v || '.zip', repeat('c', 64) from unnest(array['1.0.0', '1.1.0']) v
         returning id, name`,
        [appId, org],
      )
      const latest = versions.rows.find((v) => v.name === '1.1.0')!.id
      await db.query(
        `insert into public.channels (app_id, org_id, name, version_id, is_default, allow_device_self_set) values ($1, $2, 'production', $3, true, false)`,
        [appId, org, latest],
      )
    }
  })

  await timed(timings, 'vacuum analyze', async () => {
    // As the superuser: `postgres` may vacuum only what it owns (not auth.users, nor the catalogs).
    await admin.query('vacuum analyze')
  })
  await timed(timings, 'replica caught up', async () => {
    await waitFor(async () => {
      const { rows } = await replica.query<{ ready: boolean }>(
        `select count(*) filter (where c.is_default) = 2 and bool_and(o.has_usage_credits) as ready
         from public.apps a join public.orgs o on o.id = a.org_id left join public.channels c on c.app_id = a.app_id
         where a.app_id = any($1)`,
        [[gateApp.small, gateApp.large]],
      )
      return rows[0]?.ready === true
    }, 60_000, 'replica did not receive the bench apps')
    await replicationCaughtUp(db)
  })
  return { orgOf, users: settings.maintenanceOrgs + specials.length, timings_s: timings }
}

/** Appends ledger rows (amount 0: the ledger still sums to the balance) to reach `rows` for the org. */
export async function growLedger(db: pg.Client, url: string, orgId: string, rows: number): Promise<void> {
  const { rows: current } = await db.query<{ n: string; available: string }>(
    `select (select count(*) from public.credit_ledger l where l.org_id = $1) as n,
            (select available from public.credit_balances b where b.org_id = $1) as available`,
    [orgId],
  )
  const missing = rows - Number(current[0]!.n)
  if (missing <= 0) return
  // Bulk load (`url` is TOLLGATE_SUPERUSER_DB_URL): the ledger is append-only, INSERT is its
  // ordinary path.
  // Two loaders, one per core: nothing is measured while they run.
  const loaders = 2
  await inParallel(url, loaders, async (client, part) => {
    const first = Math.floor((missing * part) / loaders) + 1
    const last = Math.floor((missing * (part + 1)) / loaders)
    await client.query('begin')
    await client.query(
      `insert into public.credit_ledger (org_id, kind, amount, held_delta, balance_after, held_after, actor_role, metadata, created_at)
       select $1::uuid, 'adjustment', 0, 0, $2::bigint, 0, 'system', '{"bench": "history"}', now() - g * interval '1 second'
       from generate_series($3::int, $4::int) g`,
      [orgId, current[0]!.available, first, last],
    )
    await client.query('commit')
  })
}

/** Runs `work` on `n` extra connections to the same database at once (bulk set-up only). */
export async function inParallel(url: string, n: number, work: (client: pg.Client, part: number) => Promise<void>): Promise<void> {
  const clients = Array.from({ length: n }, () => new pg.Client({ connectionString: url, application_name: 'bench-setup' }))
  for (const c of clients) c.on('error', () => {})
  try {
    await Promise.all(clients.map((c) => c.connect()))
    await Promise.all(clients.map((c, part) => work(c, part)))
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})))
  }
}

export async function waitFor(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(what)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/**
 * Waits until the logical replication slot has confirmed everything written so far. After a
 * bulk load the walsender still decodes every WAL record (published table or not), and that
 * CPU must not land in the next measurement. Returns the seconds waited.
 */
export async function replicationCaughtUp(db: pg.Client, timeoutMs = 600_000): Promise<number> {
  const started = performance.now()
  const { rows } = await db.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn')
  await waitFor(
    async () => {
      const lag = await db.query<{ behind: boolean }>(
        `select coalesce(bool_or(confirmed_flush_lsn is null or confirmed_flush_lsn < $1::pg_lsn), false) as behind
         from pg_replication_slots where slot_type = 'logical'`,
        [rows[0]!.lsn],
      )
      return lag.rows[0]?.behind === false
    },
    timeoutMs,
    'the logical replica did not catch up with the bulk load',
  )
  return Math.round(performance.now() - started) / 1000
}
