import { assertEquals } from '../testing.ts'
import { OutboundFetchError, guardedFetch } from './fetch-adapter.ts'
import { createOutboundGuard } from './guard.ts'
import { nodeConnector } from './node-connector.ts'
import { allowLocalHttpVariable, meterPrivateOriginsVariable, outboundGuardFromEnv, parsePrivateOrigins } from './settings.ts'

// The guard in the shape of fetch, as the tool gateway's handler uses it: answers resolve,
// everything else rejects the way fetch does (TypeError; TimeoutError for deadlines).

const noDns = { resolve: () => Promise.reject(new Error('no resolution expected')) }
const localFetch = (maxResponseBytes = 1024 * 1024) =>
  guardedFetch(createOutboundGuard({ purpose: 'test', resolver: noDns, connector: nodeConnector(), allowLocalHttp: true, maxResponseBytes, log: () => {} }))

async function withServer(handler: (req: Request) => Response | Promise<Response>, run: (origin: string) => Promise<void>) {
  const server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen() {} }, handler)
  try {
    await run(`http://127.0.0.1:${server.addr.port}`)
  } finally {
    await server.shutdown()
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection')
}

Deno.test('answers come back as Responses with status, headers and exact bytes', async () => {
  const bytes = new Uint8Array([0, 1, 2, 255, 254, 0, 10])
  await withServer(async (req) => {
    const path = new URL(req.url).pathname
    if (path === '/echo') return new Response(new Uint8Array(await req.arrayBuffer()), { headers: { 'content-type': 'application/octet-stream', 'x-echo': req.headers.get('x-tollgate-request-id') ?? '' } })
    if (path === '/empty') return new Response(null, { status: 204 })
    return Response.json({ error: 'boom' }, { status: 500 })
  }, async (origin) => {
    const fetchImpl = localFetch()
    const echo = await fetchImpl(`${origin}/echo`, { method: 'POST', body: bytes.buffer as ArrayBuffer, headers: { 'x-tollgate-request-id': 'r-1' } })
    assertEquals([echo.status, echo.headers.get('x-echo'), Array.from(new Uint8Array(await echo.arrayBuffer()))], [200, 'r-1', Array.from(bytes)])
    const empty = await fetchImpl(`${origin}/empty`)
    assertEquals([empty.status, await empty.text()], [204, ''])
    const failed = await fetchImpl(`${origin}/fail`, { method: 'POST', body: '{}' })
    assertEquals([failed.status, await failed.json()], [500, { error: 'boom' }])
  })
})

Deno.test('redirects, refusals and network failures reject with a TypeError naming the class', async () => {
  await withServer(() => new Response(null, { status: 307, headers: { location: 'http://127.0.0.1:1/' } }), async (origin) => {
    const redirected = await rejection(localFetch()(`${origin}/moved`))
    assertEquals([redirected instanceof TypeError, (redirected as OutboundFetchError).outcome], [true, 'redirect_refused'])
  })
  const refused = await rejection(localFetch()('https://169.254.169.254/latest/meta-data/'))
  assertEquals([refused instanceof TypeError, (refused as OutboundFetchError).outcome], [true, 'url_not_allowed'])
  await withServer(() => new Response(new Uint8Array(4096)), async (origin) => {
    const large = await rejection(localFetch(1024)(`${origin}/big`))
    assertEquals((large as OutboundFetchError).outcome, 'response_too_large')
  })
})

Deno.test('a deadline rejects with the caller\'s abort reason (a TimeoutError)', async () => {
  let release = () => {}
  const late = new Promise<void>((resolve) => (release = resolve))
  await withServer(async () => {
    await late
    return new Response('late')
  }, async (origin) => {
    const error = await rejection(localFetch()(`${origin}/slow`, { signal: AbortSignal.timeout(200) }))
    release()
    assertEquals((error as Error).name, 'TimeoutError')
  })
})

Deno.test('settings: the local allowance and private origins come from the environment only', async () => {
  assertEquals(parsePrivateOrigins(' https://tools.internal , http://10.0.0.5:8080/ '), ['https://tools.internal:443', 'http://10.0.0.5:8080'])
  assertEquals(parsePrivateOrigins(undefined), [])
  let message = ''
  try {
    parsePrivateOrigins('tools.internal:8443')
  } catch (error) {
    message = (error as Error).message
  }
  assertEquals(message.startsWith(meterPrivateOriginsVariable), true, message)

  const previous = [Deno.env.get(allowLocalHttpVariable), Deno.env.get(meterPrivateOriginsVariable)]
  try {
    Deno.env.set(allowLocalHttpVariable, 'false')
    Deno.env.set(meterPrivateOriginsVariable, 'http://127.0.0.1:9')
    // Off: http to 127.0.0.1 is refused before any connection; the meter's private origin is
    // not the alerts' (an org's webhook never reaches the operator's internal services).
    assertEquals((await outboundGuardFromEnv('alert_webhook').send('http://127.0.0.1:9/x')).outcome, 'url_not_allowed')
    assertEquals((await outboundGuardFromEnv('alert_webhook').send('http://127.0.0.1:8/x')).outcome, 'url_not_allowed')
    assertEquals((await outboundGuardFromEnv('meter_backend').send('http://127.0.0.1:8/x')).outcome, 'url_not_allowed')
    // The listed origin passes the rule and is connected to (nothing listens on port 9).
    assertEquals((await outboundGuardFromEnv('meter_backend').send('http://127.0.0.1:9/x')).outcome, 'connection_failed')
  } finally {
    for (const [name, value] of [[allowLocalHttpVariable, previous[0]], [meterPrivateOriginsVariable, previous[1]]] as const) {
      if (value === undefined) Deno.env.delete(name)
      else Deno.env.set(name, value)
    }
  }
})
