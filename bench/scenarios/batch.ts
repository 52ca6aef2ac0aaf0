// Scenario 12: per-item throughput of consume_credits_batch (100 items per call) through the
// gateway and PostgREST, against one consume_credits call per item through the same path. Both
// sides charge a random org of the distinct orgs with fresh request ids (every item a first
// charge, never a replay), as the org's signed-in user.
import crypto from 'node:crypto'
import { userJwt } from '@tollgate/local-stack'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { httpLoad } from '../lib/http-load.ts'
import { find, pass, ratioText, type Row } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp, type Variant } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import { priceOperation, userId } from '../prepare.ts'

/** Items per consume_credits_batch call. */
export const batchItems = 100
/** Target: items per second of the batch ≥ this × calls per second of single charges. */
const target = 10

export async function batchCharges(ctx: Context): Promise<ScenarioOutput> {
  const env = ctx.stack.env
  const singleUrl = `${env.SUPABASE_URL}/rest/v1/rpc/consume_credits`
  const batchUrl = `${env.SUPABASE_URL}/rest/v1/rpc/consume_credits_batch`
  const tokens = await Promise.all(Array.from({ length: settings.distinctOrgs }, (_, i) => userJwt(userId(i + 1), env.SUPABASE_JWT_SECRET, { expiresInSeconds: 3600 })))
  const anyToken = () => tokens[Math.floor(Math.random() * tokens.length)]!
  const headers = (token: string) => ({ apikey: env.SUPABASE_ANON_KEY, authorization: `Bearer ${token}`, 'content-type': 'application/json' })
  const single = () => ({ headers: headers(anyToken()), body: JSON.stringify({ p_operation: priceOperation, p_request_id: `s-${crypto.randomUUID()}` }) })
  const batch = () => {
    const prefix = `b-${crypto.randomUUID()}-`
    const items = Array.from({ length: batchItems }, (_, i) => ({ operation: priceOperation, request_id: `${prefix}${i}` }))
    return { headers: headers(anyToken()), body: JSON.stringify({ p_items: items }) }
  }

  // Sanity: each side charges what it should (the bench price is 1 credit).
  const one = await fetch(singleUrl, { method: 'POST', ...single() })
  const oneAnswer = (await one.json()) as { charged?: number }
  if (one.status !== 200 || oneAnswer.charged !== 1) throw new Error(`rpc consume_credits sanity check: ${one.status} ${JSON.stringify(oneAnswer)}`)
  const many = await fetch(batchUrl, { method: 'POST', ...batch() })
  const manyAnswer = (await many.json()) as { charged_total?: number; results?: unknown[] }
  if (many.status !== 200 || manyAnswer.charged_total !== batchItems || manyAnswer.results?.length !== batchItems) {
    throw new Error(`rpc consume_credits_batch sanity check: ${many.status} ${JSON.stringify(manyAnswer).slice(0, 300)}`)
  }

  const variants: Variant[] = [
    { name: 'http_single', run: (connections, seconds) => httpLoad({ url: singleUrl, connections, seconds, request: single }) },
    { name: `http_batch_${batchItems}`, run: (connections, seconds) => httpLoad({ url: batchUrl, connections, seconds, request: batch }) },
  ]
  await warmUp(variants)
  await settle(ctx.admin)
  const measurements: Measurement[] = []
  for (const c of settings.clients) measurements.push(...(await sideBySide(variants, c, settings.seconds)))

  const points = settings.clients.map((c) => {
    const s = find(measurements, 'http_single', c)
    const b = find(measurements, `http_batch_${batchItems}`, c)
    return { c, single: s, batch: b, ratio: (b.tps * batchItems) / s.tps }
  })
  const worst = points.reduce((a, b) => (b.ratio < a.ratio ? b : a))
  const row: Row = {
    scenario: `12. rpc consume_credits_batch (${batchItems} items per call) vs consume_credits per item, via gateway + PostgREST, ${settings.distinctOrgs.toLocaleString('en')} orgs`,
    target: `items/s ≥ ${target}× single calls/s (at ${settings.clients.join(', ')} clients)`,
    ratio: worst.ratio,
    measured: points.map((p) => `${p.c}c ${ratioText(p.ratio)}`).join(', '),
    status: pass(worst.ratio >= target),
    absolute: points
      .map((p) => `${p.c}c: ${(p.batch.tps * batchItems).toFixed(0)} items/s (p50 ${p.batch.p50_ms.toFixed(1)} ms per call) vs ${p.single.tps.toFixed(0)} calls/s (p50 ${p.single.p50_ms.toFixed(2)} ms)`)
      .join('; '),
  }
  if (row.status === 'MISS') row.note = `worst at ${worst.c} clients; a batch's items run one after another under one org lock, so a core's share of per-item work bounds it`
  return { rows: [row], measurements }
}
