import { Webhook } from 'standardwebhooks'
import { alertBody, createAlertDelivery, createAlertsDispatcher, type DueAlert } from './alerts.ts'
import { createOutboundGuard } from './outbound/guard.ts'
import { nodeConnector } from './outbound/node-connector.ts'
import { assertEquals } from './testing.ts'

// Alert deliveries through the guard to a receiver on 127.0.0.1 that verifies them with the
// Standard Webhooks library, as an org's receiver would.

const secret = `whsec_${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))}`
const guard = createOutboundGuard({
  purpose: 'alert_webhook',
  resolver: { resolve: () => Promise.reject(new Error('no resolution expected')) },
  connector: nodeConnector(),
  allowLocalHttp: true,
  log: () => {},
})

const payload = {
  type: 'credits.low_balance',
  org_id: '5eed0000-0000-4000-8000-00000000000a',
  threshold_percent: 75,
  grant_id: '5eed0000-0000-4000-8000-00000000000b',
  grant_amount: 200,
  available: 50,
  occurred_at: '2026-11-30T12:00:00.000000+00:00',
}

interface Received {
  headers: Headers
  body: string
  verified: unknown
}

async function withReceiver(status: (n: number) => number, run: (url: string, received: Received[]) => Promise<void>) {
  const received: Received[] = []
  const server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen() {} }, async (req) => {
    const body = await req.text()
    let verified: unknown
    try {
      verified = new Webhook(secret).verify(body, Object.fromEntries(req.headers))
    } catch (error) {
      verified = `rejected: ${(error as Error).message}`
    }
    received.push({ headers: req.headers, body, verified })
    return new Response(null, { status: status(received.length) })
  })
  try {
    await run(`http://127.0.0.1:${server.addr.port}/hooks/credits`, received)
  } finally {
    await server.shutdown()
  }
}

Deno.test('a delivery verifies with the Standard Webhooks library; a retry sends the identical body', async () => {
  await withReceiver((n) => (n === 1 ? 503 : 204), async (url, received) => {
    const alert: DueAlert = { id: crypto.randomUUID(), org_id: payload.org_id, payload, attempts: 1, url, secret }
    // Each attempt is signed at its own time (the second one a second later).
    let clock = Date.now()
    const deliver = createAlertDelivery(guard, { now: () => new Date(clock) })
    assertEquals(await deliver(alert), { delivered: false, status: 503, errorClass: 'http_5xx' })
    clock += 1000
    assertEquals(await deliver({ ...alert, attempts: 2 }), { delivered: true, status: 204, errorClass: null })

    assertEquals(received.length, 2, 'two attempts')
    const [first, second] = received as [Received, Received]
    assertEquals(first.verified, { type: 'credits.low_balance', timestamp: payload.occurred_at, data: { org_id: payload.org_id, threshold_percent: 75, grant_id: payload.grant_id, grant_amount: 200, available: 50 } })
    assertEquals(second.verified, first.verified, 'second attempt verifies')
    assertEquals(second.body, first.body, 'identical body on retry')
    assertEquals(first.body, alertBody(alert))
    assertEquals([first.headers.get('webhook-id'), second.headers.get('webhook-id')], [alert.id, alert.id])
    assertEquals([first.headers.get('webhook-attempt'), second.headers.get('webhook-attempt')], ['1', '2'])
    assertEquals(first.headers.get('content-type'), 'application/json')
    assertEquals(/^v1,[A-Za-z0-9+/]+=*$/.test(first.headers.get('webhook-signature') ?? ''), true, 'v1,<base64>')
    assertEquals(Number(second.headers.get('webhook-timestamp')) - Number(first.headers.get('webhook-timestamp')), 1, 'timestamps of each attempt')
    assertEquals(first.headers.get('webhook-signature') !== second.headers.get('webhook-signature'), true, 'each attempt signed anew')
  })
})

Deno.test('a signature made with another secret does not verify', async () => {
  await withReceiver(() => 204, async (url, received) => {
    const other = `whsec_${btoa('another secret of 32 bytes length')}`
    await createAlertDelivery(guard)({ id: crypto.randomUUID(), org_id: payload.org_id, payload, attempts: 1, url, secret: other })
    assertEquals(String(received[0]?.verified).startsWith('rejected'), true, String(received[0]?.verified))
  })
})

