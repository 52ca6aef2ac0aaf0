import { assertEquals } from '../testing.ts'
import { createOutboundGuard, type OutboundGuardOptions } from './guard.ts'
import { systemResolver } from './dns-resolver.ts'
import { nodeConnector } from './node-connector.ts'
import type { Connector, PinnedRequest, Resolver } from './ports.ts'

// Refusals are proven with an injected resolver and connector that record every call: a
// refused request must reach neither (no DNS query, no packet). Deliveries, redirects, slow
// and oversized answers use real servers on 127.0.0.1 through the real connector. Addresses
// like 93.184.215.14 below only ever reach the fake connector.

const testdata = new URL('./testdata/', import.meta.url)
const ca = Deno.readTextFileSync(new URL('ca.pem', testdata))
const cert = Deno.readTextFileSync(new URL('pinned.test.pem', testdata))
const key = Deno.readTextFileSync(new URL('pinned.test-key.pem', testdata))

interface Spy {
  resolver: Resolver & { calls: string[] }
  connector: Connector & { calls: PinnedRequest[] }
  logs: Array<{ event: string; fields: Record<string, unknown> }>
}

/** A resolver answering from a table, and a connector that records and answers 200 (or fails the test). */
function spies(dns: Record<string, string[]> = {}, answer = true): Spy {
  const resolverCalls: string[] = []
  const connectorCalls: PinnedRequest[] = []
  return {
    resolver: {
      calls: resolverCalls,
      resolve(hostname) {
        resolverCalls.push(hostname)
        const addresses = dns[hostname]
        return addresses ? Promise.resolve(addresses) : Promise.reject(new Error(`NXDOMAIN ${hostname}`))
      },
    },
    connector: {
      calls: connectorCalls,
      send(request) {
        connectorCalls.push(request)
        if (!answer) throw new Error('the connector must not be called')
        return Promise.resolve({ status: 200, headers: new Headers(), body: new Uint8Array() })
      },
    },
    logs: [],
  }
}

function guardWith(spy: Spy, options: Partial<OutboundGuardOptions> = {}) {
  return createOutboundGuard({
    purpose: 'test',
    resolver: spy.resolver,
    connector: spy.connector,
    log: (_level, event, fields) => spy.logs.push({ event, fields }),
    ...options,
  })
}

Deno.test('URLs the rule refuses are refused before any resolution or connection', async () => {
  const spy = spies({}, false)
  const guard = guardWith(spy)
  const refused: Array<[string, string]> = [
    ['not a url', 'invalid_url'],
    ['https://user:pw@hooks.example.com/', 'invalid_url'],
    ['http://hooks.example.com/', 'url_not_allowed'],
    ['http://127.0.0.1:8080/', 'url_not_allowed'], // the local allowance is off
    ['https://127.0.0.1/', 'url_not_allowed'],
    ['https://0x7f.1/', 'url_not_allowed'],
    ['https://2130706433/', 'url_not_allowed'],
    ['https://169.254.169.254/latest/meta-data/', 'url_not_allowed'],
    ['https://[::ffff:169.254.169.254]/', 'url_not_allowed'],
    ['https://[fd00::1]/', 'url_not_allowed'],
    ['https://[64:ff9b::a00:1]/', 'url_not_allowed'],
    ['https://localhost/', 'url_not_allowed'],
    ['https://metadata.google.internal/', 'url_not_allowed'],
    ['https://metadata/', 'url_not_allowed'],
  ]
  for (const [url, outcome] of refused) {
    const result = await guard.send(url, { method: 'POST', body: 'x' })
    assertEquals([url, result], [url, { outcome, status: null, headers: null, body: null }])
  }
  assertEquals(spy.resolver.calls, [], 'resolver calls')
  assertEquals(spy.connector.calls.length, 0, 'connector calls')
})

