import type Stripe from 'stripe'
import type { UserCaller } from '../entry.ts'
import { HttpError } from '../http.ts'
import { assertEquals } from '../testing.ts'
import { checkoutSettingsFromEnv, type CheckoutSettings, type CheckoutStore, createCheckoutHandler, type Membership } from './checkout.ts'

const owner = '11111111-1111-4111-8111-111111111111'
const member = '22222222-2222-4222-8222-222222222222'
const stranger = '33333333-3333-4333-8333-333333333333'
const teamOrg = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'
const ownerPersonal = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb'

const settings: CheckoutSettings = { centsPerCredit: 3, currency: 'eur', minCredits: 100, maxCredits: 5000, returnUrl: 'http://127.0.0.1:54321/usage/' }

const memberships: Record<string, Membership[]> = {
  [owner]: [{ org_id: ownerPersonal, role: 'owner' }, { org_id: teamOrg, role: 'owner' }],
  [member]: [{ org_id: teamOrg, role: 'member' }],
}
const store: CheckoutStore = {
  membership: (userId, orgId) => Promise.resolve((memberships[userId] ?? []).find((m) => m.org_id === (orgId ?? ownerPersonal))),
}

function fakeStripe(fail?: Error) {
  const calls: Array<{ params: Stripe.Checkout.SessionCreateParams; options?: Stripe.RequestOptions }> = []
  const stripe = {
    checkout: {
      sessions: {
        create: (params: Stripe.Checkout.SessionCreateParams, options?: Stripe.RequestOptions) => {
          calls.push({ params, options })
          if (fail) return Promise.reject(fail)
          return Promise.resolve({ id: 'cs_test_1', url: 'http://127.0.0.1:9/pay/cs_test_1' })
        },
      },
    },
  } as unknown as Pick<Stripe, 'checkout'>
  return { stripe, calls }
}

const caller = (userId: string): UserCaller => ({ role: 'authenticated', userId } as UserCaller)
const post = (body: unknown, headers: Record<string, string> = {}) =>
  new Request('http://fn/credits-checkout', { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers })

async function outcome(run: Promise<Response>): Promise<[number, string | undefined]> {
  try {
    const res = await run
    return [res.status, undefined]
  } catch (error) {
    if (error instanceof HttpError) return [error.status, error.key]
    throw error
  }
}

Deno.test('an owner gets a session priced from the settings, with org_id and credits as metadata', async () => {
  const { stripe, calls } = fakeStripe()
  const handler = createCheckoutHandler(stripe, store, settings)
  // A price or an amount in the body is not a setting: ignored.
  const res = await handler(post({ credits: 500, org_id: teamOrg, unit_amount: 1, price: 0 }, { 'idempotency-key': 'click-1' }), caller(owner))
  assertEquals([res.status, await res.json()], [200, { id: 'cs_test_1', url: 'http://127.0.0.1:9/pay/cs_test_1', org_id: teamOrg, credits: 500, amount: 1500, currency: 'eur' }])
  const { params, options } = calls[0]!
  assertEquals(params.line_items, [{ quantity: 500, price_data: { currency: 'eur', unit_amount: 3, product_data: { name: 'Credits' } } }])
  assertEquals([params.mode, params.metadata, params.client_reference_id], ['payment', { org_id: teamOrg, credits: '500' }, teamOrg])
  assertEquals(params.success_url, `http://127.0.0.1:54321/usage/?checkout=success&org=${teamOrg}`)
  assertEquals(options, { idempotencyKey: `tollgate-checkout-${owner}-click-1` })
})

Deno.test('without an org id the personal org is bought for', async () => {
  const { stripe, calls } = fakeStripe()
  const res = await createCheckoutHandler(stripe, store, settings)(post({ credits: 100 }), caller(owner))
  assertEquals([res.status, calls[0]!.params.metadata], [200, { org_id: ownerPersonal, credits: '100' }])
})

Deno.test('plain members and strangers are refused before Stripe is called', async () => {
  const { stripe, calls } = fakeStripe()
  const handler = createCheckoutHandler(stripe, store, settings)
  assertEquals(await outcome(handler(post({ credits: 500, org_id: teamOrg }), caller(member))), [403, 'forbidden'])
  assertEquals(await outcome(handler(post({ credits: 500, org_id: teamOrg }), caller(stranger))), [403, 'not_a_member'])
  assertEquals(await outcome(handler(post({ credits: 500, org_id: ownerPersonal }), caller(member))), [403, 'not_a_member'])
  assertEquals(calls.length, 0)
})

