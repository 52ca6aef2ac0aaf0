// Scenario 6: the pg_cron jobs at scale. refresh_orgs_has_usage_credits() over every org when
// nothing drifted (rows written, WAL, time); expire_credit_grants() draining one due grant per
// org in its cron batch size, while a few consumers charge those same orgs (their worst
// latency is the longest lock wait a user saw).
import pg from 'pg'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { lifecycle } from '../lib/lifecycle.ts'
import { log } from '../lib/log.ts'
import { pass } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { median, percentile, round } from '../lib/stats.ts'
import { inParallel, priceOperation, replicationCaughtUp, userIdSql } from '../prepare.ts'

interface RefreshRun {
  written: number
  orgs_updated: number
  wal_bytes: number
  wal_records: number
  wal_fpi: number
  ms: number
}

/**
 * One call as the cron job makes it, in its own transaction: its return value, the orgs rows
 * this transaction updated (pg_stat_xact_user_tables), the WAL this backend generated during
 * the call (EXPLAIN's WAL counters: other sessions' WAL, e.g. autovacuum, is not counted) and
 * its time.
 */
async function refreshOnce(db: pg.Client): Promise<RefreshRun> {
  await db.query('begin')
  const { rows } = await db.query<{ 'QUERY PLAN': Array<{ Plan: { 'WAL Bytes'?: number; 'WAL Records'?: number; 'WAL FPI'?: number }; 'Execution Time': number }> }>(
    'explain (analyze, wal, buffers, format json) select public.refresh_orgs_has_usage_credits(10000)',
  )
  const stats = await db.query<{ upd: string }>(`select n_tup_upd as upd from pg_stat_xact_user_tables where relid = 'public.orgs'::regclass`)
  await db.query('commit')
  // The return value, from a plain call (EXPLAIN does not show it); it repairs nothing here.
  const written = await db.query<{ written: number }>('select public.refresh_orgs_has_usage_credits(10000) as written')
  const plan = rows[0]!['QUERY PLAN'][0]!
  return {
    written: Number(written.rows[0]!.written),
    orgs_updated: Number(stats.rows[0]?.upd ?? 0),
    wal_bytes: plan.Plan['WAL Bytes'] ?? 0,
    wal_records: plan.Plan['WAL Records'] ?? 0,
    wal_fpi: plan.Plan['WAL FPI'] ?? 0,
    ms: round(plan['Execution Time'], 2),
  }
}

/** WAL the refresh generated, per run; one figure when every run generated the same. */
function walText(runs: RefreshRun[]): string {
  const each = runs.map((r) => `${r.wal_bytes} B (${r.wal_records} records, ${r.wal_fpi} full-page images)`)
  return new Set(each).size === 1 ? `WAL ${each[0]} in each run` : `WAL per run ${each.join(' / ')}`
}

interface Call {
  at: number
  ms: number
}

/** A consumer charging random funded orgs until told to stop; records every call. */
async function consumer(url: string, stop: { now: boolean }, calls: Call[], errors: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-consumer' })
  client.on('error', () => {})
  await client.connect()
  try {
    let i = 0
    while (!stop.now && !lifecycle.closing) {
      const n = 1 + Math.floor(Math.random() * settings.distinctOrgs)
      const started = performance.now()
      try {
        await client.query({
          name: 'bench-consume',
          text: `select set_config('request.jwt.claims', json_build_object('role', 'authenticated', 'sub', ${userIdSql('$1::int')})::text, true),
                        public.consume_credits($2, $3)`,
          values: [n, priceOperation, `expiry-${process.pid}-${started}-${i++}`],
        })
      } catch (error) {
        errors.push((error as Error).message)
        if (errors.length >= 100) break
      }
      calls.push({ at: started, ms: performance.now() - started })
    }
  } finally {
    await client.end()
  }
}

