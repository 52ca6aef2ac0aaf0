// Scenario 3b: scenario 3 with a network between client and database. App servers never sit on
// the database host; every statement the client-side pattern sends while it holds the row lock
// then costs a round trip, while consume_credits holds its lock inside one statement. Both
// sides (and the floor) connect through the same delay proxy (lib/delay-proxy.ts), which adds
// settings.rttMs per round trip; the round trip it really adds is measured first, and the
// proxy's delay trimmed once if its own work makes that round trip more than 5% off.
import { startDelayProxy, type DelayProxy } from '../lib/delay-proxy.ts'
import { pgbench, type PgTarget } from '../lib/pgbench.ts'
import { find, pass, ratioText, tpsText, type Row } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp, type Variant } from '../lib/sidebyside.ts'
import { round, type Measurement } from '../lib/stats.ts'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { clientLockScript, floorScript, hotAccount, oursScript, perClients, worstRatio } from './charges.ts'

const through = (target: PgTarget, proxy: DelayProxy): PgTarget => ({ ...target, host: proxy.host, port: String(proxy.port) })

/** CPU the bench process (the proxy, nearly all of it, while pgbench runs) used per variant and client count, in % of one core. */
type CpuShare = Map<string, number[]>

function withCpu(variant: Variant, shares: CpuShare): Variant {
  return {
    name: variant.name,
    async run(clients, seconds) {
      const cpu = process.cpuUsage()
      const started = performance.now()
      const sample = await variant.run(clients, seconds)
      const used = process.cpuUsage(cpu)
      const key = `${variant.name}@${clients}`
      shares.set(key, [...(shares.get(key) ?? []), (100 * (used.user + used.system)) / 1000 / (performance.now() - started)])
      return sample
    },
  }
}

interface RoundTrip {
  /** p50 of `select 1`, 1 client: straight to the database, through the proxy without delay, with it. */
  direct_ms: number
  hop_ms: number
  delayed_ms: number
  /** delayed - direct: the round trip the scenario adds. */
  added_ms: number
  /** The same for a transaction of four `select 1`, divided by four: the delay is paid per statement. */
  added_per_statement_ms: number
  measurements: Measurement[]
}

async function measureRoundTrip(target: PgTarget, hop: DelayProxy, wire: DelayProxy): Promise<RoundTrip> {
  const one = 'select 1;'
  const four = 'select 1;\nselect 1;\nselect 1;\nselect 1;'
  const probe = (name: string, at: PgTarget, script: string): Variant => ({ name, run: (c, s) => pgbench(at, { name, script, clients: c, seconds: s }) })
  const measurements = await sideBySide(
    [
      probe('select1_direct', target, one),
      probe('select1_proxy_no_delay', through(target, hop), one),
      probe('select1_delayed', through(target, wire), one),
      probe('select1x4_direct', target, four),
      probe('select1x4_delayed', through(target, wire), four),
    ],
    1,
    2,
  )
  const p50 = (name: string) => find(measurements, name, 1).p50_ms
  return {
    direct_ms: p50('select1_direct'),
    hop_ms: round(p50('select1_proxy_no_delay') - p50('select1_direct'), 3),
    delayed_ms: p50('select1_delayed'),
    added_ms: round(p50('select1_delayed') - p50('select1_direct'), 3),
    added_per_statement_ms: round((p50('select1x4_delayed') - p50('select1x4_direct')) / 4, 3),
    measurements,
  }
}

/** Why a hot org's throughput is what it is on each side, from the measured tps (one row: 1 / hold time). */
function holdNote(ours: Measurement, clientSide: Measurement, rtt: RoundTrip): string {
  const clientHoldMs = 1000 / clientSide.tps
  return (
    `on one row throughput is 1 / (time the row lock is held). The client-side pattern holds it across four of its six round trips (+${(4 * rtt.added_ms).toFixed(2)} ms per hold here): ` +
    `${clientSide.tps.toFixed(0)} tps, a hold of ~${clientHoldMs.toFixed(2)} ms. Ours pays its one round trip outside the lock, so what it holds is the charge's own work and commit: ` +
    `${ours.tps.toFixed(0)} tps, ~${(1000 / ours.tps).toFixed(2)} ms; 3× needs that under ${(clientHoldMs / 3).toFixed(2)} ms`
  )
}

