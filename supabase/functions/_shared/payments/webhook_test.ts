import type Stripe from 'stripe'
import { handle } from '../entry.ts'
import { HttpError } from '../http.ts'
import { assertEquals } from '../testing.ts'
import { type ChargeInput, type CheckoutInput, classify, type ExceptionInput } from './events.ts'
import { createStripeWebhookHandler, type EventOutcome, type PaymentsStore, maxEventBytes } from './webhook.ts'

const org = '6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b'
const event = (type: string, object: Record<string, unknown>, id = 'evt_1') => ({ id, type, object: 'event', data: { object } }) as unknown as Stripe.Event
const session = (extra: Record<string, unknown> = {}) => ({
  id: 'cs_1',
  object: 'checkout.session',
  payment_status: 'paid',
  payment_intent: 'pi_1',
  amount_total: 1000,
  currency: 'eur',
  metadata: { org_id: org, credits: '500' },
  ...extra,
})

Deno.test('checkout events become order-independent inputs: the outcome comes from the event, the purchase from the session', () => {
  const paid = classify(event('checkout.session.async_payment_succeeded', session({ payment_status: 'paid' })))
  assertEquals(paid, {
    kind: 'checkout',
    input: { eventId: 'evt_1', eventType: 'checkout.session.async_payment_succeeded', sessionId: 'cs_1', orgId: org, credits: 500, outcome: 'paid', paymentIntentId: 'pi_1', amount: 1000, currency: 'eur' },
  })
  const unpaid = classify(event('checkout.session.completed', session({ payment_status: 'unpaid' })))
  assertEquals(unpaid.kind === 'checkout' && unpaid.input.outcome, 'unpaid')
  const failed = classify(event('checkout.session.async_payment_failed', session({ payment_status: 'unpaid' })))
  assertEquals(failed.kind === 'checkout' && failed.input.outcome, 'failed')
  // A free session (100 % coupon) is paid and charged nothing: no amount, no payment intent.
  const free = classify(event('checkout.session.completed', session({ payment_status: 'no_payment_required', amount_total: 0, payment_intent: null })))
  assertEquals(free.kind === 'checkout' && [free.input.outcome, free.input.amount, free.input.paymentIntentId], ['paid', null, null])
  // An expanded payment intent is read by its id.
  const expanded = classify(event('checkout.session.completed', session({ payment_intent: { id: 'pi_2', object: 'payment_intent' } })))
  assertEquals(expanded.kind === 'checkout' && expanded.input.paymentIntentId, 'pi_2')
})

Deno.test('bad metadata on a session that was or may be paid is unusable; on a failed one, or without our metadata, it is ignored', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ org_id: 'not-a-uuid', credits: '5' }, 'invalid_org_id'],
    [{ org_id: org }, 'invalid_credits'],
    [{ org_id: org, credits: '0' }, 'invalid_credits'],
    [{ org_id: org, credits: '1.5' }, 'invalid_credits'],
    [{ org_id: org, credits: '-3' }, 'invalid_credits'],
    [{ org_id: org, credits: '1000000000001' }, 'invalid_credits'],
    [{ credits: '5' }, 'invalid_org_id'],
  ]
  for (const [metadata, reason] of cases) {
    const action = classify(event('checkout.session.completed', session({ metadata })))
    assertEquals(action.kind === 'unusable' && [action.record.reason, action.record.objectId], [reason, 'cs_1'], JSON.stringify(metadata))
    const failed = classify(event('checkout.session.async_payment_failed', session({ metadata })))
    assertEquals(failed.kind, 'ignore', `failed ${JSON.stringify(metadata)}`)
  }
  assertEquals(classify(event('checkout.session.completed', session({ metadata: {} }))).kind, 'ignore')
  // client_reference_id still names the org when metadata carries the credits.
  const byReference = classify(event('checkout.session.completed', session({ metadata: { credits: '7' }, client_reference_id: org })))
  assertEquals(byReference.kind === 'checkout' && [byReference.input.orgId, byReference.input.credits], [org, 7])
})