export async function maintenance(ctx: Context): Promise<ScenarioOutput> {
  const db = ctx.db
  const orgs = Number((await db.query<{ n: string }>('select count(*) as n from public.orgs')).rows[0]!.n)

  // Flag refresh with nothing to repair --------------------------------------------------------
  await db.query('vacuum analyze public.orgs, public.credit_balances')
  await settle(ctx.admin)
  const refreshRuns: RefreshRun[] = []
  for (let i = 0; i < (settings.quick ? 3 : 5); i += 1) refreshRuns.push(await refreshOnce(db))
  const written = Math.max(...refreshRuns.map((r) => Math.max(r.written, r.orgs_updated)))
  const refreshMs = median(refreshRuns.map((r) => r.ms))
  log(`  refresh over ${orgs} orgs: ${refreshMs} ms median, ${written} rows written, WAL ${refreshRuns.map((r) => r.wal_bytes).join('/')} bytes`)

  // Due grants: one per org, granted through grant_credits, then made due ---------------------
  const setupStarted = performance.now()
  // Two granting sessions on disjoint halves of the orgs (each statement keeps its orgs' balance
  // locks until it commits, so the halves never meet).
  let grantedCount = 0
  await inParallel(ctx.stack.env.SUPABASE_DB_URL, 2, async (client, part) => {
    const { rows } = await client.query<{ n: string }>(
      `select count(public.grant_credits(o.id, 100, 'promotion', 'bench-expiry', now() + interval '1 hour')) as n
       from public.orgs o
       where o.personal_user_id in (select ${userIdSql('n')}::uuid from generate_series(1, $1::int) n where n % 2 = $2)`,
      [settings.maintenanceOrgs, part],
    )
    grantedCount += Number(rows[0]!.n)
  })
  const granted = { rows: [{ n: String(grantedCount) }] }
  const due = await db.query(
    `update public.credit_grants set expires_at = now() - interval '1 second' where source = 'promotion' and external_ref = 'bench-expiry'`,
  )
  await db.query('vacuum analyze public.credit_grants, public.credit_balances, public.orgs')
  await replicationCaughtUp(db)
  const setupSeconds = round((performance.now() - setupStarted) / 1000, 1)
  log(`  ${granted.rows[0]!.n} grants created and made due (${due.rowCount}) in ${setupSeconds} s`)
  await settle(ctx.admin)

  const stop = { now: false }
  const calls: Call[] = []
  const errors: string[] = []
  const consumers = Array.from({ length: settings.expiryConsumers }, () => consumer(ctx.stack.env.SUPABASE_DB_URL, stop, calls, errors))
  const baselineMs = Math.max(2000, (settings.seconds * 1000) / 2)
  await new Promise((resolve) => setTimeout(resolve, baselineMs))

  const batches: Array<{ expired: number; ms: number }> = []
  const expiryStarted = performance.now()
  for (;;) {
    const started = performance.now()
    const { rows } = await db.query<{ n: number }>('select public.expire_credit_grants($1) as n', [settings.expiryBatch])
    batches.push({ expired: rows[0]!.n, ms: round(performance.now() - started, 1) })
    // Not "less than a batch": the consumers' own charges expire some of a batch's grants first.
    if (rows[0]!.n === 0) break
  }
  const expiryEnded = performance.now()
  await new Promise((resolve) => setTimeout(resolve, 500))
  stop.now = true
  await Promise.all(consumers)
  if (errors.length > 0) throw new Error(`consumers failed ${errors.length} times during expiry, first: ${errors[0]}`)

  const left = await db.query<{ n: string }>(`select count(*) as n from public.credit_grants where status = 'active' and expires_at <= now()`)
  const expiredByJob = batches.reduce((sum, b) => sum + b.expired, 0)
  const expirySeconds = round((expiryEnded - expiryStarted) / 1000, 2)
  const before = calls.filter((c) => c.at < expiryStarted).map((c) => c.ms).sort((a, b) => a - b)
  const during = calls.filter((c) => c.at >= expiryStarted && c.at < expiryEnded).map((c) => c.ms).sort((a, b) => a - b)
  const longestBatch = Math.max(...batches.map((b) => b.ms))
  const maxDuring = during.length ? during[during.length - 1]! : Number.NaN
  const fmt = (v: number) => `${v.toFixed(1)} ms`
  log(`  expiry: ${expiredByJob} by the job in ${batches.length} batches, ${expirySeconds} s; longest batch ${longestBatch} ms; consumer max ${fmt(maxDuring)}`)

  const sizeLabel = orgs.toLocaleString('en')
  return {
    rows: [
      {
        scenario: `6a. refresh_orgs_has_usage_credits() over ${sizeLabel} orgs, nothing changed`,
        target: '0 rows written',
        ratio: null,
        measured: `${written} rows`,
        status: pass(written === 0),
        absolute: `${refreshMs} ms median of ${refreshRuns.length} (${refreshRuns.map((r) => r.ms).join(' / ')} ms); orgs n_tup_upd +${Math.max(...refreshRuns.map((r) => r.orgs_updated))}; ${walText(refreshRuns)}`,
      },
      {
        scenario: `6b. expire_credit_grants(${settings.expiryBatch}) draining ${Number(granted.rows[0]!.n).toLocaleString('en')} due grants (1 per org)`,
        target: 'none (information): total time',
        ratio: null,
        measured: `${expirySeconds} s`,
        status: 'INFO',
        absolute: `${expiredByJob.toLocaleString('en')} expired by the job in ${batches.length} calls (${round(expiredByJob / Math.max(expirySeconds, 0.001), 0)} grants/s), ${(Number(granted.rows[0]!.n) - expiredByJob).toLocaleString('en')} by consumers' own charges; ${left.rows[0]!.n} still due; longest call ${longestBatch} ms, median ${median(batches.map((b) => b.ms))} ms`,
      },
      {
        scenario: `6c. consume_credits on those orgs during the expiry run (${settings.expiryConsumers} concurrent consumers)`,
        target: 'none (information): longest lock wait',
        ratio: null,
        measured: `max ${fmt(maxDuring)}`,
        status: 'INFO',
        note: `expire_credit_grants runs its whole batch in one transaction and keeps every balance row it locked until it commits, so a charge on an org of the batch waits for the rest of the batch: the longest call took ${longestBatch} ms for up to ${settings.expiryBatch} grants (${Math.round((expirySeconds * 1e6) / Math.max(expiredByJob, 1))} µs per grant expired, with the consumers running)`,
        absolute: `during: ${during.length} calls, p50 ${fmt(percentile(during, 50))}, p99 ${fmt(percentile(during, 99))}, max ${fmt(maxDuring)}; before: ${before.length} calls, p50 ${fmt(percentile(before, 50))}, p99 ${fmt(percentile(before, 99))}, max ${fmt(before[before.length - 1] ?? Number.NaN)}`,
      },
    ],
    measurements: [],
    details: {
      orgs,
      refresh_runs: refreshRuns,
      due_grants: Number(granted.rows[0]!.n),
      due_setup_seconds: setupSeconds,
      expiry_batches: batches,
      expiry_seconds: expirySeconds,
      expired_by_job: expiredByJob,
      still_due: Number(left.rows[0]!.n),
      consumers: {
        count: settings.expiryConsumers,
        before: { calls: before.length, p50_ms: round(percentile(before, 50), 2), p99_ms: round(percentile(before, 99), 2), max_ms: round(before[before.length - 1] ?? Number.NaN, 2) },
        during: { calls: during.length, p50_ms: round(percentile(during, 50), 2), p99_ms: round(percentile(during, 99), 2), max_ms: round(maxDuring, 2) },
      },
    },
  }
}
