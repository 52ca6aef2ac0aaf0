// What a scenario hands to the report.
import type { Measurement } from './stats.ts'

export type Status = 'PASS' | 'MISS' | 'INFO' | 'ERROR'

/** One line of the report's table. */
export interface Row {
  scenario: string
  /** The target in words, e.g. "ours ≥ 0.7× floor (tps, worst client count)". */
  target: string
  /** The measured ratio the target is about (null when the row is not a ratio). */
  ratio: number | null
  /** How the ratio is printed, e.g. "0.74×" or "0 rows". */
  measured: string
  status: Status
  /** The absolute figures behind the ratio. */
  absolute: string
  /** One line of likely cause, for a MISS (and where the numbers tell something). */
  note?: string
}

export interface ScenarioResult {
  id: string
  title: string
  rows: Row[]
  /** Every measured point of the scenario, for latest.json and the chart. */
  measurements: Measurement[]
  details?: Record<string, unknown>
  seconds: number
  load_before: number[]
  load_after: number[]
}

export const ratioText = (ratio: number): string => `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}×`

export function pass(ok: boolean): Status {
  return ok ? 'PASS' : 'MISS'
}

export function find(measurements: Measurement[], variant: string, clients: number): Measurement {
  const found = measurements.find((m) => m.variant === variant && m.clients === clients)
  if (!found) throw new Error(`no measurement ${variant} at ${clients} clients`)
  return found
}

export const tpsText = (m: Measurement): string => `${m.tps.toFixed(0)} tps, p50 ${m.p50_ms.toFixed(2)} / p99 ${m.p99_ms.toFixed(2)} ms`
