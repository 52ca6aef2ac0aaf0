// Scenario 4: the plugin gate's flag read vs Capgo v2's EXISTS over a balances view that sums
// the org's grants at read time, at 10 and 10k grants per org.
import type pg from 'pg'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { pgbench } from '../lib/pgbench.ts'
import { find, pass, ratioText, tpsText } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp, type Variant } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import { gateApp } from '../prepare.ts'
import { gateSql as edgeGateSql } from '../../supabase/functions/_shared/plugin/gate.ts'

/** The gate statement exactly as the edge functions send it (imported from gate.ts, not copied). */
export function gateSql(): string {
  return edgeGateSql.trim()
}

// The view-based gate (before the replicated flag): EXISTS over the per-org balances view (a GROUP BY over the
// grants), for the app's owner.
const capgoSql = `select a.org_id,
       exists (select 1 from bench.capgo_balances b where b.org_id = a.org_id and coalesce(b.available_credits, 0) > 0) as has_usage_credits
  from public.apps a
  where a.app_id = $1`

const oneLine = (sql: string): string => sql.replace(/\s+/g, ' ').trim()

async function explain(db: pg.Client, sql: string, app: string): Promise<{ execution_ms: number; shared_buffers: number; plan: string }> {
  await db.query(`prepare bench_explain(text) as ${sql}`)
  try {
    // A few runs first so the plan is the cached generic/custom one a prepared client gets.
    // App ids are the bench's own constants (checked), so the literal is safe.
    if (!/^[a-z0-9.]+$/.test(app)) throw new Error(`unexpected app id ${app}`)
    for (let i = 0; i < 6; i += 1) await db.query(`execute bench_explain('${app}')`)
    const { rows } = await db.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers, costs off, timing off, summary on) execute bench_explain('${app}')`)
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
    const execution = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1])
    const buffers = [...plan.matchAll(/shared hit=(\d+)(?: read=(\d+))?/g)].slice(0, 1).reduce((sum, m) => sum + Number(m[1]) + Number(m[2] ?? 0), 0)
    return { execution_ms: execution, shared_buffers: buffers, plan }
  } finally {
    await db.query('deallocate bench_explain')
  }
}

export async function gateQuery(ctx: Context): Promise<ScenarioOutput> {
  const ours = gateSql()
  // Sanity: both say "has credits" for both apps.
  for (const app of [gateApp.small, gateApp.large]) {
    const a = await ctx.db.query(ours, [app])
    const b = await ctx.db.query(capgoSql, [app])
    if (a.rows[0]?.has_usage_credits !== true || a.rows[0]?.flag_present !== true || b.rows[0]?.has_usage_credits !== true) {
      throw new Error(`gate sanity check for ${app}: ours ${JSON.stringify(a.rows[0])}, capgo ${JSON.stringify(b.rows[0])}`)
    }
  }
  const [small, large] = settings.capgoGrants as [number, number]
  const script = (sql: string) => oneLine(sql).replace('$1', ':app') + ';'
  const variants: Variant[] = [
    { name: 'gate_flag', run: (c, s) => pgbench(ctx.primary, { name: 'gate_flag', script: script(ours), clients: c, seconds: s, vars: { app: gateApp.large } }) },
    { name: `capgo_view_${small}`, run: (c, s) => pgbench(ctx.primary, { name: `capgo_view_${small}`, script: script(capgoSql), clients: c, seconds: s, vars: { app: gateApp.small } }) },
    { name: `capgo_view_${large}`, run: (c, s) => pgbench(ctx.primary, { name: `capgo_view_${large}`, script: script(capgoSql), clients: c, seconds: s, vars: { app: gateApp.large } }) },
  ]
  await warmUp(variants)
  await settle(ctx.admin)
  const clients = [1, 8]
  const measurements: Measurement[] = []
  for (const c of clients) measurements.push(...(await sideBySide(variants, c, settings.seconds)))
  const plans = {
    gate_flag: await explain(ctx.db, ours, gateApp.large),
    [`capgo_view_${small}`]: await explain(ctx.db, capgoSql, gateApp.small),
    [`capgo_view_${large}`]: await explain(ctx.db, capgoSql, gateApp.large),
  }
  const ratio = (variant: string) => Math.min(...clients.map((c) => find(measurements, 'gate_flag', c).tps / find(measurements, variant, c).tps))
  const perClients = (variant: string) => clients.map((c) => `${c}c ${ratioText(find(measurements, 'gate_flag', c).tps / find(measurements, variant, c).tps)}`).join(', ')
  const atLarge = ratio(`capgo_view_${large}`)
  const atSmall = ratio(`capgo_view_${small}`)
  const plan = (name: string) => `${plans[name]!.execution_ms.toFixed(3)} ms, ${plans[name]!.shared_buffers} buffers`
  return {
    rows: [
      {
        scenario: `4a. plugin gate: flag read vs Capgo v2 view, ${large.toLocaleString('en')} grants/org`,
        target: 'ours ≥ 5× Capgo tps (worst of 1/8 clients)',
        ratio: atLarge,
        measured: `${ratioText(atLarge)} (${perClients(`capgo_view_${large}`)})`,
        status: pass(atLarge >= 5),
        absolute: `8c: ours ${tpsText(find(measurements, 'gate_flag', 8))}; Capgo ${tpsText(find(measurements, `capgo_view_${large}`, 8))}. EXPLAIN ANALYZE: ours ${plan('gate_flag')}; Capgo ${plan(`capgo_view_${large}`)}`,
      },
      {
        scenario: `4b. plugin gate: flag read vs Capgo v2 view, ${small} grants/org`,
        target: 'none (information)',
        ratio: atSmall,
        measured: `${ratioText(atSmall)} (${perClients(`capgo_view_${small}`)})`,
        status: 'INFO',
        absolute: `8c: ours ${tpsText(find(measurements, 'gate_flag', 8))}; Capgo ${tpsText(find(measurements, `capgo_view_${small}`, 8))}. EXPLAIN ANALYZE: Capgo ${plan(`capgo_view_${small}`)}`,
      },
    ],
    measurements,
    details: { gate_sql: oneLine(ours), capgo_sql: oneLine(capgoSql), plans },
  }
}
