import ipaddr from 'ipaddr.js'
import { assertEquals } from '../testing.ts'
import cases from './url-rule-cases.json' with { type: 'json' }
import { checkUrl, isPublicAddress, maxUrlLength, normalizeOrigin } from './url-rule.ts'

interface Case {
  url: string
  expect: 'allowed' | 'invalid_url' | 'url_not_allowed'
  rule?: string
  local_http?: boolean
  private_origins?: string[]
}

Deno.test('the guard applies the shared URL rule case table (the database runs the same table)', () => {
  const failures: string[] = []
  for (const c of cases.cases as Case[]) {
    const result = checkUrl(c.url, { allowLocalHttp: c.local_http ?? false, privateOrigins: c.private_origins ?? [] })
    const got = result.ok ? 'allowed' : `${result.key}${result.rule ? `:${result.rule}` : ''}`
    const want = `${c.expect}${c.rule ? `:${c.rule}` : ''}`
    if (got !== want) failures.push(`${JSON.stringify(c)} → ${got}`)
  }
  assertEquals(failures, [], 'cases the guard decides differently')
})

// IPv4 embedded in IPv6 (mapped, NAT64) is judged by the IPv4 address: those ranges also hold
// allowed cases; every range must hold at least one refused one.
Deno.test('the case table has a refused address in every range ipaddr.js knows as special', () => {
  const literals = (cases.cases as Case[])
    .map((c) => {
      const check = checkUrl(c.url, { allowLocalHttp: c.local_http ?? false, privateOrigins: c.private_origins ?? [] })
      return check.ok || check.rule === 'address' ? new URL(c.url).hostname.replace(/^\[|\]$/g, '') : null
    })
    .filter((host): host is string => host !== null && ipaddr.isValid(host))
    .map((host) => ipaddr.parse(host))
  const uncovered: string[] = []
  for (const family of [ipaddr.IPv4, ipaddr.IPv6]) {
    // ipaddr.js's own table of special ranges (what `range()` names), read from its prototype.
    type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number]
    const ranges = (family.prototype as unknown as { SpecialRanges: Record<string, Cidr | Cidr[]> }).SpecialRanges
    for (const [name, value] of Object.entries(ranges)) {
      const cidrs = (Array.isArray(value[0]) ? value : [value]) as Cidr[]
      for (const cidr of cidrs) {
        const inside = literals.filter((address) => address.kind() === cidr[0].kind() && address.match(cidr))
        if (!inside.some((address) => !isPublicAddress(address.toString()))) uncovered.push(`${name} ${cidr[0]}/${cidr[1]}`)
      }
    }
  }
  assertEquals(uncovered, [], 'special ranges without a refused case in url-rule-cases.json')
})

Deno.test('addresses the resolver returns are judged the same way', () => {
  for (const address of ['127.0.0.1', '10.1.2.3', '169.254.169.254', '100.64.0.1', '::1', 'fe80::1', 'fd00::1', '::ffff:10.0.0.1', '64:ff9b::a00:1', '::', 'ff02::1']) {
    assertEquals(isPublicAddress(address), false, address)
  }
  for (const address of ['8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808']) {
    assertEquals(isPublicAddress(address), true, address)
  }
  assertEquals(isPublicAddress('not-an-address'), false, 'garbage')
})

Deno.test('URLs longer than the limit are invalid', () => {
  const base = 'https://hooks.example.com/'
  assertEquals(checkUrl(base + 'a'.repeat(maxUrlLength - base.length)).ok, true, 'at the limit')
  assertEquals(checkUrl(base + 'a'.repeat(maxUrlLength - base.length + 1)), { ok: false, key: 'invalid_url' }, 'one over')
})

Deno.test('allow-list entries normalise to scheme://host:port, and anything else is not an origin', () => {
  assertEquals(normalizeOrigin('https://Tools.Internal'), 'https://tools.internal:443')
  assertEquals(normalizeOrigin(' http://10.0.0.5:8080/ '), 'http://10.0.0.5:8080')
  assertEquals(normalizeOrigin('https://[FD00::5]:9000'), 'https://[fd00::5]:9000')
  assertEquals(normalizeOrigin('https://tools.internal/path'), null)
  assertEquals(normalizeOrigin('tools.internal:443'), null)
})