export async function hotOrgOverNetwork(ctx: Context): Promise<ScenarioOutput> {
  const account = await hotAccount(ctx)
  const upstream = { host: ctx.primary.host, port: Number(ctx.primary.port) }
  const hop = await startDelayProxy({ upstream, oneWayMs: 0 })
  const wire = await startDelayProxy({ upstream, oneWayMs: settings.rttMs / 2 })
  try {
    // Reading, waking and writing take time of their own on top of the wait: trim once so the
    // round trip added is the configured one (never below half the configured delay).
    const first = await measureRoundTrip(ctx.primary, hop, wire)
    let rtt = first
    const excessMs = first.added_ms - settings.rttMs
    if (Math.abs(excessMs) > 0.05 * settings.rttMs) {
      wire.setOneWayMs(Math.max(settings.rttMs / 4, wire.oneWayMs() - excessMs / 2))
      rtt = await measureRoundTrip(ctx.primary, hop, wire)
    }
    const via = through(ctx.primary, wire)
    const shares: CpuShare = new Map()
    const variants = [
      withCpu({ name: 'ours_hot_rtt', run: (c, s) => pgbench(via, { name: 'ours_hot_rtt', script: oursScript('hot'), clients: c, seconds: s }) }, shares),
      withCpu({ name: 'floor_hot_rtt', run: (c, s) => pgbench(via, { name: 'floor_hot_rtt', script: floorScript('hot'), clients: c, seconds: s }) }, shares),
      withCpu({ name: 'client_lock_hot_rtt', run: (c, s) => pgbench(via, { name: 'client_lock_hot_rtt', script: clientLockScript, clients: c, seconds: s, vars: { account } }) }, shares),
    ]
    await warmUp(variants)
    shares.clear()
    await settle(ctx.admin)
    const measurements: Measurement[] = []
    for (const clients of settings.contendedClients) measurements.push(...(await sideBySide(variants, clients, settings.seconds)))

    const contended = settings.contendedClients
    const worst = worstRatio(measurements, 'ours_hot_rtt', 'client_lock_hot_rtt', contended)
    // Scenario 3's loopback figures, measured earlier in this run.
    const loopback = ctx.results.flatMap((r) => r.measurements)
    const hasLoopback = contended.every((c) => ['ours_hot', 'client_lock_hot'].every((v) => loopback.some((m) => m.variant === v && m.clients === c)))
    const cpuMax = Math.max(...[...shares.values()].flat())
    const cpuText = contended
      .map((c) => `${c}c ${variants.map((v) => Math.round(Math.max(...(shares.get(`${v.name}@${c}`) ?? [Number.NaN])))).join('/')}%`)
      .join(', ')
    const stats = wire.stats()
    const rows: Row[] = [
      {
        scenario: `3b. hot org over a ${settings.rttMs} ms client↔database round trip (delay proxy): ours vs the client-side locking pattern`,
        target: 'ours ≥ 3× client-side pattern tps (worst of 8/32 clients), both through the same proxy',
        ratio: worst.ratio,
        measured:
          `${ratioText(worst.ratio)} (${perClients(measurements, 'ours_hot_rtt', 'client_lock_hot_rtt', contended)}; ` +
          (hasLoopback ? `loopback, scenario 3: ${perClients(loopback, 'ours_hot', 'client_lock_hot', contended)})` : 'loopback not measured in this run)'),
        status: pass(worst.ratio >= 3),
        absolute:
          `at ${worst.clients}c through the proxy: ours ${tpsText(find(measurements, 'ours_hot_rtt', worst.clients))}; client-side ${tpsText(find(measurements, 'client_lock_hot_rtt', worst.clients))}; ` +
          `floor ${tpsText(find(measurements, 'floor_hot_rtt', worst.clients))}` +
          (hasLoopback ? `. Loopback (3) at ${worst.clients}c: ours ${tpsText(find(loopback, 'ours_hot', worst.clients))}; client-side ${tpsText(find(loopback, 'client_lock_hot', worst.clients))}` : ''),
        note: worst.ratio >= 3 ? undefined : holdNote(find(measurements, 'ours_hot_rtt', worst.clients), find(measurements, 'client_lock_hot_rtt', worst.clients), rtt),
      },
      {
        scenario: '3c. the delay proxy: round trip it adds, and what it costs',
        target: `none (information): configured ${settings.rttMs} ms per round trip (${settings.rttMs / 2} ms each way)`,
        ratio: null,
        measured:
          `+${rtt.added_ms.toFixed(3)} ms per round trip (p50 of select 1, 1 client), +${rtt.added_per_statement_ms.toFixed(3)} ms per statement in a 4-statement transaction` +
          (rtt === first ? '' : `; before trimming the delay to ${round(wire.oneWayMs(), 3)} ms each way: +${first.added_ms.toFixed(3)} ms`),
        status: 'INFO',
        absolute:
          `select 1 p50: direct ${rtt.direct_ms.toFixed(3)} ms, through the proxy without delay ${(rtt.direct_ms + rtt.hop_ms).toFixed(3)} ms (the hop alone +${rtt.hop_ms.toFixed(3)} ms), with the delay ${rtt.delayed_ms.toFixed(3)} ms. ` +
          `Bench process CPU during the timed runs (ours/floor/client-side), % of one core: ${cpuText}; ` +
          `${stats.chunks.toLocaleString('en')} chunks in ${stats.batches.toLocaleString('en')} timer batches, source paused ${stats.pauses} times, wake-up latency armed ahead ${stats.wake_latency_ms} ms`,
      },
    ]
    return {
      rows,
      measurements,
      details: {
        round_trip: { ...rtt, measurements: undefined },
        round_trip_untrimmed: rtt === first ? undefined : { ...first, measurements: undefined },
        one_way_ms: wire.oneWayMs(),
        round_trip_probe: rtt.measurements,
        proxy: stats,
        proxy_cpu_percent: Object.fromEntries(shares),
        proxy_cpu_max_percent: round(cpuMax, 1),
      },
    }
  } finally {
    await Promise.all([hop.close(), wire.close()])
  }
}
