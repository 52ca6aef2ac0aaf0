// Side-by-side measurement on a noisy machine: variants are interleaved in mirrored order
// (A B C, C B A), each running half the time per pass, so a drift in background load hits
// every variant alike. Ratios are only ever taken between variants measured this way.
import { log } from './log.ts'
import { summarize, type Measurement, type Sample } from './stats.ts'

export interface Variant {
  name: string
  run(clients: number, seconds: number): Promise<Sample>
}

export async function sideBySide(variants: Variant[], clients: number, seconds: number): Promise<Measurement[]> {
  const half = Math.max(1, Math.round(seconds / 2))
  const parts = new Map<string, Sample[]>(variants.map((v) => [v.name, []]))
  for (const order of [variants, [...variants].reverse()]) {
    for (const variant of order) {
      parts.get(variant.name)!.push(await variant.run(clients, half))
    }
  }
  const measured = variants.map((v) => summarize(v.name, clients, parts.get(v.name)!))
  for (const m of measured) {
    log(`  ${m.variant.padEnd(28)} c=${String(clients).padStart(2)}  ${m.tps.toFixed(0).padStart(7)} tps  p50 ${m.p50_ms.toFixed(2)} ms  p99 ${m.p99_ms.toFixed(2)} ms${m.failed ? `  FAILED ${m.failed}` : ''}`)
  }
  return measured
}

/** Runs every variant briefly so caches, plans and connections are warm before measuring. */
export async function warmUp(variants: Variant[], clients = 8): Promise<void> {
  for (const variant of variants) await variant.run(clients, 1)
}
