// The outbound URL rule: which configured URLs Tollgate may send requests to. The database
// applies the same rule when a URL is configured (private.outbound_url_refusal); the shared
// case table url-rule-cases.json keeps the two honest. This half also classifies the
// addresses a hostname resolves to at delivery, which SQL cannot do.
import ipaddr from 'ipaddr.js'

export const maxUrlLength = 1000

/** Why a URL is refused: the 22023 error keys of the database, and the rule that refused it. */
export type UrlRefusal =
  | { key: 'invalid_url'; rule?: undefined }
  | { key: 'url_not_allowed'; rule: 'scheme' | 'address' | 'hostname' }

export interface UrlTarget {
  url: URL
  protocol: 'https:' | 'http:'
  /** Host as the URL parser normalised it: a dotted IPv4, a bare IPv6, or a lowercase name without trailing dot. */
  host: string
  /** The literal address when the host is one, else null (a name, resolved at delivery). */
  address: string | null
  port: number
  /** `scheme://host:port`, the form allow-list entries are compared in. */
  origin: string
  /** Listed in the operator's private origins: internal addresses are allowed for it. */
  privateOrigin: boolean
  /** Allowed by the local-development setting (http to 127.0.0.1 only). */
  localHttp: boolean
}

export interface UrlRuleOptions {
  /** Local development only: also allow `http://127.0.0.1:<port>`. */
  allowLocalHttp?: boolean
  /** Operator-listed origins (`scheme://host[:port]`) that may be internal. */
  privateOrigins?: readonly string[]
}

export type UrlCheck = { ok: true; target: UrlTarget } | ({ ok: false } & UrlRefusal)

// The syntax both halves accept before any parsing: printable ASCII, no backslash (which the
// URL parser would read as a slash), `scheme://authority[/?#rest]`, no userinfo, no
// percent-encoding in the authority, an explicit port in 1..65535 when there is one.
const printableAscii = /^[\x21-\x7e]+$/
const urlShape = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(?:[/?#].*)?$/s
const bracketedHost = /^\[([0-9a-fA-F:.]+)\](?::([0-9]{1,5}))?$/
const plainHost = /^([^:[\]]+)(?::([0-9]{1,5}))?$/
const hostname = /^[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*$/

/**
 * Names that never belong to a public receiver: loopback names, special-use and private-use
 * suffixes, and cloud metadata names. A single-label name (no dot: `metadata`, `intranet`) is
 * refused too: it is completed by the resolver's search domains, inside the network.
 */
export const refusedNameSuffixes = ['localhost', 'local', 'internal', 'localdomain', 'home.arpa', 'lan', 'intranet', 'corp', 'home', 'private']
export const refusedNames = ['metadata.goog']

const defaultPort = { 'https:': 443, 'http:': 80 } as const

const nat64 = ipaddr.parseCIDR('64:ff9b::/96')
const ipv4Compatible = ipaddr.parseCIDR('::/96')
const globalUnicast = ipaddr.parseCIDR('2000::/3')

/**
 * Whether an address may be the destination of an outbound request: only ipaddr.js's
 * `unicast` range (no loopback, private, CGNAT, link-local, multicast, unspecified, broadcast,
 * reserved, documentation, benchmarking...). IPv6 outside 2000::/3 is not globally routable
 * and is refused; IPv4 embedded in IPv6 (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96) is judged
 * as the IPv4 address it reaches; the deprecated IPv4-compatible ::/96 is refused.
 */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false
  let parsed = ipaddr.parse(address)
  if (parsed.kind() === 'ipv6') {
    const v6 = parsed as ipaddr.IPv6
    if (v6.isIPv4MappedAddress()) parsed = v6.toIPv4Address()
    else if (v6.match(nat64)) parsed = new ipaddr.IPv4(v6.toByteArray().slice(12))
    else if (v6.match(ipv4Compatible) || !v6.match(globalUnicast)) return false
  }
  return parsed.range() === 'unicast'
}

/** Whether a lowercase name (no trailing dot) is one of the refused names. */
export function isRefusedName(name: string): boolean {
  if (!name.includes('.')) return true
  if (refusedNames.includes(name)) return true
  return refusedNameSuffixes.some((suffix) => name === suffix || name.endsWith(`.${suffix}`))
}

interface Parsed {
  url: URL
  protocol: 'https:' | 'http:'
  host: string
  address: string | null
  port: number
  explicitPort: boolean
  origin: string
}

function parse(raw: string): Parsed | null {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > maxUrlLength) return null
  if (!printableAscii.test(raw) || raw.includes('\\')) return null
  const shape = urlShape.exec(raw)
  if (!shape) return null
  const scheme = shape[1]!.toLowerCase()
  if (scheme !== 'https' && scheme !== 'http') return null
  const authority = shape[2]!
  if (authority.includes('@') || authority.includes('%')) return null
  const hostPort = bracketedHost.exec(authority) ?? plainHost.exec(authority)
  if (!hostPort) return null
  const explicitPort = hostPort[2] !== undefined
  const port = explicitPort ? Number(hostPort[2]) : defaultPort[`${scheme}:` as 'https:' | 'http:']
  if (port < 1 || port > 65535) return null
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return null
  }
  const protocol = url.protocol as 'https:' | 'http:'
  let host = url.hostname
  let address: string | null = null
  if (host.startsWith('[')) {
    host = host.slice(1, -1)
    if (!ipaddr.IPv6.isValid(host)) return null
    address = host
  } else if (ipaddr.IPv4.isValidFourPartDecimal(host)) {
    address = host
  } else {
    if (host.endsWith('.')) host = host.slice(0, -1)
    if (!hostname.test(host) || host.length > 253) return null
  }
  const originHost = address !== null && address.includes(':') ? `[${address}]` : host
  return { url, protocol, host, address, port, explicitPort, origin: `${protocol}//${originHost}:${port}` }
}

