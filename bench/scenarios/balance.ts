// Scenario 5: get_credit_balance must not depend on the size of the org's history.
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { log } from '../lib/log.ts'
import { pgbench } from '../lib/pgbench.ts'
import { find, pass, ratioText, tpsText } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp, type Variant } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import { growLedger, replicationCaughtUp, special, userId } from '../prepare.ts'

const script = `select set_config('request.jwt.claims', :claims, true), public.get_credit_balance();`
const claims = (n: number): string => JSON.stringify({ role: 'authenticated', sub: userId(n) })

export async function balanceVsLedger(ctx: Context): Promise<ScenarioOutput> {
  const { orgOf } = ctx.prepared
  const started = performance.now()
  await growLedger(ctx.db, ctx.stack.superuserDbUrl, orgOf.ledgerSmall, settings.smallLedgerRows)
  await growLedger(ctx.db, ctx.stack.superuserDbUrl, orgOf.ledgerBig, settings.bigLedgerRows)
  const loadSeconds = Math.round(performance.now() - started) / 1000
  log(`  ledger rows loaded in ${loadSeconds} s`)
  // Vacuum now, so autovacuum (due after so many inserts) does not wake up mid-measurement.
  const vacuumStarted = performance.now()
  await ctx.db.query('vacuum analyze public.credit_ledger')
  const vacuumSeconds = Math.round(performance.now() - vacuumStarted) / 1000
  log(`  ledger vacuumed in ${vacuumSeconds} s`)
  const decodeSeconds = await replicationCaughtUp(ctx.db)
  log(`  walsender caught up with the load in ${decodeSeconds} s`)
  const counts = await ctx.db.query<{ org_id: string; n: string }>(
    'select org_id, count(*) as n from public.credit_ledger where org_id = any($1) group by org_id',
    [[orgOf.ledgerSmall, orgOf.ledgerBig]],
  )
  const rowsOf = (org: string) => Number(counts.rows.find((r) => r.org_id === org)?.n ?? 0)
  const ledgerTotal = await ctx.db.query<{ n: string }>(`select reltuples::bigint as n from pg_class where oid = 'public.credit_ledger'::regclass`)
  // What the history costs on disk, table and each index (e.g. an index that also stores NULL keys).
  const sizes = await ctx.db.query<{ name: string; mb: string }>(
    `select 'credit_ledger' as name, round(pg_relation_size('public.credit_ledger') / 1048576.0, 1) as mb
     union all
     select i.indexrelid::regclass::text, round(pg_relation_size(i.indexrelid) / 1048576.0, 1)
     from pg_index i where i.indrelid = 'public.credit_ledger'::regclass`,
  )

  // Evidence: how many times one call reads the ledger (table or index scans), in-transaction.
  await ctx.db.query('begin')
  await ctx.db.query(`select set_config('request.jwt.claims', $1, true)`, [claims(special.ledgerBig)])
  const scansBefore = await ctx.db.query<{ scans: string }>(`select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) as scans from pg_stat_xact_user_tables where relid = 'public.credit_ledger'::regclass`)
  const balance = await ctx.db.query<{ b: { available: number } }>('select public.get_credit_balance() as b')
  const scansAfter = await ctx.db.query<{ scans: string }>(`select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) as scans from pg_stat_xact_user_tables where relid = 'public.credit_ledger'::regclass`)
  await ctx.db.query('commit')
  const ledgerScans = Number(scansAfter.rows[0]?.scans ?? 0) - Number(scansBefore.rows[0]?.scans ?? 0)
  if (!(Number(balance.rows[0]!.b.available) > 0)) throw new Error(`get_credit_balance sanity check: ${JSON.stringify(balance.rows[0])}`)

  const small = `ledger_${settings.smallLedgerRows}`
  const big = `ledger_${settings.bigLedgerRows}`
  const variants: Variant[] = [
    { name: small, run: (c, s) => pgbench(ctx.primary, { name: small, script, clients: c, seconds: s, vars: { claims: claims(special.ledgerSmall) } }) },
    { name: big, run: (c, s) => pgbench(ctx.primary, { name: big, script, clients: c, seconds: s, vars: { claims: claims(special.ledgerBig) } }) },
  ]
  await warmUp(variants)
  await settle(ctx.admin)
  const clients = [1, 8]
  const measurements: Measurement[] = []
  for (const c of clients) measurements.push(...(await sideBySide(variants, c, settings.seconds)))
  // Ratio of cost per call: big-ledger time over small-ledger time (= inverse tps ratio).
  const ratios = clients.map((c) => ({ c, ratio: find(measurements, small, c).tps / find(measurements, big, c).tps }))
  const worst = ratios.reduce((a, b) => (b.ratio > a.ratio ? b : a))
  const bigLabel = settings.bigLedgerRows >= 1e6 ? `${settings.bigLedgerRows / 1e6}M` : settings.bigLedgerRows.toLocaleString('en')
  return {
    rows: [
      {
        scenario: `5. get_credit_balance, org with ${settings.smallLedgerRows.toLocaleString('en')} vs ${bigLabel} ledger rows`,
        target: 'big/small cost ≤ 1.1× (inverse tps, worst of 1/8 clients)',
        ratio: worst.ratio,
        measured: `${ratioText(worst.ratio)} (${ratios.map((r) => `${r.c}c ${ratioText(r.ratio)}`).join(', ')})`,
        status: pass(worst.ratio <= 1.1),
        absolute: `1c: small ${tpsText(find(measurements, small, 1))}; big ${tpsText(find(measurements, big, 1))}. Ledger scans per call: ${ledgerScans}`,
        note:
          worst.ratio <= 1.1
            ? undefined
            : ledgerScans === 0
              ? `get_credit_balance reads the ledger 0 times per call (pg_stat_xact_user_tables), so both orgs cost the same work (a balance row and the org's grants); the gap is this machine's noise (see the other client count: ${ratios.map((r) => `${r.c}c ${ratioText(r.ratio)}`).join(', ')})`
              : `get_credit_balance scans the ledger ${ledgerScans} times per call`,
      },
    ],
    measurements,
    details: {
      ledger_rows: { small: rowsOf(orgOf.ledgerSmall), big: rowsOf(orgOf.ledgerBig), table_estimate: Number(ledgerTotal.rows[0]!.n) },
      ledger_sizes_mb: Object.fromEntries(sizes.rows.map((r) => [r.name, Number(r.mb)])),
      ledger_load_seconds: loadSeconds,
      ledger_vacuum_seconds: vacuumSeconds,
      replication_catch_up_seconds: decodeSeconds,
      ledger_scans_per_call: ledgerScans,
    },
  }
}
