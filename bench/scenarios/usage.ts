// Scenario 9: get_usage_stats(30) must cost O(days × operations), not O(calls): an org with 10M
// calls in the last 30 days (1M in quick runs) against one with 1k, the answer identical to a
// full scan of credit_requests.
import type pg from 'pg'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { log } from '../lib/log.ts'
import { pgbench } from '../lib/pgbench.ts'
import { find, pass, ratioText, tpsText } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp, type Variant } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import { inParallel, priceOperation, replicationCaughtUp, special, userId } from '../prepare.ts'

const script = `select set_config('request.jwt.claims', :claims, true), public.get_usage_stats(30);`
const claims = (n: number): string => JSON.stringify({ role: 'authenticated', sub: userId(n) })
const operations = ['search', 'embed', 'chat', 'ocr', 'translate']
const periodSeconds = 30 * 86_400
/**
 * The rollup job rolls up every second (a minutely pg_cron run that loops): right before a
 * round the tail holds 1 s of calls. A round that is late (the job busy or restarting) leaves a
 * longer tail: 10 s is measured too, as information.
 */
const tailSeconds = 1
const lateTailSeconds = 10
/** History reaches an hour past the window, so the window's first, partial minute has calls. */
const spanSeconds = periodSeconds + 3_600

/**
 * Loads `calls` requests spread evenly over the 30 days and 1 hour before the last minute as history (bulk, as the
 * superuser; the ledger's entries for them are not needed: the rollup is then rebuilt from the
 * requests, as the migration does for an existing database). About 1 in 17 failed (not
 * charged), 1 in 101 refunded, latencies 20..319 ms.
 */
async function loadCalls(db: pg.Client, url: string, orgId: string, user: string, calls: number): Promise<void> {
  const loaders = calls >= 100_000 ? 2 : 1
  await inParallel(url, loaders, async (client, part) => {
    const first = Math.floor((calls * part) / loaders) + 1
    const last = Math.floor((calls * (part + 1)) / loaders)
    await client.query('begin')
    await client.query(
      `insert into public.credit_requests (org_id, request_id, kind, operation, quantity, unit_price, charged, refunded, status,
                                           user_id, balance_before, balance_after, success, latency_ms, created_at, completed_at)
       select $1::uuid, 'history-' || g, 'consume', ($2::text[])[1 + g % 5], 1, 2,
              case when g % 17 = 0 then 0 else 2 end,
              case when g % 101 = 0 and g % 17 <> 0 then 2 else 0 end,
              case when g % 101 = 0 and g % 17 <> 0 then 'refunded' else 'charged' end,
              $3::uuid, 0, 0, g % 17 <> 0, 20 + g % 300,
              now() - ($8::float8 + (g - 0.5) * $5::float8 / $4::float8) * interval '1 second', now()
       from generate_series($6::int, $7::int) g`,
      [orgId, operations, user, calls, spanSeconds - tailSeconds, first, last, tailSeconds],
    )
    await client.query('commit')
  })
}