/** Normalises an allow-list entry to `scheme://host:port`; null when it is not an origin. */
export function normalizeOrigin(entry: string): string | null {
  const trimmed = entry.trim().replace(/\/$/, '')
  const parsed = parse(trimmed)
  if (!parsed || parsed.url.pathname !== '/' || parsed.url.search !== '' || parsed.url.hash !== '' || /[/?#]/.test(trimmed.replace(/^[^:]*:\/\//, ''))) {
    return null
  }
  return parsed.origin
}

/**
 * Applies the rule to a URL as configured. The operator's private origins come first (they
 * may be internal, by address or name), then the local-development allowance (`http://127.0.0.1`
 * with an explicit port), then: https only, no internal literal address, no internal name.
 */
export function checkUrl(raw: string, options: UrlRuleOptions = {}): UrlCheck {
  const parsed = parse(raw)
  if (!parsed) return { ok: false, key: 'invalid_url' }
  const target = (extra: Partial<UrlTarget>): UrlCheck => ({
    ok: true,
    target: { url: parsed.url, protocol: parsed.protocol, host: parsed.host, address: parsed.address, port: parsed.port, origin: parsed.origin, privateOrigin: false, localHttp: false, ...extra },
  })
  const privateOrigins = (options.privateOrigins ?? []).map(normalizeOrigin)
  if (privateOrigins.includes(parsed.origin)) return target({ privateOrigin: true })
  if (options.allowLocalHttp && parsed.protocol === 'http:' && parsed.address === '127.0.0.1' && parsed.explicitPort) {
    return target({ localHttp: true })
  }
  if (parsed.protocol !== 'https:') return { ok: false, key: 'url_not_allowed', rule: 'scheme' }
  if (parsed.address !== null) {
    return isPublicAddress(parsed.address) ? target({}) : { ok: false, key: 'url_not_allowed', rule: 'address' }
  }
  return isRefusedName(parsed.host) ? { ok: false, key: 'url_not_allowed', rule: 'hostname' } : target({})
}
