// One measured variant at one concurrency, and how halves measured apart are put together.

export interface Sample {
  /** Completed transactions (SQL) or 2xx responses (HTTP). */
  count: number
  /** Wall time the load ran, in seconds (pgbench: without connection set-up). */
  seconds: number
  /** Per-transaction latencies in milliseconds. */
  latencies_ms: Float64Array
  /** Failed transactions or non-2xx / errored requests. */
  failed: number
}

export interface Measurement {
  variant: string
  clients: number
  count: number
  seconds: number
  tps: number
  mean_ms: number
  p50_ms: number
  p99_ms: number
  max_ms: number
  failed: number
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

/** Merges the interleaved parts of one variant into one measurement. */
export function summarize(variant: string, clients: number, parts: Sample[]): Measurement {
  const count = parts.reduce((sum, part) => sum + part.count, 0)
  const seconds = parts.reduce((sum, part) => sum + part.seconds, 0)
  const total = parts.reduce((sum, part) => sum + part.latencies_ms.length, 0)
  const all = new Float64Array(total)
  let offset = 0
  for (const part of parts) {
    all.set(part.latencies_ms, offset)
    offset += part.latencies_ms.length
  }
  all.sort()
  let sum = 0
  for (const value of all) sum += value
  return {
    variant,
    clients,
    count,
    seconds: round(seconds, 2),
    tps: round(seconds > 0 ? count / seconds : 0, 1),
    mean_ms: round(total > 0 ? sum / total : Number.NaN, 3),
    p50_ms: round(percentile(all, 50), 3),
    p99_ms: round(percentile(all, 99), 3),
    max_ms: round(total > 0 ? all[total - 1]! : Number.NaN, 3),
    failed: parts.reduce((sum, part) => sum + part.failed, 0),
  }
}

export function round(value: number, digits: number): number {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

export function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50)
}
