import type { UserCaller } from '../entry.ts'
import { HttpError } from '../http.ts'
import { assertEquals } from '../testing.ts'
import { createMeterHandler, maxBodyBytes, requestFingerprint, type MeterStore, type Outcome, type ReserveArgs } from './handler.ts'

const userId = '5eed0000-0000-4000-8000-0000000000aa'
const orgId = '5eed0000-0000-4000-8000-0000000000bb'
/** The verified caller the shared entry hands the handler. */
const caller: UserCaller = { role: 'authenticated', userId, claims: { sub: userId, role: 'authenticated' } }

/** A store that holds 3 credits per call out of 100, or fails reserve with `reserveError`. */
function fakeStore(reserveError?: { code: string; message: string; detail: string }) {
  const reserved: ReserveArgs[] = []
  const settled: Outcome[] = []
  const store: MeterStore = {
    backend: (operation) => Promise.resolve(operation === 'op' ? { url: 'https://backend.test/op', timeout_ms: 1000 } : undefined),
    reserve: (args) => {
      reserved.push(args)
      return reserveError ? Promise.reject(reserveError) : Promise.resolve({ org_id: orgId, status: 'held', charged: 0, replayed: false })
    },
    storedResponse: () => Promise.resolve(undefined),
    settle: (_org, _key, outcome) => {
      settled.push(outcome)
      return Promise.resolve({ charged: outcome.capture ? 3 : 0, balance_after: outcome.capture ? 97 : 100 })
    },
    available: () => Promise.resolve(100),
  }
  return { store, reserved, settled }
}

/** A backend that answers `make()` and records what it was asked. */
function fakeBackend(make: () => Response) {
  const calls: RequestInit[] = []
  const fetchImpl = ((_url: string, init: RequestInit) => {
    calls.push(init)
    return Promise.resolve(make())
  }) as typeof fetch
  return { fetchImpl, calls }
}

const call = (body: BodyInit = 'hello', headers: Record<string, string> = {}) =>
  new Request('http://fn/meter/op', { method: 'POST', body, headers: { 'idempotency-key': 'k-1', ...headers } })

async function outcomeOf(promise: Promise<Response>) {
  try {
    const res = await promise
    return {
      status: res.status,
      bytes: [...new Uint8Array(await res.arrayBuffer())],
      charged: res.headers.get('x-credits-charged'),
      remaining: res.headers.get('x-credits-remaining'),
    }
  } catch (error) {
    // Refusals are thrown for the shared entry to render, with the headers they must carry.
    if (error instanceof HttpError) {
      return { status: error.status, key: error.key, charged: error.headers['x-credits-charged'], remaining: error.headers['x-credits-remaining'] }
    }
    throw error
  }
}

Deno.test('the fingerprint binds method, operation, quantity, content type and body bytes', async () => {
  const hex = async (operation: string, quantity: number, body: number[], contentType = 'application/octet-stream') =>
    [...(await requestFingerprint(operation, quantity, contentType, new Uint8Array(body)))].map((b) => b.toString(16).padStart(2, '0')).join('')
  const base = await hex('op', 1, [0, 1, 2])
  assertEquals(base.length, 64, 'SHA-256 size')
  assertEquals(await hex('op', 1, [0, 1, 2]), base, 'same request, same fingerprint')
  const others = [await hex('op', 1, [0, 1, 3]), await hex('op', 2, [0, 1, 2]), await hex('op2', 1, [0, 1, 2]), await hex('op', 1, [0, 1, 2, 0]), await hex('op', 1, [0, 1, 2], 'application/json')]
  assertEquals(others.filter((other) => other === base).length, 0, 'any change changes the fingerprint')
})

Deno.test('binary bodies go out and come back byte for byte; the key is bound to the body', async () => {
  const answerBytes = new Uint8Array([0, 255, 0, 0xc3, 0x28, 10])
  const { store, reserved, settled } = fakeStore()
  const backend = fakeBackend(() => new Response(answerBytes, { headers: { 'content-type': 'application/octet-stream' } }))
  const sent = new Uint8Array([0, 0, 1, 254])
  const outcome = await outcomeOf(createMeterHandler(store, backend.fetchImpl)(call(sent), caller))
  assertEquals(outcome, { status: 200, bytes: [...answerBytes], charged: '3', remaining: '97' }, 'answer')
  assertEquals([...new Uint8Array(backend.calls[0]!.body as Uint8Array)], [...sent], 'forwarded body')
  assertEquals(backend.calls[0]!.redirect, 'manual', 'redirects are not followed')
  assertEquals([...reserved[0]!.fingerprint], [...(await requestFingerprint('op', 1, 'application/octet-stream', sent))], 'fingerprint')
  assertEquals([...settled[0]!.response.body], [...answerBytes], 'stored bytes')
  assertEquals(settled[0]!.result.backend_endpoint, 'op', 'the backend is recorded by name')
})

Deno.test('an answer over the cap is not charged: 502 backend_response_too_large', async () => {
  const { store, settled } = fakeStore()
  const backend = fakeBackend(() => new Response(new Uint8Array(maxBodyBytes + 1)))
  const outcome = await outcomeOf(createMeterHandler(store, backend.fetchImpl)(call(), caller))
  assertEquals([outcome.status, outcome.charged], [502, '0'], 'answer')
  assertEquals([settled[0]!.capture, settled[0]!.result.error_code], [false, 'backend_response_too_large'], 'released')
})

Deno.test('a redirect is not passed on and not charged: 502 backend_invalid_response', async () => {
  const { store, settled } = fakeStore()
  const backend = fakeBackend(() => new Response(null, { status: 302, headers: { location: 'https://elsewhere.test/' } }))
  const outcome = await outcomeOf(createMeterHandler(store, backend.fetchImpl)(call(), caller))
  assertEquals([outcome.status, outcome.charged], [502, '0'], 'answer')
  assertEquals([settled[0]!.capture, settled[0]!.result.error_code], [false, 'http_302'], 'released')
})

Deno.test('refusals after the org is resolved carry X-Credits-*; the backend is never called', async () => {
  for (const [code, message] of [['PT402', 'insufficient_credits'], ['PT409', 'idempotency_conflict'], ['PT409', 'idempotency_key_in_use']]) {
    const { store } = fakeStore({ code: code!, message: message!, detail: '{}' })
    const backend = fakeBackend(() => new Response('never'))
    const outcome = await outcomeOf(createMeterHandler(store, backend.fetchImpl)(call(), caller))
    assertEquals([outcome.status, outcome.charged, outcome.remaining], [Number(code!.slice(2)), '0', '100'], message)
    assertEquals(backend.calls.length, 0, `${message}: backend calls`)
  }
})

Deno.test('refusals before the org is resolved carry no X-Credits-*', async () => {
  const { store } = fakeStore({ code: '42501', message: 'not_a_member', detail: '{}' })
  const handler = createMeterHandler(store, fakeBackend(() => new Response('never')).fetchImpl)
  assertEquals(await outcomeOf(handler(call(), caller)), { status: 403, key: 'not_a_member' }, 'not a member')
  assertEquals(await outcomeOf(handler(call('x', { 'idempotency-key': '' }), caller)), { status: 400, key: 'invalid_idempotency_key' }, 'no key')
  assertEquals(await outcomeOf(handler(call(new Uint8Array(maxBodyBytes + 1)), caller)), { status: 413, key: 'request_too_large' }, 'too large')
})