Deno.test('refunds and disputes are keyed by their payment intent', () => {
  const refund = classify(event('charge.refunded', { id: 'ch_1', object: 'charge', amount: 1000, amount_refunded: 250, currency: 'eur', payment_intent: 'pi_1' }))
  assertEquals(refund, {
    kind: 'charge',
    input: { eventId: 'evt_1', eventType: 'charge.refunded', paymentIntentId: 'pi_1', amount: 1000, amountRefunded: 250, dispute: null, currency: 'eur' },
  })
  const dispute = classify(event('charge.dispute.closed', { id: 'dp_1', object: 'dispute', amount: 1000, status: 'lost', currency: 'eur', payment_intent: 'pi_1', charge: 'ch_1' }))
  assertEquals(dispute.kind === 'charge' && dispute.input.dispute, { id: 'dp_1', status: 'lost', amount: 1000 })
  assertEquals(classify(event('charge.refunded', { id: 'ch_2', object: 'charge', amount: 10, amount_refunded: 10, payment_intent: null })).kind, 'ignore')
  assertEquals(classify(event('charge.refunded', { id: 'ch_3', object: 'charge', amount: 'ten', amount_refunded: 10, payment_intent: 'pi_3' })).kind, 'unusable')
  const topup = classify(event('payment_intent.succeeded', { id: 'pi_4', object: 'payment_intent', amount: 400, amount_received: 400, currency: 'usd', metadata: { topup_request_id: org } }))
  assertEquals(topup.kind === 'topup' && [topup.succeeded, topup.charge?.amount], [true, 400])
  assertEquals(classify(event('customer.created', { id: 'cus_1' })), { kind: 'ignore', reason: 'customer.created', quiet: true })
})

/** A store whose answers and failures each test sets. */
function fakeStore(overrides: Partial<PaymentsStore> = {}) {
  const calls: Array<[string, unknown]> = []
  const store: PaymentsStore = {
    applyCheckout: (input: CheckoutInput) => (calls.push(['applyCheckout', input]), Promise.resolve({ outcome: 'granted' })),
    applyCharge: (input: ChargeInput) => (calls.push(['applyCharge', input]), Promise.resolve({ outcome: 'settled' })),
    completeTopup: (...args: unknown[]) => (calls.push(['completeTopup', args]), Promise.resolve({})),
    recordException: (input: ExceptionInput) => (calls.push(['recordException', input]), Promise.resolve({ exception_id: 7, reason: input.reason })),
    ...overrides,
  }
  return { store, calls }
}

const verifier = { constructEventAsync: (payload: string) => Promise.resolve(JSON.parse(payload) as Stripe.Event) }

async function post(store: PaymentsStore, body: Stripe.Event) {
  const handler = handle('stripe-webhook', { methods: ['POST'], access: 'public' }, createStripeWebhookHandler(verifier, 'whsec_test', store))
  const res = await handler(new Request('http://127.0.0.1/stripe-webhook', { method: 'POST', body: JSON.stringify(body), headers: { 'stripe-signature': 'fake' } }))
  return { status: res.status, body: await res.json() }
}

const quietly = async <T>(fn: () => Promise<T>): Promise<T> => {
  const [log, error] = [console.log, console.error]
  console.log = console.error = () => {}
  try {
    return await fn()
  } finally {
    ;[console.log, console.error] = [log, error]
  }
}

Deno.test('an unusable event is acknowledged only after it is recorded; if recording fails, Stripe gets a 5xx and retries', async () => {
  const bad = event('checkout.session.completed', session({ metadata: { org_id: org, credits: 'lots' } }))
  const ok = fakeStore()
  assertEquals(await quietly(() => post(ok.store, bad)), { status: 200, body: { received: true, unapplied: 'invalid_credits' } })
  assertEquals(ok.calls.map(([name]) => name), ['recordException'])

  const broken = fakeStore({ recordException: () => Promise.reject(new Error('disk full')) })
  assertEquals((await quietly(() => post(broken.store, bad))).status, 500)
  const down = fakeStore({ recordException: () => Promise.reject(new HttpError(503, 'database_unavailable', 'retry')) })
  assertEquals((await quietly(() => post(down.store, bad))).status, 503)
})