Deno.test('a name that resolves to any internal address is refused before connecting', async () => {
  const internal = ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '100.64.0.1', '169.254.169.254', '0.0.0.0', '255.255.255.255', '224.0.0.251', '::1', '::', 'fe80::1', 'fd00::1', 'ff02::1', '::ffff:10.0.0.1', '::ffff:127.0.0.1', '64:ff9b::a9fe:a9fe']
  for (const address of internal) {
    const spy = spies({ 'hooks.example.com': ['93.184.215.14', address] }, false)
    const result = await guardWith(spy).send('https://hooks.example.com/hook', { method: 'POST' })
    assertEquals([address, result.outcome], [address, 'refused_address'])
    assertEquals(spy.connector.calls.length, 0, `connector calls for ${address}`)
    assertEquals(spy.logs.map((l) => [l.event, l.fields.outcome, l.fields.addresses]), [['outbound_refused', 'refused_address', [address]]], 'logged')
  }
})

Deno.test('a name without addresses, or whose resolution fails, is dns_failed without a connection', async () => {
  for (const dns of [{ 'hooks.example.com': [] }, {}] as Array<Record<string, string[]>>) {
    const spy = spies(dns, false)
    const result = await guardWith(spy).send('https://hooks.example.com/hook')
    assertEquals(result.outcome, 'dns_failed')
    assertEquals(spy.connector.calls.length, 0, 'connector calls')
  }
})

Deno.test('the connection goes to the checked address, with the hostname for TLS and Host, resolved once', async () => {
  // A rebinding resolver: public on the first answer, loopback on every later one.
  let answers = 0
  const spy = spies()
  spy.resolver.resolve = (hostname) => {
    spy.resolver.calls.push(hostname)
    return Promise.resolve(answers++ === 0 ? ['2606:4700::6810:84e5', '93.184.215.14'] : ['127.0.0.1'])
  }
  const result = await guardWith(spy).send('https://Hooks.Example.com:8443/in?x=1', { method: 'POST', headers: { 'x-a': '1' }, body: 'hi' })
  assertEquals(result.outcome, 'delivered')
  assertEquals(spy.resolver.calls, ['hooks.example.com'], 'one resolution')
  const sent = spy.connector.calls[0]!
  assertEquals(
    [sent.protocol, sent.address, sent.port, sent.hostname, sent.hostHeader, sent.path, sent.method, sent.headers.get('x-a'), new TextDecoder().decode(sent.body!)],
    ['https:', '93.184.215.14', 8443, 'hooks.example.com', 'hooks.example.com:8443', '/in?x=1', 'POST', '1', 'hi'],
  )
})

Deno.test('an operator-listed private origin may be internal; other origins of the same host may not', async () => {
  const spy = spies({ 'tools.internal': ['10.1.2.3'] })
  const guard = guardWith(spy, { privateOrigins: ['https://tools.internal:8443', 'http://10.9.9.9:8080'] })
  assertEquals((await guard.send('https://tools.internal:8443/run')).outcome, 'delivered')
  assertEquals((await guard.send('http://10.9.9.9:8080/run')).outcome, 'delivered')
  assertEquals((await guard.send('https://tools.internal/run')).outcome, 'url_not_allowed')
  assertEquals((await guard.send('https://10.9.9.9:8080/run')).outcome, 'url_not_allowed')
  assertEquals(spy.connector.calls.map((c) => `${c.protocol}//${c.address}:${c.port}`), ['https://10.1.2.3:8443', 'http://10.9.9.9:8080'])
})

// --- real connections, 127.0.0.1 only ---------------------------------------------------------

type Handler = (req: Request) => Response | Promise<Response>

async function withServer(handler: Handler, run: (origin: string, seen: Request[]) => Promise<void>, tls = false) {
  const seen: Request[] = []
  const server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen() {}, ...(tls ? { cert, key } : {}) }, (req) => {
    seen.push(req)
    return handler(req)
  })
  try {
    await run(`${tls ? 'https' : 'http'}://127.0.0.1:${server.addr.port}`, seen)
  } finally {
    await server.shutdown()
  }
}

const localGuard = (options: Partial<OutboundGuardOptions> = {}) => {
  const spy = spies()
  return createOutboundGuard({ purpose: 'test', resolver: spy.resolver, connector: nodeConnector(), allowLocalHttp: true, log: () => {}, ...options })
}