Deno.test('failed attempts are recorded as outcome classes, and refused URLs are never contacted', async () => {
  await withReceiver(() => 302, async (url, received) => {
    const deliver = createAlertDelivery(guard)
    const base = { id: crypto.randomUUID(), org_id: payload.org_id, payload, attempts: 1, secret }
    assertEquals(await deliver({ ...base, url }), { delivered: false, status: 302, errorClass: 'redirect_refused' })
    assertEquals(await deliver({ ...base, url: 'https://169.254.169.254/latest/meta-data/' }), { delivered: false, status: null, errorClass: 'url_not_allowed' })
    assertEquals(await deliver({ ...base, url: 'https://[::ffff:127.0.0.1]:1/' }), { delivered: false, status: null, errorClass: 'url_not_allowed' })
    assertEquals(await deliver({ ...base, url, secret: 'whsec_not base64!' }), { delivered: false, status: null, errorClass: 'signing_failed' })
    assertEquals(received.length, 1, 'only the redirecting receiver was contacted, once')
  })
})

Deno.test('secrets issued before Standard Webhooks (whsec_ + hex) still sign and verify', () => {
  const legacy = `whsec_${'ab12'.repeat(12)}`
  const body = alertBody({ payload })
  const timestamp = new Date()
  const signature = new Webhook(legacy).sign('evt_1', timestamp, body)
  const headers = { 'webhook-id': 'evt_1', 'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)), 'webhook-signature': signature }
  assertEquals((new Webhook(legacy).verify(body, headers) as { type: string }).type, 'credits.low_balance')
})

Deno.test('the signature is the spec\'s: base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" with the decoded secret', async () => {
  // The Standard Webhooks reference vector, checked independently with
  // printf 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' | openssl dgst -sha256 -mac HMAC -macopt hexkey:<decoded secret> -binary | base64
  const vector = new Webhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw').sign('msg_p5jXN8AQM9LWM0D4loKWxJek', new Date(1614265330 * 1000), '{"test": 2432232314}')
  assertEquals(vector, 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=')

  // What the dispatcher sends, recomputed with WebCrypto from the headers and body it sent.
  const sent: Array<{ headers: Headers; body: string }> = []
  const capture = { send: (_url: string, init: { headers?: HeadersInit; body?: unknown } = {}) => {
    sent.push({ headers: new Headers(init.headers), body: String(init.body) })
    return Promise.resolve({ outcome: 'delivered' as const, status: 204, headers: new Headers(), body: new Uint8Array() })
  } }
  const alert: DueAlert = { id: crypto.randomUUID(), org_id: payload.org_id, payload, attempts: 3, url: 'https://hooks.example.com/x', secret }
  assertEquals(await createAlertDelivery(capture, { now: () => new Date(1_800_000_000_000) })(alert), { delivered: true, status: 204, errorClass: null })
  const { headers, body } = sent[0]!
  const key = await crypto.subtle.importKey('raw', Uint8Array.from(atob(secret.slice(6)), (c) => c.charCodeAt(0)), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(`${alert.id}.1800000000.${body}`)))
  assertEquals(
    [headers.get('webhook-id'), headers.get('webhook-timestamp'), headers.get('webhook-attempt'), headers.get('webhook-signature')],
    [alert.id, '1800000000', '3', `v1,${btoa(String.fromCharCode(...mac))}`],
  )
})

Deno.test('one event that cannot be recorded never stops the others', async () => {
  await withReceiver(() => 204, async (url, received) => {
    const alerts: DueAlert[] = [1, 2, 3].map(() => ({ id: crypto.randomUUID(), org_id: payload.org_id, payload, attempts: 1, url, secret }))
    const recorded: string[] = []
    const store = {
      claim: () => Promise.resolve(alerts),
      record: (id: string) => {
        if (id === alerts[1]!.id) return Promise.reject(new Error('connection reset'))
        recorded.push(id)
        return Promise.resolve('delivered')
      },
    }
    const res = await createAlertsDispatcher(store, guard)()
    assertEquals([res.status, await res.json()], [200, { claimed: 3, delivered: 2, retrying: 0, failed: 0, errors: 1 }])
    assertEquals(recorded.sort(), [alerts[0]!.id, alerts[2]!.id].sort(), 'the others were recorded')
    assertEquals(received.length, 3, 'every event was delivered')
  })
})
