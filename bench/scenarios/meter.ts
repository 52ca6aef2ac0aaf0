// Scenario 10: the meter gateway's database path per request, on distinct orgs, against the
// floor. The gateway (supabase/functions/_shared/meter) looks the operation's backend up, holds
// the credits in one transaction (reserve_meter_request: reserve_credits plus its request row),
// calls the backend, then captures the whole hold and stores the answer in a second
// transaction (settle_meter_request: capture_credits with no quantity, i.e. all of it). The
// backend call is left out: what is measured is the database's share, statement for
// statement as the gateway sends it (as postgres, like its SUPABASE_DB_URL pool).
import { pgTarget } from '../lib/pgbench.ts'
import { profileCharges, rowsWritten, writesText } from '../lib/profile.ts'
import { find, pass, ratioText, tpsText, type Row } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { priceOperation, special, userIdSql } from '../prepare.ts'
import { floorScript, oursScript, perClients, pickUser, requestId, variant, worstRatio } from './charges.ts'

// What the gateway stores for a 200 answer of {"ok": true}; the fingerprint stands for the
// SHA-256 of the request (any 32 bytes: every request id is new). pgbench reads `:name` as a
// variable even inside a literal, so no literal here has a colon followed by a letter.
const backendUrl = `https://backend.example.com/${priceOperation}`
const ttlSeconds = 70 // ceil(10 000 ms backend timeout / 1000) + 60, as the gateway computes it
const fingerprint = `decode(repeat('ab', 32), 'hex')`
const result = `'{"latency_ms": 12, "backend_endpoint": "${priceOperation}", "success": true, "output": {"status": 200, "bytes": 12}}'::jsonb`
const body = `convert_to('{"ok": true}', 'UTF8')`

const meterScript = `
${pickUser('distinct')}
${requestId}
select url, timeout_ms from public.meter_backends where operation = '${priceOperation}' and enabled;
select public.reserve_meter_request(null, ${userIdSql(':u::int')}::uuid, '${priceOperation}', 'g' || :rid, 1, ${ttlSeconds}, ${fingerprint}) ->> 'org_id' as org \\gset
select public.settle_meter_request(:org::uuid, 'g' || :rid, true, ${result}, 200, 'application/json', ${body});
`

/**
 * A gateway request is two transactions, a hold and its capture, each a money operation under
 * the balance lock with its own commit, where a plain charge is one. Target: a gateway request
 * costs at most 2.5 plain charges, i.e. ours ≥ 0.4× consume_credits' throughput on the same orgs,
 * measured side by side. Its ratio to the two-row floor is reported with it.
 */
const target = 0.4

export async function meterPath(ctx: Context): Promise<ScenarioOutput> {
  await ctx.db.query('select public.set_meter_backend($1, $2, 10000, true)', [priceOperation, backendUrl])
  // Sanity: one request of the script's shape holds, then charges exactly the price.
  const { rows } = await ctx.db.query<{ hold: { org_id: string; status: string; reserved: number } }>(
    `select public.reserve_meter_request(null, ${userIdSql('$1::int')}::uuid, $2, 'sanity-g', 1, ${ttlSeconds}, ${fingerprint}) as hold`,
    [special.hot, priceOperation],
  )
  const hold = rows[0]!.hold
  if (hold.status !== 'held' || hold.reserved !== 1) throw new Error(`reserve_meter_request sanity check: ${JSON.stringify(hold)}`)
  const settled = await ctx.db.query<{ r: { charged: number; status: string } }>(
    `select public.settle_meter_request($1, 'sanity-g', true, ${result}, 200, 'application/json', ${body}) as r`,
    [hold.org_id],
  )
  if (settled.rows[0]?.r.charged !== 1 || settled.rows[0].r.status !== 'captured') throw new Error(`settle_meter_request sanity check: ${JSON.stringify(settled.rows[0])}`)

  const variants = [
    variant(ctx.primary, 'meter_reserve_settle', meterScript),
    variant(ctx.primary, 'ours_distinct_meter', oursScript('distinct')),
    variant(ctx.primary, 'floor_distinct_meter', floorScript('distinct')),
  ]
  await warmUp(variants)
  await settle(ctx.admin)
  const measurements: Measurement[] = []
  for (const clients of settings.clients) measurements.push(...(await sideBySide(variants, clients, settings.seconds)))
  const { rows: open } = await ctx.db.query<{ unsettled: string }>(`select count(*) as unsettled from public.meter_requests where status is null`)

  const transactions = settings.quick ? 1000 : 3000
  const profile = await profileCharges(ctx.db, pgTarget(ctx.stack.superuserDbUrl), 'meter_reserve_settle', meterScript, transactions, 'public.meter_requests')
  const top = profile.functions.slice(0, 6).map((f) => `${f.name.replace(/^(public|private)\./, '')} ${Math.round(f.self_us * f.calls_per_tx)}`).join(', ')

  const worst = worstRatio(measurements, 'meter_reserve_settle', 'ours_distinct_meter', settings.clients)
  const worstFloor = worstRatio(measurements, 'meter_reserve_settle', 'floor_distinct_meter', settings.clients)
  const rowsOut: Row[] = [
    {
      scenario: `10. reserve + capture, the meter gateway's path (backend lookup; reserve_meter_request; settle_meter_request capturing all: two transactions), ${settings.distinctOrgs.toLocaleString('en')} orgs vs a plain consume_credits`,
      target: `ours ≥ ${target}× consume_credits tps (worst of 1/8/32 clients): a gateway request is two locked transactions, at most 2.5 plain charges' work`,
      ratio: worst.ratio,
      measured: `${ratioText(worst.ratio)} (${perClients(measurements, 'meter_reserve_settle', 'ours_distinct_meter', settings.clients)}); vs the floor ${ratioText(worstFloor.ratio)} (${perClients(measurements, 'meter_reserve_settle', 'floor_distinct_meter', settings.clients)})`,
      status: pass(worst.ratio >= target),
      absolute: `at ${worst.clients}c: gateway path ${tpsText(find(measurements, 'meter_reserve_settle', worst.clients))} (requests/s); consume_credits ${tpsText(find(measurements, 'ours_distinct_meter', worst.clients))}; floor ${tpsText(find(measurements, 'floor_distinct_meter', worst.clients))}`,
      note:
        worst.ratio >= target
          ? undefined
          : `per request the gateway path writes ${rowsWritten(profile)} rows and ${profile.wal_bytes_per_tx} B of WAL in two commits; self time per request, µs: ${top}`,
    },
    {
      scenario: '10b. rows written and WAL per gateway request (reserve + settle)',
      target: 'reported',
      ratio: null,
      measured: `${rowsWritten(profile)} rows, ${profile.wal_bytes_per_tx} B WAL (${transactions.toLocaleString('en')} sequential requests)`,
      status: 'INFO',
      absolute: `per request: ${writesText(profile)}. Self time per request, µs: ${top}`,
    },
  ]
  return { rows: rowsOut, measurements, details: { profile, unsettled_gateway_requests: Number(open[0]!.unsettled) } }
}