Deno.test('delivers to a local receiver and classifies its status', async () => {
  await withServer(async (req) => {
    const path = new URL(req.url).pathname
    const body = await req.text()
    if (path === '/ok') return Response.json({ got: body, host: req.headers.get('host'), custom: req.headers.get('x-custom') })
    if (path === '/bad') return new Response('no', { status: 422 })
    return new Response('down', { status: 503 })
  }, async (origin) => {
    const guard = localGuard()
    const ok = await guard.send(`${origin}/ok`, { method: 'POST', body: 'payload', headers: { 'x-custom': 'yes' } })
    assertEquals([ok.outcome, ok.status, JSON.parse(new TextDecoder().decode(ok.body!))], ['delivered', 200, { got: 'payload', host: origin.slice(7), custom: 'yes' }])
    assertEquals(ok.headers?.get('content-type'), 'application/json')
    assertEquals([(await guard.send(`${origin}/bad`)).outcome, (await guard.send(`${origin}/bad`)).status], ['http_4xx', 422])
    assertEquals((await guard.send(`${origin}/down`)).outcome, 'http_5xx')
  })
})

Deno.test('a redirect is an outcome: the target is never requested', async () => {
  await withServer(() => new Response('secret'), async (internalOrigin, internalSeen) => {
    await withServer(() => new Response(null, { status: 302, headers: { location: `${internalOrigin}/latest/meta-data/` } }), async (origin, seen) => {
      const result = await localGuard().send(`${origin}/hook`, { method: 'POST', body: '{}' })
      assertEquals([result.outcome, result.status, result.body?.byteLength], ['redirect_refused', 302, 0])
      assertEquals(seen.length, 1, 'the redirecting server was asked once')
      assertEquals(internalSeen.length, 0, 'the redirect target was never requested')
    })
  })
})

Deno.test('a slow answer ends at the total deadline as a timeout', async () => {
  let release = () => {}
  const late = new Promise<void>((resolve) => (release = resolve))
  await withServer(async () => {
    await late
    return new Response('late')
  }, async (origin) => {
    const started = performance.now()
    const result = await localGuard({ totalTimeoutMs: 300 }).send(`${origin}/slow`)
    const elapsed = performance.now() - started
    release()
    assertEquals(result.outcome, 'timeout')
    assertEquals(elapsed < 2000, true, `ended after ${Math.round(elapsed)} ms`)
  })
})

Deno.test('the per-request timeout and the caller\'s signal are deadlines too', async () => {
  let release = () => {}
  const late = new Promise<void>((resolve) => (release = resolve))
  await withServer(async () => {
    await late
    return new Response('late')
  }, async (origin) => {
    assertEquals((await localGuard().send(`${origin}/slow`, { timeoutMs: 200 })).outcome, 'timeout')
    assertEquals((await localGuard().send(`${origin}/slow`, { signal: AbortSignal.timeout(200) })).outcome, 'timeout')
    release()
  })
})

Deno.test('an answer larger than the limit is response_too_large, declared or streamed', async () => {
  const big = new Uint8Array(300 * 1024)
  await withServer((req) => {
    if (new URL(req.url).pathname === '/declared') return new Response(big)
    // No content-length: chunks until the limit is crossed.
    const chunk = new Uint8Array(64 * 1024)
    let sent = 0
    return new Response(new ReadableStream({ pull(controller) { sent++ < 5 ? controller.enqueue(chunk) : controller.close() } }))
  }, async (origin) => {
    const guard = localGuard({ maxResponseBytes: 200 * 1024 })
    assertEquals((await guard.send(`${origin}/declared`)).outcome, 'response_too_large')
    assertEquals((await guard.send(`${origin}/streamed`)).outcome, 'response_too_large')
    const roomy = await localGuard({ maxResponseBytes: 400 * 1024 }).send(`${origin}/streamed`)
    assertEquals([roomy.outcome, roomy.body?.byteLength], ['delivered', 5 * 64 * 1024])
  })
})