Deno.test('a documented refusal is recorded and acknowledged; a bug or an outage is not acknowledged', async () => {
  const refusal = Object.assign(new Error('invalid_payment_intent'), { code: '22023', message: 'invalid_payment_intent', detail: '{"payment_intent_id": "x"}' })
  const refused = fakeStore({ applyCharge: () => Promise.reject(refusal) })
  const refund = event('charge.refunded', { id: 'ch_1', object: 'charge', amount: 10, amount_refunded: 10, payment_intent: 'pi_weird' })
  assertEquals(await quietly(() => post(refused.store, refund)), { status: 200, body: { received: true, unapplied: 'invalid_payment_intent' } })
  assertEquals(refused.calls, [['recordException', { eventId: 'evt_1', eventType: 'charge.refunded', objectId: 'pi_weird', orgId: null, reason: 'invalid_payment_intent', detail: { payment_intent_id: 'x' } }]])

  const bug = fakeStore({ applyCharge: () => Promise.reject(Object.assign(new Error('deadlock detected'), { code: '40P01' })) })
  assertEquals((await quietly(() => post(bug.store, refund))).status, 500)
  assertEquals(bug.calls, [])
})

Deno.test('what the database recorded is reported as such, once', async () => {
  const recorded = fakeStore({ applyCheckout: () => Promise.resolve({ outcome: 'unapplied', reason: 'unknown_org', exception_id: 3 } as EventOutcome) })
  assertEquals(await quietly(() => post(recorded.store, event('checkout.session.completed', session()))), { status: 200, body: { received: true, unapplied: 'unknown_org' } })
  assertEquals(recorded.calls, [])
  const shortfall = fakeStore({ applyCharge: () => Promise.resolve({ outcome: 'settled', exception: 'revocation_shortfall' }) })
  const refund = event('charge.refunded', { id: 'ch_1', object: 'charge', amount: 10, amount_refunded: 10, payment_intent: 'pi_1' })
  assertEquals(await quietly(() => post(shortfall.store, refund)), { status: 200, body: { received: true, exception: 'revocation_shortfall' } })
  assertEquals(await quietly(() => post(fakeStore().store, refund)), { status: 200, body: { received: true } })
})

Deno.test('a top-up payment links its grant after completing it; a refused completion is recorded and stops there', async () => {
  const intent = event('payment_intent.succeeded', { id: 'pi_9', object: 'payment_intent', amount: 400, amount_received: 400, currency: 'usd', metadata: { topup_request_id: org } })
  const ok = fakeStore()
  assertEquals(await quietly(() => post(ok.store, intent)), { status: 200, body: { received: true } })
  assertEquals(ok.calls.map(([name]) => name), ['completeTopup', 'applyCharge'])
  const unknown = Object.assign(new Error('unknown_request'), { code: 'PT404', message: 'unknown_request', detail: '{}' })
  const refused = fakeStore({ completeTopup: () => Promise.reject(unknown) })
  assertEquals(await quietly(() => post(refused.store, intent)), { status: 200, body: { received: true, unapplied: 'unknown_request' } })
  assertEquals(refused.calls.map(([name]) => name), ['recordException'])
})

Deno.test('an oversized body is refused before its signature is checked or anything is stored', async () => {
  const { store, calls } = fakeStore()
  let verified = 0
  const counting = { constructEventAsync: (payload: string) => (verified++, verifier.constructEventAsync(payload)) }
  const handler = handle('stripe-webhook', { methods: ['POST'], access: 'public' }, createStripeWebhookHandler(counting, 'whsec_test', store))
  // Streamed without a Content-Length, and declared: both are cut at the cap.
  const streamed = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(new Uint8Array(64 * 1024))
    },
  })
  for (const req of [
    new Request('http://127.0.0.1/stripe-webhook', { method: 'POST', body: streamed, headers: { 'stripe-signature': 'fake' } }),
    new Request('http://127.0.0.1/stripe-webhook', { method: 'POST', body: 'x', headers: { 'stripe-signature': 'fake', 'content-length': String(maxEventBytes + 1) } }),
  ]) {
    const res = await quietly(() => handler(req))
    assertEquals([res.status, (await res.json()).error], [413, 'payload_too_large'])
  }
  assertEquals([verified, calls.length], [0, 0])
})