Deno.test('invalid bodies are 400 with their key, before any lookup', async () => {
  const { stripe, calls } = fakeStripe()
  const handler = createCheckoutHandler(stripe, store, settings)
  const cases: Array<[unknown, string]> = [
    ['not json', 'invalid_request'],
    [[1, 2], 'invalid_request'],
    [{}, 'invalid_credits'],
    [{ credits: 99 }, 'invalid_credits'],
    [{ credits: 5001 }, 'invalid_credits'],
    [{ credits: 150.5 }, 'invalid_credits'],
    [{ credits: '500' }, 'invalid_credits'],
    [{ credits: 500, org_id: 'not-a-uuid' }, 'invalid_org_id'],
  ]
  for (const [body, key] of cases) assertEquals(await outcome(handler(post(body), caller(owner))), [400, key], JSON.stringify(body))
  assertEquals(await outcome(handler(post({ credits: 500 }, { 'idempotency-key': 'x'.repeat(201) }), caller(owner))), [400, 'invalid_idempotency_key'])
  assertEquals(calls.length, 0)
})

Deno.test('Stripe refusing the session is 400 payment_rejected; Stripe unreachable is 502', async () => {
  const rejected = Object.assign(new Error('Amount must be at least 50 cents'), { type: 'StripeInvalidRequestError' })
  const down = Object.assign(new Error('connect ECONNREFUSED'), { type: 'StripeConnectionError' })
  assertEquals(await outcome(createCheckoutHandler(fakeStripe(rejected).stripe, store, settings)(post({ credits: 100 }), caller(owner))), [400, 'payment_rejected'])
  assertEquals(await outcome(createCheckoutHandler(fakeStripe(down).stripe, store, settings)(post({ credits: 100 }), caller(owner))), [502, 'payment_provider_unavailable'])
})

Deno.test('settings come from the environment; a missing price refuses every purchase with 503, after the role check', async () => {
  const env = (values: Record<string, string>) => (name: string) => values[name]
  const page = { TOLLGATE_USAGE_PAGE_URL: 'https://app.example.com/usage' }
  assertEquals(checkoutSettingsFromEnv(env({ ...page, TOLLGATE_CHECKOUT_CENTS_PER_CREDIT: '2' })), { centsPerCredit: 2, currency: 'usd', minCredits: 100, maxCredits: 1000000, returnUrl: page.TOLLGATE_USAGE_PAGE_URL })
  const missing = checkoutSettingsFromEnv(env(page))
  assertEquals([missing instanceof Error, (missing as Error).message], [true, 'TOLLGATE_CHECKOUT_CENTS_PER_CREDIT is not set'])
  const bads: Array<Record<string, string>> = [{ TOLLGATE_CHECKOUT_CENTS_PER_CREDIT: '0.5' }, { TOLLGATE_CHECKOUT_CENTS_PER_CREDIT: '2', TOLLGATE_CHECKOUT_CURRENCY: 'dollars' }, { TOLLGATE_CHECKOUT_CENTS_PER_CREDIT: '2', TOLLGATE_USAGE_PAGE_URL: 'javascript:alert(1)' }]
  for (const bad of bads) {
    assertEquals(checkoutSettingsFromEnv(env({ ...page, ...bad })) instanceof Error, true, JSON.stringify(bad))
  }
  const { stripe, calls } = fakeStripe()
  const handler = createCheckoutHandler(stripe, store, missing)
  assertEquals(await outcome(handler(post({ credits: 500, org_id: teamOrg }), caller(member))), [403, 'forbidden'])
  assertEquals(await outcome(handler(post({ credits: 500 }), caller(owner))), [503, 'checkout_not_configured'])
  assertEquals(calls.length, 0)
})

Deno.test('a body over the cap is refused after the cap, not after reading all of it', async () => {
  const { stripe, calls } = fakeStripe()
  const handler = createCheckoutHandler(stripe, store, settings)
  let pulled = 0
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++
      controller.enqueue(new TextEncoder().encode('a'.repeat(1024)))
    },
  })
  const req = new Request('http://fn/credits-checkout', { method: 'POST', body: endless })
  assertEquals(await outcome(handler(req, caller(owner))), [413, 'payload_too_large'])
  assertEquals([pulled <= 8, calls.length], [true, 0], 'read about 4 KiB, created nothing')
})
