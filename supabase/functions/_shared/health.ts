import { isUnreachable } from './db-errors.ts'
import { json, logEvent } from './http.ts'

export interface PrimaryStatus {
  reachable: boolean
  latency_ms: number
  error?: string
  /** The replica's subscription as the primary's walsender sees it; null when not connected. */
  replication: { lag_bytes: number; replay_lag_ms: number | null } | null
}

export interface ReplicaStatus {
  reachable: boolean
  latency_ms: number
  error?: string
  /** Apply worker running on the replica for our subscription. */
  subscribed: boolean
  /** Time since the replica last heard from the primary (data or keepalive). */
  last_message_age_ms: number | null
}

export interface HealthProbes {
  primary(): Promise<Omit<PrimaryStatus, 'reachable' | 'latency_ms'>>
  replica(): Promise<Omit<ReplicaStatus, 'reachable' | 'latency_ms'>>
}

class ProbeTimeout extends Error {}

/**
 * What a failed probe tells the caller: a class, never the driver's text (which names hosts,
 * ports and users, and any project token may call /health). The text goes to the log.
 */
function failureClass(error: unknown): 'timeout' | 'unreachable' | 'auth_failed' | 'error' {
  if (error instanceof ProbeTimeout) return 'timeout'
  if (isUnreachable(error)) return 'unreachable'
  return /^28/.test((error as { code?: string })?.code ?? '') ? 'auth_failed' : 'error'
}

async function timed<T extends object>(part: string, probe: () => Promise<T>, timeoutMs: number) {
  const started = performance.now()
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    const result = await Promise.race([
      probe(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new ProbeTimeout(`timed out after ${timeoutMs} ms`)), timeoutMs))),
    ])
    return { reachable: true, latency_ms: Math.round(performance.now() - started), ...result }
  } catch (error) {
    logEvent('error', 'health_probe_failed', { part, message: (error as Error)?.message ?? String(error) })
    return { reachable: false, latency_ms: Math.round(performance.now() - started), error: failureClass(error) }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * GET /health: primary and replica reachability and replication lag. 200 when both answer and
 * the replica is subscribed, 503 otherwise (the body says which part is down).
 */
export function createHealthHandler(probes: HealthProbes, timeoutMs = 3000): (req: Request) => Promise<Response> {
  return async (_req) => {
    const [primary, replica] = await Promise.all([timed('primary', probes.primary, timeoutMs), timed('replica', probes.replica, timeoutMs)])
    const ok = primary.reachable && replica.reachable && (replica as ReplicaStatus).subscribed === true
    return json(ok ? 200 : 503, { status: ok ? 'ok' : 'degraded', primary, replica })
  }
}
