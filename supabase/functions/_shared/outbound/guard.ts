// The one way Tollgate sends a request to a URL that someone configured (alert webhooks, meter
// backends). In order, and each step before anything touches the network past it:
//   1. the URL rule (url-rule.ts, also applied by the database when the URL was stored);
//   2. the hostname resolved (A and AAAA); any internal address refuses the request;
//   3. the connection made to the address checked in 2, TLS verified for the hostname, so a
//      second resolution (DNS rebinding) cannot send it elsewhere;
//   4. no redirects (a 3xx is an outcome), bounded connect time, total time and answer size.
// The result is an outcome class; raw error text goes to the function's log only.
import { logEvent } from '../http.ts'
import type { Connector, OutboundOutcome, Resolver } from './ports.ts'
import { OutboundFailure } from './ports.ts'
import { checkUrl, isPublicAddress, type UrlTarget } from './url-rule.ts'

export interface OutboundGuardOptions {
  /** What the requests are for (in logs): `alert_webhook`, `meter_backend`. */
  purpose: string
  resolver: Resolver
  connector: Connector
  /** Local development only: also allow http://127.0.0.1:<port>. */
  allowLocalHttp?: boolean
  /** Operator-listed origins that may be internal (meter backends only). */
  privateOrigins?: readonly string[]
  connectTimeoutMs?: number
  totalTimeoutMs?: number
  maxResponseBytes?: number
  log?: (level: 'info' | 'warn', event: string, fields: Record<string, unknown>) => void
}

export interface OutboundRequestInit {
  method?: string
  headers?: HeadersInit
  body?: Uint8Array | string | null
  /** Total time for this request (at most the guard's totalTimeoutMs). */
  timeoutMs?: number
  /** The caller's own cancellation. */
  signal?: AbortSignal
}

export interface OutboundResult {
  outcome: OutboundOutcome
  /** The HTTP status when there was an answer. */
  status: number | null
  headers: Headers | null
  body: Uint8Array<ArrayBuffer> | null
}

export interface OutboundGuard {
  send(url: string, init?: OutboundRequestInit): Promise<OutboundResult>
}

export const defaultConnectTimeoutMs = 5_000
export const defaultTotalTimeoutMs = 10_000
export const defaultMaxResponseBytes = 1024 * 1024

const encoder = new TextEncoder()

export function outcomeOfStatus(status: number): OutboundOutcome {
  if (status >= 200 && status < 300) return 'delivered'
  if (status >= 300 && status < 400) return 'redirect_refused'
  if (status >= 400 && status < 500) return 'http_4xx'
  return 'http_5xx'
}

export function createOutboundGuard(options: OutboundGuardOptions): OutboundGuard {
  const connectTimeoutMs = options.connectTimeoutMs ?? defaultConnectTimeoutMs
  const totalTimeoutMs = options.totalTimeoutMs ?? defaultTotalTimeoutMs
  const maxResponseBytes = options.maxResponseBytes ?? defaultMaxResponseBytes
  const log = options.log ?? ((level, event, fields) => logEvent(level, event, fields))

  const none = (outcome: OutboundOutcome): OutboundResult => ({ outcome, status: null, headers: null, body: null })
  const refuse = (outcome: OutboundOutcome, fields: Record<string, unknown>): OutboundResult => {
    log('warn', 'outbound_refused', { purpose: options.purpose, outcome, ...fields })
    return none(outcome)
  }

  return {
    async send(url, init = {}) {
      const check = checkUrl(url, { allowLocalHttp: options.allowLocalHttp, privateOrigins: options.privateOrigins })
      if (!check.ok) return refuse(check.key, { origin: originForLog(url), rule: check.rule ?? null })
      const target = check.target
      const where = { purpose: options.purpose, origin: target.origin }

      const deadline = AbortSignal.any([
        AbortSignal.timeout(Math.min(init.timeoutMs ?? totalTimeoutMs, totalTimeoutMs)),
        ...(init.signal ? [init.signal] : []),
      ])

      let addresses: string[]
      if (target.address !== null) {
        addresses = [target.address]
      } else {
        try {
          addresses = await options.resolver.resolve(target.host, AbortSignal.any([deadline, AbortSignal.timeout(connectTimeoutMs)]))
        } catch (error) {
          log('warn', 'outbound_failed', { ...where, outcome: 'dns_failed', detail: String(error) })
          return none('dns_failed')
        }
        if (addresses.length === 0) return refuse('dns_failed', { ...where, detail: 'no A or AAAA records' })
      }
      if (!target.privateOrigin && !target.localHttp) {
        const internal = addresses.filter((address) => !isPublicAddress(address))
        if (internal.length > 0) return refuse('refused_address', { ...where, addresses: internal })
      }

      const address = addresses.find((a) => !a.includes(':')) ?? addresses[0]!
      const body = init.body === undefined || init.body === null ? null : typeof init.body === 'string' ? encoder.encode(init.body) : init.body
      try {
        const response = await options.connector.send({
          protocol: target.protocol,
          address,
          port: target.port,
          hostname: target.host,
          hostHeader: hostHeader(target),
          path: `${target.url.pathname}${target.url.search}`,
          method: init.method ?? 'GET',
          headers: new Headers(init.headers),
          body,
          connectTimeoutMs,
          maxResponseBytes,
          signal: deadline,
        })
        return { outcome: outcomeOfStatus(response.status), status: response.status, headers: response.headers, body: response.body }
      } catch (error) {
        const failure = error instanceof OutboundFailure ? error : new OutboundFailure('connection_failed', String(error))
        log('warn', 'outbound_failed', { ...where, address, outcome: failure.outcome, detail: failure.detail })
        return none(failure.outcome)
      }
    },
  }
}

/** The URL's origin, for the log only (never its path or query, which may carry secrets). */
function originForLog(url: string): string | null {
  try {
    return new URL(url).origin
  } catch {
    return null
  }
}

function hostHeader(target: UrlTarget): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  const standard = target.protocol === 'https:' ? 443 : 80
  return target.port === standard ? host : `${host}:${target.port}`
}
