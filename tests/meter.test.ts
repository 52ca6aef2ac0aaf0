import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder, type Recorded } from './support/http-recorder.ts'

// The tool gateway (seed 003) against a local backend that succeeds, fails, times out or
// refuses: charged exactly when the result is the user's, never for our failures.

let backend: Awaited<ReturnType<typeof startRecorder>>
let user: TestUser
const price = 3
const op = (name: string) => `meter_${name}_${suffix}`
const suffix = randomUUID().slice(0, 8)

async function callMeter(operation: string, key: string | null, body: unknown = { q: 'hello' }, options: { quantity?: number; jwt?: string } = {}) {
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/meter/${operation}${options.quantity ? `?quantity=${options.quantity}` : ''}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${options.jwt ?? user.jwt}`, 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
    body: JSON.stringify(body),
  })
  const text = await res.text()
  return {
    status: res.status,
    body: text ? JSON.parse(text) : null,
    charged: res.headers.get('x-credits-charged'),
    remaining: res.headers.get('x-credits-remaining'),
    replay: res.headers.get('x-idempotent-replay'),
  }
}

const callsFor = (key: string) => backend.requests.filter((r: Recorded) => r.headers['x-tollgate-request-id'] === key).length
const available = async () => Number((await primaryDb.query('select available from public.credit_balances where org_id = $1', [user.personalOrgId])).rows[0].available)
const requestRow = async (key: string) =>
  (await primaryDb.query('select status, charged, backend_error, error_code, latency_ms, backend_endpoint from public.credit_requests where org_id = $1 and request_id = $2', [user.personalOrgId, key])).rows[0]

beforeAll(async () => {
  backend = await startRecorder((req) => {
    if (req.path === '/ok') return { status: 200, body: { echo: JSON.parse(req.body || 'null') } }
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
    expect(row).toMatchObject({ status: 'captured', charged: '6', backend_error: false, error_code: null, backend_endpoint: `${backend.url}/ok` })
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
    expect(await requestRow('down-1')).toMatchObject({ status: 'released', backend_error: true, error_code: 'backend_unavailable' })
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
    const statuses = results.map((r) => r.status).sort()
    // One call reaches the backend (and times out, uncharged); the others are told it is in flight.
    expect(statuses.filter((s) => s === 409)).toHaveLength(9)
    expect(results.filter((r) => r.status === 409).every((r) => r.body.error === 'request_in_progress')).toBe(true)
    expect(await available()).toBe(before)
  })

  it('answers 402 without calling the backend when credits are short', async () => {
    const poor = await createUser('meter-poor')
    const res = await callMeter(op('ok'), 'poor-1', {}, { jwt: poor.jwt })
    expect(res).toMatchObject({ status: 402, body: { error: 'insufficient_credits', required: price, available: 0 } })
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
