// Scenario 11: what the balance row's side effects cost a charge that crosses nothing. Half of
// the distinct orgs get auto top-up (set_auto_topup: the balance row then carries the
// threshold its trigger compares), a saved payment method (set_org_billing) and a low-balance
// webhook (set_alert_webhook), each through its RPC as its owner or the app's server would;
// thresholds sit far below the funded balance, so the triggers' WHEN clauses are evaluated on
// every charge and nothing is queued (checked). The other half is configured with nothing.
// consume_credits on a random org of each half, side by side.
import { find, pass, ratioText, tpsText, type Row } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { userIdSql } from '../prepare.ts'
import { oursScript, perClients, variant, worstRatio } from './charges.ts'

// Credits; the orgs hold ~10^12 (prepare.ts's funding), so no run comes near any threshold.
const topUp = { threshold: 1_000, amount: 10_000, monthlyCap: 100_000 }
const webhookUrl = 'https://alerts.example.com/tollgate'

const asOwner = (n: string): string => `set_config('request.jwt.claims', json_build_object('role', 'authenticated', 'sub', ${userIdSql(n)})::text, true)`

/** Rows queued by the balance triggers so far (top-up requests, alert events), all orgs. */
async function queued(ctx: Context): Promise<{ topups: number; alerts: number }> {
  const { rows } = await ctx.db.query<{ topups: string; alerts: string }>(
    `select (select count(*) from public.credit_topup_requests) as topups, (select count(*) from public.credit_alert_outbox) as alerts`,
  )
  return { topups: Number(rows[0]!.topups), alerts: Number(rows[0]!.alerts) }
}

export async function sideEffects(ctx: Context): Promise<ScenarioOutput> {
  const half = Math.floor(settings.distinctOrgs / 2)
  const configured = { from: 1, to: half }
  const plain = { from: half + 1, to: settings.distinctOrgs }
  // set_config runs before the RPCs of its row (a select list is evaluated left to right).
  await ctx.db.query(
    `select ${asOwner('n')}, public.set_auto_topup(true, $2, $3, $4), public.set_alert_webhook($5) from generate_series(1, $1::int) n`,
    [half, topUp.threshold, topUp.amount, topUp.monthlyCap, webhookUrl],
  )
  await ctx.db.query(
    `select public.set_org_billing(o.id, 'cus_bench' || n, 'pm_bench' || n)
     from generate_series(1, $1::int) n join public.orgs o on o.personal_user_id = ${userIdSql('n')}::uuid`,
    [half],
  )
  try {
    // Set-up took effect: the configured half carries the threshold, the other half nothing;
    // both halves' alert thresholds are armed by their funding grant.
    const { rows } = await ctx.db.query<{ side: string; orgs: string; topup: string; alerts_armed: string; webhooks: string; billing: string }>(
      `select case when u.n <= $1 then 'configured' else 'plain' end as side, count(*) as orgs,
              count(*) filter (where b.auto_topup_threshold = $3) as topup,
              count(*) filter (where b.alert_threshold_next is not null) as alerts_armed,
              count(w.org_id) as webhooks, count(ob.org_id) as billing
       from generate_series(1, $2::int) u(n)
       join public.orgs o on o.personal_user_id = ${userIdSql('u.n')}::uuid
       join public.credit_balances b on b.org_id = o.id
       left join public.org_alert_webhooks w on w.org_id = o.id
       left join public.org_billing ob on ob.org_id = o.id
       group by 1`,
      [half, settings.distinctOrgs, topUp.threshold],
    )
    const side = (name: string) => rows.find((r) => r.side === name)!
    const c = side('configured')
    const p = side('plain')
    if (![c.topup, c.webhooks, c.billing, c.alerts_armed].every((v) => Number(v) === half) || Number(p.topup) + Number(p.webhooks) + Number(p.billing) !== 0 || Number(p.alerts_armed) !== Number(p.orgs)) {
      throw new Error(`side-effect set-up did not take: ${JSON.stringify(rows)}`)
    }

    const variants = [variant(ctx.primary, 'ours_configured', oursScript(configured)), variant(ctx.primary, 'ours_unconfigured', oursScript(plain))]
    await warmUp(variants)
    const before = await queued(ctx)
    await settle(ctx.admin)
    const measurements: Measurement[] = []
    for (const clients of settings.clients) measurements.push(...(await sideBySide(variants, clients, settings.seconds)))
    const after = await queued(ctx)
    if (after.topups !== before.topups || after.alerts !== before.alerts) {
      throw new Error(`a threshold was crossed during the run (top-ups ${before.topups} → ${after.topups}, alerts ${before.alerts} → ${after.alerts}): the scenario compares charges that queue nothing`)
    }

    const worst = worstRatio(measurements, 'ours_configured', 'ours_unconfigured', settings.clients)
    const row: Row = {
      scenario: `11. consume_credits with auto top-up and low-balance alerts configured vs without (${half.toLocaleString('en')} orgs each, no threshold crossed)`,
      target: 'configured ≥ 0.9× unconfigured tps (worst of 1/8/32 clients)',
      ratio: worst.ratio,
      measured: `${ratioText(worst.ratio)} (${perClients(measurements, 'ours_configured', 'ours_unconfigured', settings.clients)})`,
      status: pass(worst.ratio >= 0.9),
      absolute: `at ${worst.clients}c: configured ${tpsText(find(measurements, 'ours_configured', worst.clients))}; unconfigured ${tpsText(find(measurements, 'ours_unconfigured', worst.clients))}; queued during the run: ${after.topups - before.topups} top-ups, ${after.alerts - before.alerts} alerts`,
      note:
        `configured = set_auto_topup (threshold ${topUp.threshold}), set_org_billing and set_alert_webhook; the alert thresholds (50/75/90/100 % of the last grant) are armed on both halves, since every credited grant arms them, so the alert trigger's WHEN clause runs on both sides and a webhook is read only by the dispatcher. ` +
        `A charge that crosses a threshold (once per threshold per grant; one open top-up per org) also inserts its outbox row in the same transaction: not measured here` +
        (worst.ratio >= 0.9 ? '' : `; with nothing queued, the one difference on the charge path is the top-up trigger's WHEN clause seeing a threshold (three comparisons), so a ratio below 0.9× here is more likely noise than cost: compare the other client counts`),
    }
    return { rows: [row], measurements, details: { set_up: rows, queued_before: before, queued_after: after } }
  } finally {
    // Later scenarios charge these orgs too: auto top-up off again (its threshold leaves the balance row).
    await ctx.db.query(`select ${asOwner('n')}, public.set_auto_topup(false, $2, $3, $4) from generate_series(1, $1::int) n`, [
      half,
      topUp.threshold,
      topUp.amount,
      topUp.monthlyCap,
    ])
  }
}
