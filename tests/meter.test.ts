import { randomBytes, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { expectBooksBalanced, ledgerOf } from './support/credits.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder, type Recorded, type Reply } from './support/http-recorder.ts'

// The tool gateway against a local backend that succeeds, fails, times out or
// refuses: charged exactly when the result is the user's, never for our failures.

let backend: Awaited<ReturnType<typeof startRecorder>>
let user: TestUser
const price = 3
const op = (name: string) => `meter_${name}_${suffix}`
const suffix = randomUUID().slice(0, 8)

interface CallOptions {
  quantity?: number
  jwt?: string
  org?: string
  contentType?: string
}

/** POST /meter/<operation>; `body` is sent as is when it is bytes or a string, else as JSON. */
async function callMeter(operation: string, key: string | null, body: unknown = { q: 'hello' }, options: CallOptions = {}) {
  const raw = body instanceof Uint8Array || typeof body === 'string'
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/meter/${operation}${options.quantity ? `?quantity=${options.quantity}` : ''}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${options.jwt ?? user.jwt}`,
      'content-type': options.contentType ?? (raw ? 'application/octet-stream' : 'application/json'),
      ...(key ? { 'idempotency-key': key } : {}),
      ...(options.org ? { 'x-tollgate-org': options.org } : {}),
    },
    body: raw ? (body as BodyInit) : JSON.stringify(body),
  })
  const bytes = Buffer.from(await res.arrayBuffer())
  const contentType = res.headers.get('content-type')
  let parsed: any = null
  if (contentType?.startsWith('application/json') && bytes.length > 0) parsed = JSON.parse(bytes.toString('utf8'))
  return {
    status: res.status,
    body: parsed,
    bytes,
    contentType,
    charged: res.headers.get('x-credits-charged'),
    remaining: res.headers.get('x-credits-remaining'),
    replay: res.headers.get('x-idempotent-replay'),
  }
}

const callsFor = (key: string) => backend.requests.filter((r: Recorded) => r.headers['x-tollgate-request-id'] === key).length

/** Resolves once the backend has received the request with this key (its hold is reserved). */
async function reachedBackend(key: string): Promise<void> {
  for (const started = Date.now(); callsFor(key) === 0; ) {
    if (Date.now() - started > 5000) throw new Error(`the backend never received ${key}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
const availableOf = async (orgId: string) => Number((await primaryDb.query('select available from public.credit_balances where org_id = $1', [orgId])).rows[0].available)
const available = () => availableOf(user.personalOrgId)
const requestRow = async (key: string, orgId = user.personalOrgId) =>
  (await primaryDb.query('select status, charged, backend_error, error_code, latency_ms, backend_endpoint from public.credit_requests where org_id = $1 and request_id = $2', [orgId, key])).rows[0]

// Answers whose bytes no text column could hold: a NUL byte, and bytes that are not UTF-8.
const nulBody = Buffer.from('before\u0000after: {"ok":true}\u0000', 'utf8')
const binaryBody = Buffer.concat([Buffer.from([0x00, 0xff, 0xfe, 0xc3, 0x28, 0x80]), randomBytes(58)])
const oversized = Buffer.alloc(1024 * 1024 + 1, 0x61)

beforeAll(async () => {
  backend = await startRecorder((req): ReturnType<Reply> => {
    if (req.path === '/ok') return { status: 200, body: { echo: JSON.parse(req.body || 'null') } }
    if (req.path === '/nul') return { status: 200, body: nulBody, headers: { 'content-type': 'text/plain; charset=utf-8' } }
    if (req.path === '/binary') return { status: 200, body: binaryBody, headers: { 'content-type': 'application/octet-stream' } }
    if (req.path === '/echo-bytes') return { status: 200, body: req.bytes, headers: { 'content-type': 'application/x-echo' } }
    if (req.path === '/huge') return { status: 200, body: oversized, headers: { 'content-type': 'text/plain' } }
    if (req.path === '/steady') return { status: 200, body: { done: true }, delayMs: 400 }
    if (req.path === '/held') return { status: 200, body: { done: true }, delayMs: 1500 }
    if (req.path === '/redirect') return { status: 302, body: '', headers: { location: `${backend.url}/ok` } }
    if (req.path === '/slow') return { status: 200, body: { late: true }, delayMs: 1500 }
    if (req.path === '/fail') return { status: 500, body: { error: 'boom' } }
    if (req.path === '/throttled') return { status: 429, body: { error: 'slow down' } }
    return { status: 400, body: { error: 'bad query' } }
  })
  const rows: Array<[string, string, number]> = [
    [op('ok'), `${backend.url}/ok`, 5000],
    [op('slow'), `${backend.url}/slow`, 300],
    [op('fail'), `${backend.url}/fail`, 5000],
    [op('bad'), `${backend.url}/bad`, 5000],
    [op('throttled'), `${backend.url}/throttled`, 5000],
    [op('down'), 'http://127.0.0.1:9/unreachable', 2000],
    [op('nul'), `${backend.url}/nul`, 5000],
    [op('binary'), `${backend.url}/binary`, 5000],
    [op('echo'), `${backend.url}/echo-bytes`, 5000],
    [op('huge'), `${backend.url}/huge`, 5000],
    [op('steady'), `${backend.url}/steady`, 5000],
    [op('held'), `${backend.url}/held`, 5000],
    [op('redirect'), `${backend.url}/redirect`, 5000],
  ]
  for (const [operation, url, timeout] of rows) {
    await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, $2)', [operation, price])
    const set = await serviceClient().rpc('set_meter_backend', { p_operation: operation, p_url: url, p_timeout_ms: timeout })
    expect(set.error).toBeNull()
  }
  user = await createUser('meter')
  const grant = await serviceClient().rpc('grant_credits', { p_org_id: user.personalOrgId, p_amount: 1000, p_source: 'promotion' })
  expect(grant.error).toBeNull()
})

afterAll(async () => {
  await backend?.close()
  const { data } = await serviceClient().rpc('reconcile_credits')
  expect(data).toBe(0)
})

describe('metered calls', () => {
  it('charges a successful call, forwards the body, and records the call', async () => {
    const before = await available()
    const res = await callMeter(op('ok'), 'ok-1', { q: 'weather' }, { quantity: 2 })
    expect(res).toMatchObject({ status: 200, body: { echo: { q: 'weather' } }, charged: String(2 * price), remaining: String(before - 2 * price) })
    expect(await available()).toBe(before - 2 * price)
    const row = await requestRow('ok-1')
    // The backend is recorded by name (its operation), never by URL.
    expect(row).toMatchObject({ status: 'captured', charged: '6', backend_error: false, error_code: null, backend_endpoint: op('ok') })
    expect(row.latency_ms).toBeGreaterThanOrEqual(0)
    const forwarded = backend.requests.find((r) => r.headers['x-tollgate-request-id'] === 'ok-1')!
    expect(forwarded.headers['x-tollgate-user-id']).toBe(user.id)
  })

  it('does not charge our failures: 500, 429, timeout, unreachable backend', async () => {
    const before = await available()
    const fail = await callMeter(op('fail'), 'fail-1')
    expect(fail).toMatchObject({ status: 500, body: { error: 'boom' }, charged: '0' })
    const throttled = await callMeter(op('throttled'), 'throttled-1')
    expect(throttled).toMatchObject({ status: 429, charged: '0' })
    const slow = await callMeter(op('slow'), 'slow-1')
    expect(slow).toMatchObject({ status: 504, body: { error: 'backend_timeout' }, charged: '0' })
    const down = await callMeter(op('down'), 'down-1')
    expect(down).toMatchObject({ status: 502, body: { error: 'backend_unavailable' }, charged: '0' })
    expect(await available()).toBe(before)
    expect(await requestRow('fail-1')).toMatchObject({ status: 'released', charged: '0', backend_error: true, error_code: 'http_500' })
    expect(await requestRow('slow-1')).toMatchObject({ status: 'released', backend_error: true, error_code: 'backend_timeout' })
    expect(await requestRow('down-1')).toMatchObject({ status: 'released', backend_error: true, error_code: 'connection_failed' })
  })

  it('charges the user\'s own mistakes (a 400 from the backend)', async () => {
    const before = await available()
    const res = await callMeter(op('bad'), 'bad-1')
    expect(res).toMatchObject({ status: 400, body: { error: 'bad query' }, charged: String(price) })
    expect(await available()).toBe(before - price)
    expect(await requestRow('bad-1')).toMatchObject({ status: 'captured', backend_error: false, error_code: 'http_400' })
  })

  it('answers a retried key with the first outcome without calling the backend again', async () => {
    const first = await callMeter(op('ok'), 'retry-1', { q: 'once' })
    const before = await available()
    const again = await callMeter(op('ok'), 'retry-1', { q: 'once' })
    expect(again).toMatchObject({ status: 200, body: first.body, charged: String(price), replay: 'true' })
    expect(callsFor('retry-1')).toBe(1)
    expect(await available()).toBe(before)
    const failed = await callMeter(op('fail'), 'retry-2')
    const failedAgain = await callMeter(op('fail'), 'retry-2')
    expect(failedAgain).toMatchObject({ status: failed.status, body: failed.body, charged: '0', replay: 'true' })
    expect(callsFor('retry-2')).toBe(1)
  })

  it('calls the backend once for concurrent identical keys', async () => {
    const before = await available()
    const results = await Promise.all(Array.from({ length: 10 }, () => callMeter(op('slow'), 'storm-1')))
    expect(callsFor('storm-1')).toBe(1)
    // One call reaches the backend (and times out, uncharged); the others are told it is in
    // flight or, arriving after it settled, get its answer replayed.
    const first = results.filter((r) => r.replay === null && r.status !== 409)
    expect(first.map((r) => [r.status, r.body.error, r.charged])).toEqual([[504, 'backend_timeout', '0']])
    const others = results.filter((r) => r !== first[0])
    expect(others.every((r) => (r.status === 409 && r.body.error === 'request_in_progress') || (r.status === 504 && r.replay === 'true'))).toBe(true)
    expect(others.every((r) => r.charged === '0')).toBe(true)
    expect(await available()).toBe(before)
  })

  it('answers 402 without calling the backend when credits are short', async () => {
    const poor = await createUser('meter-poor')
    const res = await callMeter(op('ok'), 'poor-1', {}, { jwt: poor.jwt })
    expect(res).toMatchObject({ status: 402, body: { error: 'insufficient_credits', required: price, available: 0 }, charged: '0', remaining: '0' })
    expect(callsFor('poor-1')).toBe(0)
  })

  it('refuses calls without a key, without a JWT, or for an unknown operation', async () => {
    expect((await callMeter(op('ok'), null)).body.error).toBe('invalid_idempotency_key')
    const anonymous = await fetch(`${env.SUPABASE_URL}/functions/v1/meter/${op('ok')}`, { method: 'POST', headers: { 'idempotency-key': 'x' } })
    expect(anonymous.status).toBe(401)
    await anonymous.body?.cancel()
    const anonKey = await callMeter(op('ok'), 'anon-1', {}, { jwt: env.SUPABASE_ANON_KEY })
    expect(anonKey.status).toBe(401)
    expect((await callMeter('meter_nope', 'nope-1')).status).toBe(404)
    expect((await callMeter(op('ok'), 'q-1', {}, { quantity: -1 })).body.error).toBe('invalid_quantity')
  })
})

describe('bodies: bytes in, bytes out, exactly', () => {
  it('stores and replays an answer with a NUL byte byte for byte, and charges it', async () => {
    const before = await available()
    const first = await callMeter(op('nul'), 'nul-1')
    expect({ status: first.status, charged: first.charged, contentType: first.contentType }).toEqual({ status: 200, charged: String(price), contentType: 'text/plain; charset=utf-8' })
    expect(first.bytes.equals(nulBody)).toBe(true)
    const again = await callMeter(op('nul'), 'nul-1')
    expect({ status: again.status, replay: again.replay, charged: again.charged, contentType: again.contentType }).toEqual({ status: 200, replay: 'true', charged: String(price), contentType: 'text/plain; charset=utf-8' })
    expect(again.bytes.equals(nulBody)).toBe(true)
    expect(callsFor('nul-1')).toBe(1)
    expect(await available()).toBe(before - price)
    expect(await requestRow('nul-1')).toMatchObject({ status: 'captured', charged: String(price) })
  })

  it('stores and replays a binary answer byte for byte (not decoded as text)', async () => {
    const first = await callMeter(op('binary'), 'bin-1')
    expect({ status: first.status, length: first.bytes.length, contentType: first.contentType }).toEqual({ status: 200, length: binaryBody.length, contentType: 'application/octet-stream' })
    expect(first.bytes.equals(binaryBody)).toBe(true)
    const again = await callMeter(op('binary'), 'bin-1')
    expect(again.bytes.equals(binaryBody)).toBe(true)
    expect(again.replay).toBe('true')
    expect(callsFor('bin-1')).toBe(1)
  })

  it('forwards a binary request body exactly, and replays the echo exactly', async () => {
    const payload = Buffer.concat([Buffer.from([0x00, 0x00, 0xff]), randomBytes(4096)])
    const first = await callMeter(op('echo'), 'echo-1', payload)
    const forwarded = backend.requests.find((r) => r.headers['x-tollgate-request-id'] === 'echo-1')!
    expect(forwarded.bytes.equals(payload)).toBe(true)
    expect(first.bytes.equals(payload)).toBe(true)
    const again = await callMeter(op('echo'), 'echo-1', payload)
    expect(again.bytes.equals(payload)).toBe(true)
    expect(callsFor('echo-1')).toBe(1)
  })

  it('refuses a backend answer over 1 MiB: not charged, 502 backend_response_too_large, replayed the same', async () => {
    const before = await available()
    const first = await callMeter(op('huge'), 'huge-1')
    expect(first).toMatchObject({ status: 502, body: { error: 'backend_response_too_large', limit_bytes: 1024 * 1024 }, charged: '0', remaining: String(before) })
    expect(await requestRow('huge-1')).toMatchObject({ status: 'released', charged: '0', backend_error: true, error_code: 'backend_response_too_large' })
    const again = await callMeter(op('huge'), 'huge-1')
    expect(again).toMatchObject({ status: 502, body: { error: 'backend_response_too_large' }, charged: '0', replay: 'true' })
    expect(callsFor('huge-1')).toBe(1)
    expect(await available()).toBe(before)
  })

  it('does not follow a redirect: not charged, 502 backend_invalid_response, the target never called', async () => {
    const before = await available()
    const calls = backend.requests.length
    const res = await callMeter(op('redirect'), 'redirect-1')
    expect(res).toMatchObject({ status: 502, body: { error: 'backend_invalid_response' }, charged: '0', remaining: String(before) })
    expect(backend.requests.slice(calls).map((r) => r.path)).toEqual(['/redirect'])
    expect(await requestRow('redirect-1')).toMatchObject({ status: 'released', backend_error: true, error_code: 'http_302' })
    expect(await available()).toBe(before)
  })
})

describe('idempotency: one key, one request, one caller', () => {
  it('answers 409 idempotency_conflict for a changed body, content type, quantity or operation under the same key, before anything else', async () => {
    const first = await callMeter(op('ok'), 'changed-1', { q: 'first' })
    expect(first.status).toBe(200)
    const before = await available()
    const changed = await callMeter(op('ok'), 'changed-1', { q: 'second' })
    expect(changed).toMatchObject({ status: 409, body: { error: 'idempotency_conflict' }, charged: '0', remaining: String(before), replay: null })
    expect(changed.body).not.toHaveProperty('echo')
    const quantity = await callMeter(op('ok'), 'changed-1', { q: 'first' }, { quantity: 2 })
    expect(quantity).toMatchObject({ status: 409, body: { error: 'idempotency_conflict' }, charged: '0', remaining: String(before) })
    const otherOperation = await callMeter(op('bad'), 'changed-1', { q: 'first' })
    expect(otherOperation).toMatchObject({ status: 409, body: { error: 'idempotency_conflict' }, charged: '0' })
    // The content type is forwarded to the backend: another one is another request.
    const otherType = await callMeter(op('ok'), 'changed-1', { q: 'first' }, { contentType: 'text/plain' })
    expect(otherType).toMatchObject({ status: 409, body: { error: 'idempotency_conflict' }, charged: '0' })
    // The same request still replays.
    const same = await callMeter(op('ok'), 'changed-1', { q: 'first' })
    expect(same).toMatchObject({ status: 200, body: { echo: { q: 'first' } }, replay: 'true', charged: String(price) })
    expect(callsFor('changed-1')).toBe(1)
    expect(await available()).toBe(before)
  })

  it('a changed body while the first is in flight is a conflict too, not request_in_progress', async () => {
    const before = await available()
    const running = callMeter(op('held'), 'changed-2', { q: 'a' })
    await reachedBackend('changed-2')
    const changed = await callMeter(op('held'), 'changed-2', { q: 'b' })
    expect(changed).toMatchObject({ status: 409, body: { error: 'idempotency_conflict' }, charged: '0' })
    expect((await running).status).toBe(200)
    expect(callsFor('changed-2')).toBe(1)
    expect(await available()).toBe(before - price)
  })

  it("serves a replay to the same caller only: another member gets 409 idempotency_key_in_use and never the body", async () => {
    const member = await createUser('meter-member')
    await primaryDb.query(`insert into public.org_members (org_id, user_id, role) values ($1, $2, 'member')`, [user.personalOrgId, member.id])
    const secret = { q: 'my private prompt' }
    const first = await callMeter(op('ok'), 'mine-1', secret)
    expect(first).toMatchObject({ status: 200, body: { echo: secret } })
    const before = await available()

    const stolen = await callMeter(op('ok'), 'mine-1', secret, { jwt: member.jwt, org: user.personalOrgId })
    expect(stolen).toMatchObject({ status: 409, body: { error: 'idempotency_key_in_use' }, charged: '0', remaining: String(before), replay: null })
    expect(stolen.bytes.toString('utf8')).not.toContain('private prompt')
    // In flight too: the key is bound to its caller from the moment it is reserved.
    const running = callMeter(op('held'), 'mine-2', secret)
    await reachedBackend('mine-2')
    const early = await callMeter(op('held'), 'mine-2', secret, { jwt: member.jwt, org: user.personalOrgId })
    expect(early).toMatchObject({ status: 409, body: { error: 'idempotency_key_in_use' }, charged: '0' })
    expect((await running).status).toBe(200)
    expect(await available()).toBe(before - price)
    expect([callsFor('mine-1'), callsFor('mine-2')]).toEqual([1, 1])
    // The owner still gets their replay.
    expect(await callMeter(op('ok'), 'mine-1', secret)).toMatchObject({ status: 200, body: { echo: secret }, replay: 'true' })
  })

  it('calls a succeeding backend once for 10 concurrent identical keys and charges once', async () => {
    const payer = await createUser('meter-storm')
    await primaryDb.query('select 1')
    const grant = await serviceClient().rpc('grant_credits', { p_org_id: payer.personalOrgId, p_amount: 100, p_source: 'promotion' })
    expect(grant.error).toBeNull()
    const results = await Promise.all(Array.from({ length: 10 }, () => callMeter(op('steady'), 'storm-ok', { q: 'same' }, { jwt: payer.jwt })))
    expect(callsFor('storm-ok')).toBe(1)
    const fresh = results.filter((r) => r.status === 200 && r.replay === null)
    const replays = results.filter((r) => r.status === 200 && r.replay === 'true')
    const inFlight = results.filter((r) => r.status === 409)
    expect(fresh).toHaveLength(1)
    expect(fresh.length + replays.length + inFlight.length).toBe(10)
    expect(inFlight.every((r) => r.body.error === 'request_in_progress' && r.charged === '0' && r.remaining === '97')).toBe(true)
    expect(replays.every((r) => r.charged === String(price) && r.remaining === '97' && r.bytes.equals(fresh[0]!.bytes))).toBe(true)
    expect(fresh[0]).toMatchObject({ charged: String(price), remaining: '97' })
    expect(await expectBooksBalanced(payer.personalOrgId)).toEqual({ available: 100 - price, held: 0 })
    expect((await ledgerOf(payer.personalOrgId)).amount).toBe(100 - price)
  })
})

describe('headers and records', () => {
  it('puts X-Credits-* on replays, timeouts, 409 request_in_progress and 409 request_expired', async () => {
    const running = callMeter(op('held'), 'hdr-1')
    await reachedBackend('hdr-1')
    const during = await callMeter(op('held'), 'hdr-1')
    const now = await available()
    expect(during).toMatchObject({ status: 409, body: { error: 'request_in_progress' }, charged: '0', remaining: String(now) })
    const done = await running
    expect(done).toMatchObject({ status: 200, charged: String(price), remaining: String(now) })

    const timeout = await callMeter(op('slow'), 'hdr-2')
    expect(timeout).toMatchObject({ status: 504, charged: '0', remaining: String(now) })
    const timeoutAgain = await callMeter(op('slow'), 'hdr-2')
    expect(timeoutAgain).toMatchObject({ status: 504, body: { error: 'backend_timeout' }, charged: '0', remaining: String(now), replay: 'true' })

    // A hold that lapses before the answer is stored: nothing charged (409 hold_expired), and
    // the key then answers 409 request_expired — both with the headers.
    const lapsing = callMeter(op('held'), 'hdr-3')
    await reachedBackend('hdr-3')
    await primaryDb.query(`update public.credit_requests set hold_expires_at = now() - interval '1 second' where org_id = $1 and request_id = 'hdr-3'`, [user.personalOrgId])
    expect((await serviceClient().rpc('expire_stale_holds')).error).toBeNull()
    expect(await lapsing).toMatchObject({ status: 409, body: { error: 'hold_expired' }, charged: '0', remaining: String(now) })
    const expired = await callMeter(op('held'), 'hdr-3')
    expect(expired).toMatchObject({ status: 409, body: { error: 'request_expired' }, charged: '0', remaining: String(now) })
    expect(callsFor('hdr-3')).toBe(1)

    // A key a trusted server used outside the gateway is not the gateway's to replay.
    const outside = await serviceClient().rpc('reserve_credits', { p_org_id: user.personalOrgId, p_user_id: user.id, p_operation: op('ok'), p_request_id: 'hdr-4' })
    expect(outside.error).toBeNull()
    expect(await callMeter(op('ok'), 'hdr-4')).toMatchObject({ status: 409, body: { error: 'idempotency_conflict' }, charged: '0', remaining: String(now - price) })
    expect(callsFor('hdr-4')).toBe(0)
    expect((await serviceClient().rpc('release_credits', { p_org_id: user.personalOrgId, p_request_id: 'hdr-4' })).error).toBeNull()
  })

  it('answers refused before the org is resolved carry no X-Credits-* headers', async () => {
    const noKey = await callMeter(op('ok'), null)
    expect(noKey).toMatchObject({ status: 400, body: { error: 'invalid_idempotency_key' }, charged: null, remaining: null })
    const stranger = await createUser('meter-stranger')
    const notMine = await callMeter(op('ok'), 'stranger-1', {}, { jwt: stranger.jwt, org: user.personalOrgId })
    expect(notMine).toMatchObject({ status: 403, body: { error: 'not_a_member' }, charged: null, remaining: null })
  })

  it("shows members the backend's name, never its URL", async () => {
    await callMeter(op('ok'), 'named-1')
    const { data, error } = await user.client.from('credit_requests').select('request_id, backend_endpoint').eq('org_id', user.personalOrgId)
    expect(error).toBeNull()
    expect(data!.length).toBeGreaterThan(5)
    expect(data!.find((r) => r.request_id === 'named-1')).toEqual({ request_id: 'named-1', backend_endpoint: op('ok') })
    expect(data!.filter((r) => String(r.backend_endpoint ?? '').includes('://'))).toEqual([])
  })
})
