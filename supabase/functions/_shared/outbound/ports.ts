// Ports of the outbound guard: how a hostname is resolved and how a request reaches the one
// address the guard checked. Production uses dns-resolver.ts and node-connector.ts; tests
// inject fakes to prove that refusals happen before any of them is called.

/**
 * What became of an outbound request. These classes are all that is ever stored where members
 * can read it; the raw network error goes to the function's log only.
 */
export type OutboundOutcome =
  | 'delivered' // 2xx
  | 'http_4xx'
  | 'http_5xx' // 5xx, and any other status that is not 2xx, 3xx or 4xx
  | 'redirect_refused' // 3xx: an outcome, never followed
  | 'timeout' // no connection, or no complete answer, in time
  | 'connection_failed'
  | 'tls_failed' // handshake or certificate (name, chain, expiry)
  | 'dns_failed' // the name has no address, or resolution failed
  | 'invalid_url' // the URL is not one the rule accepts (refused before resolution)
  | 'url_not_allowed' // scheme, literal internal address or internal name (before resolution)
  | 'refused_address' // the name resolves to an internal address (before connecting)
  | 'response_too_large'

export const outboundOutcomes: readonly OutboundOutcome[] = [
  'delivered', 'http_4xx', 'http_5xx', 'redirect_refused', 'timeout', 'connection_failed', 'tls_failed', 'dns_failed',
  'invalid_url', 'url_not_allowed', 'refused_address', 'response_too_large',
]

/** Resolves a hostname to its A and AAAA addresses ([] when it has none). */
export interface Resolver {
  resolve(hostname: string, signal: AbortSignal): Promise<string[]>
}

/** One request, to be sent to `address` and nowhere else. */
export interface PinnedRequest {
  protocol: 'https:' | 'http:'
  /** The address the guard checked: the connection goes here (no second resolution). */
  address: string
  port: number
  /** The URL's host: TLS server name and certificate check (names only; an IP URL checks the IP). */
  hostname: string
  /** Host header value (host, and port when not the default). */
  hostHeader: string
  /** Path and query. */
  path: string
  method: string
  headers: Headers
  body: Uint8Array | null
  /** Until TCP (and TLS, for https) is established. */
  connectTimeoutMs: number
  maxResponseBytes: number
  /** Aborts the whole exchange (the total deadline). */
  signal: AbortSignal
}

export interface PinnedResponse {
  status: number
  headers: Headers
  /** Empty for 3xx (never read). */
  body: Uint8Array<ArrayBuffer>
}

export interface Connector {
  /** Sends the request; throws OutboundFailure for anything that is not an HTTP answer. */
  send(request: PinnedRequest): Promise<PinnedResponse>
}

/** A request that ended without a usable answer: the class, and the raw detail for the log. */
export class OutboundFailure extends Error {
  constructor(
    readonly outcome: OutboundOutcome,
    readonly detail: string,
  ) {
    super(`${outcome}: ${detail}`)
    this.name = 'OutboundFailure'
  }
}
