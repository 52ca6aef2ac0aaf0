import type Stripe from 'stripe'
import { assertEquals } from '../testing.ts'
import { type ClaimedTopup, processTopups, STRIPE_TIMEOUT_MS, type TopupOutcome, type TopupState, type TopupStore } from './topup.ts'

// A fake store that keeps each request's status the way the database does: a mark applies to a
// processing request only, anything else is a replay.
function fakeStore(claimed: ClaimedTopup[], options: { settledByWebhook?: string[]; markThrowsFor?: string[] } = {}) {
  const status = new Map(claimed.map((t) => [t.id, options.settledByWebhook?.includes(t.id) ? 'succeeded' : 'processing']))
  const calls: string[] = []
  const store: TopupStore = {
    claim: () => Promise.resolve(claimed),
    mark(id: string, outcome: TopupOutcome, paymentIntentId: string | null): Promise<TopupState> {
      calls.push(`mark ${id} ${outcome} ${paymentIntentId ?? '-'}`)
      if (options.markThrowsFor?.includes(id)) return Promise.reject(Object.assign(new Error('deadlock detected'), { code: '40P01' }))
      if (status.get(id) !== 'processing') return Promise.resolve({ status: status.get(id)!, replayed: true })
      status.set(id, outcome === 'retry' ? 'pending' : outcome)
      return Promise.resolve({ status: status.get(id)!, replayed: false })
    },
    complete(id: string, paymentIntentId: string): Promise<TopupState> {
      calls.push(`complete ${id} ${paymentIntentId}`)
      const replayed = status.get(id) === 'succeeded'
      status.set(id, 'succeeded')
      return Promise.resolve({ status: 'succeeded', replayed })
    },
  }
  return { store, status, calls }
}

type Behaviour = 'succeeded' | 'processing' | 'card_error' | 'connection_error'

function fakeStripe(behaviour: Record<string, Behaviour>) {
  const requests: { customer: string; idempotencyKey?: string; timeout?: number; amount: number }[] = []
  const stripe = {
    paymentIntents: {
      create(params: Stripe.PaymentIntentCreateParams, options?: Stripe.RequestOptions) {
        const customer = String(params.customer)
        requests.push({ customer, idempotencyKey: options?.idempotencyKey, timeout: options?.timeout, amount: params.amount })
        const mode = behaviour[customer] ?? 'succeeded'
        if (mode === 'card_error') return Promise.reject(Object.assign(new Error('Your card was declined.'), { type: 'StripeCardError' }))
        if (mode === 'connection_error') return Promise.reject(Object.assign(new Error('An error occurred with our connection to Stripe.'), { type: 'StripeConnectionError' }))
        return Promise.resolve({ id: `pi_${customer}`, status: mode })
      },
    },
  } as unknown as Pick<Stripe, 'paymentIntents'>
  return { stripe, requests }
}

const topup = (id: string): ClaimedTopup => ({ id, org_id: `org-${id}`, amount: 100, stripe_customer_id: `cus_${id}`, stripe_payment_method_id: 'pm_card' })
const pricing = { centsPerCredit: 2, currency: 'usd' }

Deno.test('every request of a batch is handled on its own, and the answer counts each one', async () => {
  const claimed = ['ok', 'declined', 'offline', 'dbfail', 'raced', 'async'].map(topup)
  const { store, status, calls } = fakeStore(claimed, { settledByWebhook: ['raced'], markThrowsFor: ['dbfail'] })
  const { stripe } = fakeStripe({ cus_declined: 'card_error', cus_offline: 'connection_error', cus_async: 'processing' })

  const summary = await processTopups(stripe, store, pricing)

  assertEquals(summary, { claimed: 6, succeeded: 2, submitted: 1, failed: 1, retrying: 1, cancelled: 0, errors: 1 }, 'summary')
  assertEquals(Object.fromEntries(status), { ok: 'succeeded', declined: 'failed', offline: 'pending', dbfail: 'processing', raced: 'succeeded', async: 'submitted' }, 'statuses')
  // The webhook settled "raced" first: the processor's mark is a replay and it completes nothing.
  assertEquals(calls.filter((c) => c.includes(' raced ')), ['mark raced submitted pi_cus_raced'], 'raced calls')
  assertEquals(calls.filter((c) => c.startsWith('complete')), ['complete ok pi_cus_ok'], 'completions')
})

Deno.test('Stripe refusals fail the request; outages retry it', async () => {
  const { store, calls } = fakeStore(['declined', 'offline'].map(topup))
  const { stripe } = fakeStripe({ cus_declined: 'card_error', cus_offline: 'connection_error' })
  await processTopups(stripe, store, pricing)
  assertEquals(calls.sort(), ['mark declined failed -', 'mark offline retry -'], 'marks')
})

Deno.test('each request carries its own idempotency key, a bounded timeout and its price', async () => {
  const { store } = fakeStore(['a', 'b'].map(topup))
  const { stripe, requests } = fakeStripe({})
  await processTopups(stripe, store, pricing)
  assertEquals(
    requests.map((r) => [r.customer, r.idempotencyKey, r.timeout, r.amount]).sort(),
    [['cus_a', 'tollgate-topup-a', STRIPE_TIMEOUT_MS, 200], ['cus_b', 'tollgate-topup-b', STRIPE_TIMEOUT_MS, 200]],
    'requests',
  )
})