Deno.test('a refused connection is connection_failed; its raw text goes to the log only', async () => {
  const listener = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const port = (listener.addr as Deno.NetAddr).port
  listener.close() // nothing listens there any more
  const logs: Array<Record<string, unknown>> = []
  const guard = localGuard({ log: (_level, _event, fields) => logs.push(fields) })
  const result = await guard.send(`http://127.0.0.1:${port}/hook`, { method: 'POST', body: '{}' })
  assertEquals(result, { outcome: 'connection_failed', status: null, headers: null, body: null })
  assertEquals(logs.length, 1, 'one log line')
  assertEquals(String(logs[0]!.detail).includes('ECONNREFUSED'), true, `logged detail ${logs[0]!.detail}`)
})

Deno.test('a connection that never completes its handshake ends at the connect timeout', async () => {
  const listener = Deno.listen({ hostname: '127.0.0.1', port: 0 })
  const held: Deno.Conn[] = []
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn)
  })()
  const port = (listener.addr as Deno.NetAddr).port
  const spy = spies({ 'pinned.test': ['127.0.0.1'] })
  const guard = createOutboundGuard({
    purpose: 'test', resolver: spy.resolver, connector: nodeConnector({ ca: [ca] }), log: () => {},
    privateOrigins: [`https://pinned.test:${port}`], connectTimeoutMs: 300, totalTimeoutMs: 5000,
  })
  const started = performance.now()
  const result = await guard.send(`https://pinned.test:${port}/hook`)
  const elapsed = performance.now() - started
  for (const conn of held) conn.close()
  listener.close()
  await accepting.catch(() => {})
  assertEquals(result.outcome, 'timeout')
  assertEquals(elapsed < 2000, true, `ended after ${Math.round(elapsed)} ms`)
})

Deno.test('TLS: connects to the pinned address and verifies the certificate for the URL\'s hostname', async () => {
  await withServer((req) => Response.json({ host: req.headers.get('host') }), async (origin) => {
    const port = Number(new URL(origin).port)
    // pinned.test and other.test exist only in this resolver: a delivery proves the socket
    // went to the address the guard checked, not to a second resolution.
    const dns = { 'pinned.test': ['127.0.0.1'], 'other.test': ['127.0.0.1'] }
    const privateOrigins = [`https://pinned.test:${port}`, `https://other.test:${port}`]
    const spy = spies(dns)
    const guard = createOutboundGuard({ purpose: 'test', resolver: spy.resolver, connector: nodeConnector({ ca: [ca] }), log: () => {}, privateOrigins })
    const ok = await guard.send(`https://pinned.test:${port}/hook`, { method: 'POST', body: '{}' })
    assertEquals([ok.outcome, JSON.parse(new TextDecoder().decode(ok.body!))], ['delivered', { host: `pinned.test:${port}` }])
    assertEquals((await guard.send(`https://other.test:${port}/hook`)).outcome, 'tls_failed') // certificate is for pinned.test
    const untrusting = createOutboundGuard({ purpose: 'test', resolver: spy.resolver, connector: nodeConnector(), log: () => {}, privateOrigins })
    assertEquals((await untrusting.send(`https://pinned.test:${port}/hook`)).outcome, 'tls_failed') // unknown CA
  }, true)
})

Deno.test('https to a server that does not speak TLS is tls_failed', async () => {
  await withServer(() => new Response('plain'), async (origin) => {
    const port = Number(new URL(origin).port)
    const spy = spies({ 'pinned.test': ['127.0.0.1'] })
    const guard = createOutboundGuard({ purpose: 'test', resolver: spy.resolver, connector: nodeConnector({ ca: [ca] }), log: () => {}, privateOrigins: [`https://pinned.test:${port}`] })
    assertEquals((await guard.send(`https://pinned.test:${port}/`)).outcome, 'tls_failed')
  })
})

Deno.test('the system resolver (fallback where Deno.resolveDns is missing) answers from the hosts file', async () => {
  // localhost is in the hosts file: no query leaves the machine.
  const addresses = await systemResolver().resolve('localhost', AbortSignal.timeout(2000))
  assertEquals(addresses.length > 0 && addresses.every((address) => address === '127.0.0.1' || address === '::1'), true, `localhost → ${addresses}`)
})