export async function usageStats(ctx: Context): Promise<ScenarioOutput> {
  const { orgOf } = ctx.prepared
  const bigCalls = settings.quick ? 1_000_000 : 10_000_000
  const smallCalls = 1_000
  const started = performance.now()
  await loadCalls(ctx.db, ctx.stack.env.SUPABASE_DB_URL, orgOf.usageSmall, userId(special.usageSmall), smallCalls)
  await loadCalls(ctx.db, ctx.stack.env.SUPABASE_DB_URL, orgOf.usageBig, userId(special.usageBig), bigCalls)
  const loadSeconds = Math.round(performance.now() - started) / 1000
  log(`  ${bigCalls.toLocaleString('en')} + ${smallCalls.toLocaleString('en')} calls loaded in ${loadSeconds} s`)

  const rebuildStarted = performance.now()
  const { rows: rebuilt } = await ctx.db.query<{ rows: string }>('select private.rebuild_credit_usage_rollup() as rows')
  const rebuildSeconds = Math.round(performance.now() - rebuildStarted) / 1000
  log(`  rollup rebuilt (${rebuilt[0]!.rows} rows) in ${rebuildSeconds} s`)

  // The tail: the last second's calls, charged for real through consume_credits after the
  // rollup last ran (at 10M calls in 30 days, 3.9 a second: 4 calls, plus their ledger).
  const tailCalls = Math.round((bigCalls * tailSeconds) / periodSeconds)
  const smallTail = Math.round((smallCalls * tailSeconds) / periodSeconds)
  for (const [n, count] of [[special.usageBig, tailCalls], [special.usageSmall, smallTail]] as const) {
    if (count === 0) continue
    await ctx.db.query(
      `select set_config('request.jwt.claims', $1, true), public.consume_credits($2, 'tail-' || g) from generate_series(1, $3::int) g`,
      [claims(n), priceOperation, count],
    )
  }
  await ctx.db.query('vacuum analyze public.credit_requests, public.credit_usage_rollup, public.credit_ledger')
  const decodeSeconds = await replicationCaughtUp(ctx.db)
  log(`  walsender caught up in ${decodeSeconds} s`)

  // The answer must be the full scan's, byte for byte; the scan's time is what every call cost before.
  const identical: Record<string, boolean> = {}
  const fullScanMs: Record<string, number> = {}
  const checkIdentical = async (when: string) => {
    for (const [label, n, org] of [['small', special.usageSmall, orgOf.usageSmall], ['big', special.usageBig, orgOf.usageBig]] as const) {
      await ctx.db.query('begin isolation level repeatable read')
      await ctx.db.query(`select set_config('request.jwt.claims', $1, true)`, [claims(n)])
      const ours = await ctx.db.query<{ s: string }>('select public.get_usage_stats(30)::text as s')
      const scanStarted = performance.now()
      const scan = await ctx.db.query<{ s: string }>('select bench.usage_stats_full_scan($1, 30)::text as s', [org])
      fullScanMs[label] = Math.round((performance.now() - scanStarted) * 10) / 10
      await ctx.db.query('commit')
      identical[`${label}_${when}`] = ours.rows[0]!.s === scan.rows[0]!.s
      if (!identical[`${label}_${when}`]) throw new Error(`get_usage_stats(30) differs from a full scan for the ${label} org (${when}):\n  ${ours.rows[0]!.s}\n  ${scan.rows[0]!.s}`)
    }
  }
  await checkIdentical(`tail_${tailSeconds}s`)
  log(`  answers identical to a full scan (which took ${fullScanMs.small} ms / ${fullScanMs.big} ms)`)

  const small = `calls_${smallCalls}`
  const big = `calls_${bigCalls}`
  const variants: Variant[] = [
    { name: small, run: (c, s) => pgbench(ctx.primary, { name: small, script, clients: c, seconds: s, vars: { claims: claims(special.usageSmall) } }) },
    { name: big, run: (c, s) => pgbench(ctx.primary, { name: big, script, clients: c, seconds: s, vars: { claims: claims(special.usageBig) } }) },
  ]
  await warmUp(variants)
  await settle(ctx.admin)
  const clients = [1, 8]
  const measurements: Measurement[] = []
  for (const c of clients) measurements.push(...(await sideBySide(variants, c, settings.seconds)))
  const ratios = clients.map((c) => ({ c, ratio: find(measurements, small, c).tps / find(measurements, big, c).tps }))
  const worst = ratios.reduce((a, b) => (b.ratio > a.ratio ? b : a))
  const bigAt1 = find(measurements, big, 1)
  const bigMs = 1000 / bigAt1.tps
  const bigLabel = bigCalls >= 1e6 ? `${bigCalls / 1e6}M` : bigCalls.toLocaleString('en')
  const ok = worst.ratio <= 1.1 && bigMs <= 20

  // The same with a late round's tail: 9 s more of calls past the watermark.
  const lateTail = Math.round((bigCalls * lateTailSeconds) / periodSeconds)
  await ctx.db.query(
    `select set_config('request.jwt.claims', $1, true), public.consume_credits($2, 'tail-late-' || g) from generate_series(1, $3::int) g`,
    [claims(special.usageBig), priceOperation, lateTail - tailCalls],
  )
  const bigLate = `${big}_tail_${lateTailSeconds}s`
  const lateVariants: Variant[] = [
    variants[0]!,
    { name: bigLate, run: (c, s) => pgbench(ctx.primary, { name: bigLate, script, clients: c, seconds: s, vars: { claims: claims(special.usageBig) } }) },
  ]
  await checkIdentical(`tail_${lateTailSeconds}s`)
  await warmUp(lateVariants, 1)
  const lateMeasurements = await sideBySide(lateVariants, 1, settings.seconds)
  measurements.push(...lateMeasurements.filter((m) => m.variant === bigLate))
  const lateRatio = find(lateMeasurements, small, 1).tps / find(lateMeasurements, bigLate, 1).tps

  return {
    rows: [
      {
        scenario: `9. get_usage_stats(30), org with ${smallCalls.toLocaleString('en')} vs ${bigLabel} calls in 30 days (${tailSeconds} s tail)`,
        target: 'big/small cost ≤ 1.1× (inverse tps, worst of 1/8 clients) and big ≤ 20 ms per call',
        ratio: worst.ratio,
        measured: `${ratioText(worst.ratio)} (${ratios.map((r) => `${r.c}c ${ratioText(r.ratio)}`).join(', ')}); big ${bigMs.toFixed(2)} ms`,
        status: pass(ok),
        absolute:
          `1c: small ${tpsText(find(measurements, small, 1))}; big ${tpsText(bigAt1)}. ` +
          `Full scan (the old get_usage_stats): ${fullScanMs.small} ms / ${fullScanMs.big} ms. Tail: ${tailCalls} calls`,
        note: ok
          ? undefined
          : `both read the same rollup rows per operation (31 day rows and one running-total row); what still grows with traffic is the window's first partial 10-second bucket, read from the requests (up to 5 s: ${Math.round(bigCalls / (periodSeconds / 5))} calls, ${Math.round(bigCalls / (periodSeconds / 2.5))} on average) and the ${tailSeconds} s tail (${tailCalls} ledger entries, each joined to its request), where the small org reads none`,
      },
      {
        scenario: `9b. the same with a ${lateTailSeconds} s tail (a late roll-up round)`,
        target: 'information',
        ratio: lateRatio,
        measured: `${ratioText(lateRatio)} (1c); big ${(1000 / find(lateMeasurements, bigLate, 1).tps).toFixed(2)} ms`,
        status: 'INFO',
        absolute: `1c: small ${tpsText(find(lateMeasurements, small, 1))}; big ${tpsText(find(lateMeasurements, bigLate, 1))}. Tail: ${lateTail} calls`,
      },
    ],
    measurements,
    details: {
      calls: { small: smallCalls, big: bigCalls },
      tail_calls: { small: smallTail, big: tailCalls, big_late: lateTail },
      load_seconds: loadSeconds,
      rollup_rebuild_seconds: rebuildSeconds,
      rollup_rows: Number(rebuilt[0]!.rows),
      full_scan_ms: fullScanMs,
      identical_to_full_scan: identical,
    },
  }
}
