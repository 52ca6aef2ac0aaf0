import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { discoverFunctions, localFunctionSecrets, startFunctions, type RunningFunction } from '@tollgate/local-stack'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder, type Answer } from './support/http-recorder.ts'

// Payments: the Stripe webhook with signed, forged and duplicate deliveries; auto
// top-up from the threshold crossing to the off-session payment and the granted credits.

const webhookSecret = process.env.STRIPE_WEBHOOK_SECRET ?? localFunctionSecrets.STRIPE_WEBHOOK_SECRET!
const stripe = new Stripe('sk_test_signing_only')
const service = serviceClient()

async function deliver(type: string, object: Record<string, unknown>, options: { secret?: string; id?: string } = {}) {
  const payload = JSON.stringify({ id: options.id ?? `evt_${randomUUID().replaceAll('-', '')}`, object: 'event', type, data: { object }, created: Math.floor(Date.now() / 1000) })
  const signature = stripe.webhooks.generateTestHeaderString({ payload, secret: options.secret ?? webhookSecret })
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/stripe-webhook`, { method: 'POST', body: payload, headers: { 'stripe-signature': signature, 'content-type': 'application/json' } })
  return { status: res.status, body: await res.json() }
}

const balance = async (orgId: string) =>
  Number((await primaryDb.query('select available from public.credit_balances where org_id = $1', [orgId])).rows[0].available)
const grantsOf = async (orgId: string, source: string) =>
  (await primaryDb.query('select amount::int, status, external_ref from public.credit_grants where org_id = $1 and source = $2 order by created_at', [orgId, source])).rows

afterAll(async () => {
  const { data } = await service.rpc('reconcile_credits')
  expect(data).toBe(0)
})

describe('stripe-webhook', () => {
  it('grants a paid checkout once, however often Stripe delivers it', async () => {
    const user = await createUser('buyer')
    const session = { id: `cs_test_${randomUUID().slice(0, 8)}`, object: 'checkout.session', payment_status: 'paid', metadata: { org_id: user.personalOrgId, credits: '500' } }
    const first = await deliver('checkout.session.completed', session, { id: 'evt_same' })
    expect(first).toEqual({ status: 200, body: { received: true } })
    const again = await Promise.all([1, 2, 3].map(() => deliver('checkout.session.completed', session)))
    expect(again.map((r) => r.status)).toEqual([200, 200, 200])
    expect(await grantsOf(user.personalOrgId, 'purchase')).toEqual([{ amount: 500, status: 'active', external_ref: session.id }])
    expect(await balance(user.personalOrgId)).toBe(500)
  })

  it('refuses a forged or unsigned payload with 400 and changes nothing', async () => {
    const user = await createUser('forger')
    const session = { id: 'cs_test_forged', object: 'checkout.session', payment_status: 'paid', metadata: { org_id: user.personalOrgId, credits: '1000000' } }
    const forged = await deliver('checkout.session.completed', session, { secret: 'whsec_not_ours' })
    expect(forged).toEqual({ status: 400, body: { error: 'invalid_signature', message: expect.any(String) } })
    const unsigned = await fetch(`${env.SUPABASE_URL}/functions/v1/stripe-webhook`, { method: 'POST', body: JSON.stringify({ type: 'checkout.session.completed' }) })
    expect(unsigned.status).toBe(400)
    await unsigned.body?.cancel()
    expect(await balance(user.personalOrgId)).toBe(0)
  })

  it('keeps a delayed payment pending until it succeeds, and voids one that fails', async () => {
    const user = await createUser('bank-debit')
    const paid = { id: `cs_test_${randomUUID().slice(0, 8)}`, object: 'checkout.session', payment_status: 'unpaid', metadata: { org_id: user.personalOrgId, credits: '300' } }
    const failed = { ...paid, id: `cs_test_${randomUUID().slice(0, 8)}` }
    await deliver('checkout.session.completed', paid)
    await deliver('checkout.session.completed', failed)
    expect(await balance(user.personalOrgId)).toBe(0)
    expect((await grantsOf(user.personalOrgId, 'purchase')).map((g) => g.status)).toEqual(['pending', 'pending'])

    expect((await deliver('checkout.session.async_payment_succeeded', { ...paid, payment_status: 'paid' })).status).toBe(200)
    expect((await deliver('checkout.session.async_payment_succeeded', { ...paid, payment_status: 'paid' })).status).toBe(200)
    expect((await deliver('checkout.session.async_payment_failed', failed)).status).toBe(200)
    expect(await balance(user.personalOrgId)).toBe(300)
    expect((await grantsOf(user.personalOrgId, 'purchase')).map((g) => [g.external_ref, g.status])).toEqual([
      [paid.id, 'active'],
      [failed.id, 'voided'],
    ])
  })

  it('acknowledges events it does not handle, and sessions without our metadata', async () => {
    expect(await deliver('customer.created', { id: 'cus_1', object: 'customer' })).toEqual({ status: 200, body: { received: true, ignored: 'customer.created' } })
    const stray = await deliver('checkout.session.completed', { id: 'cs_test_stray', object: 'checkout.session', payment_status: 'paid', metadata: {} })
    expect(stray.status).toBe(200)
    expect(stray.body.ignored).toMatch(/metadata/)
  })
})

describe('auto top-up', () => {
  let stripeApi: Awaited<ReturnType<typeof startRecorder>>
  let processors: RunningFunction[] = []
  // How Stripe's stand-in treats a customer's payment intents (default: they succeed at once).
  const behaviour = new Map<string, 'decline' | 'unavailable' | 'webhook_first'>()
  // Stripe saves the first answer for an idempotency key and replays it for every retry.
  const saved = new Map<string, Answer>()
  // Idempotency keys that created a payment intent: each one is a charge of the card.
  const charges: string[] = []
  const webhookAnswers: { status: number; body: unknown }[] = []
  let stripeDelayMs = 0

  beforeAll(async () => {
    // Stripe's API as a local recording server.
    stripeApi = await startRecorder(async (req) => {
      const key = String(req.headers['idempotency-key'] ?? '')
      const replay = saved.get(key)
      if (replay) return replay
      const form = new URLSearchParams(req.body)
      const requestId = form.get('metadata[topup_request_id]') ?? ''
      const customer = form.get('customer') ?? ''
      const mode = behaviour.get(customer)
      if (mode === 'unavailable') {
        // Nothing executed, so nothing saved under the key: a later retry is a fresh attempt.
        return { status: 500, headers: { 'stripe-should-retry': 'false' }, body: { error: { type: 'api_error', message: 'Stripe is temporarily unavailable.' } } }
      }
      let answer: Answer
      if (mode === 'decline') {
        answer = { status: 402, body: { error: { type: 'card_error', code: 'card_declined', message: 'Your card was declined.' } } }
      } else {
        const intent = {
          id: `pi_${requestId.replaceAll('-', '').slice(0, 20)}`,
          object: 'payment_intent',
          status: 'succeeded',
          amount: Number(form.get('amount')),
          currency: form.get('currency'),
          customer,
          metadata: { topup_request_id: requestId },
        }
        charges.push(key)
        // Stripe does not wait for our answer before it sends the webhook.
        if (mode === 'webhook_first') webhookAnswers.push(await deliver('payment_intent.succeeded', intent))
        answer = { status: 200, body: intent, delayMs: stripeDelayMs }
      }
      saved.set(key, answer)
      return answer
    })
    // Two processors, each its own Deno process, pointed at that server.
    for (const instance of ['a', 'b']) {
      const logDir = fs.mkdtempSync(path.join(os.tmpdir(), `tollgate-topup-${instance}-`))
      const [fn] = await startFunctions(discoverFunctions().filter((f) => f.name === 'topup-processor'), {
        env: { SUPABASE_DB_URL: env.SUPABASE_DB_URL, SUPABASE_JWT_SECRET: env.SUPABASE_JWT_SECRET, STRIPE_SECRET_KEY: 'sk_test_local', STRIPE_API_BASE: stripeApi.url, TOLLGATE_TOPUP_CENTS_PER_CREDIT: '2' },
        logDir,
        denoDir: path.resolve('.tollgate/deno-cache'),
        watch: false,
      })
      processors.push(fn!)
    }
  })

  afterAll(async () => {
    for (const fn of processors) fn.child.kill('SIGTERM')
    await stripeApi?.close()
  })

  const runProcessor = async (fn = processors[0]!) => {
    const res = await fetch(`http://127.0.0.1:${fn.port}/topup-processor`, { method: 'POST', headers: { authorization: `Bearer ${env.SUPABASE_SERVICE_ROLE_KEY}` } })
    return { status: res.status, body: await res.json() }
  }
  const summary = (counts: Partial<Record<'claimed' | 'succeeded' | 'submitted' | 'failed' | 'retrying' | 'cancelled' | 'errors', number>>) => ({
    claimed: 0, succeeded: 0, submitted: 0, failed: 0, retrying: 0, cancelled: 0, errors: 0, ...counts,
  })
  const requestsOf = async (orgId: string) =>
    (await primaryDb.query('select amount::int, status, payment_intent_id, error from public.credit_topup_requests where org_id = $1 order by created_at', [orgId])).rows
  const stripeCallsFor = (customer: string) => stripeApi.requests.filter((r) => new URLSearchParams(r.body).get('customer') === customer)

  async function setUp(label: string) {
    const owner = await createUser(label)
    const op = `topup_${randomUUID().slice(0, 8)}`
    await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 5)', [op])
    const customer = `cus_${randomUUID().replaceAll('-', '').slice(0, 14)}`
    expect((await service.rpc('set_org_billing', { p_org_id: owner.personalOrgId, p_stripe_customer_id: customer, p_stripe_payment_method_id: 'pm_card_visa' })).error).toBeNull()
    const settings = await owner.client.rpc('set_auto_topup', { p_enabled: true, p_threshold: 50, p_amount: 200, p_monthly_cap: 400 })
    expect(settings.error).toBeNull()
    expect(settings.data).toMatchObject({ enabled: true, threshold: 50, amount: 200, monthly_cap: 400, payment_method_on_file: true })
    await service.rpc('grant_credits', { p_org_id: owner.personalOrgId, p_amount: 100, p_source: 'promotion' })
    expect(await balance(owner.personalOrgId)).toBe(100)
    const spend = async (count: number) => {
      const results = await Promise.all(Array.from({ length: count }, () => owner.client.rpc('consume_credits', { p_operation: op, p_request_id: randomUUID() })))
      expect(results.map((r) => r.error)).toEqual(results.map(() => null))
    }
    return { owner, org: owner.personalOrgId, customer, op, spend }
  }

  it('queues exactly one top-up when concurrent charges cross the threshold, pays it off-session and grants once', async () => {
    const { owner, spend } = await setUp('autotopup')
    await spend(20) // 20 × 5 = 100: crosses 50 once, ends at 0
    expect(await requestsOf(owner.personalOrgId)).toEqual([{ amount: 200, status: 'pending', payment_intent_id: null, error: null }])

    const run = await runProcessor()
    expect(run).toEqual({ status: 200, body: summary({ claimed: 1, succeeded: 1 }) })
    const [request] = await requestsOf(owner.personalOrgId)
    expect(request).toMatchObject({ status: 'succeeded', payment_intent_id: expect.stringMatching(/^pi_/) })
    const call = stripeApi.requests.find((r) => new URLSearchParams(r.body).get('customer') !== null && r.body.includes(encodeURIComponent(owner.personalOrgId)))!
    const form = new URLSearchParams(call.body)
    expect([call.path, form.get('amount'), form.get('off_session'), form.get('confirm'), form.get('payment_method')]).toEqual(['/v1/payment_intents', '400', 'true', 'true', 'pm_card_visa'])
    expect(call.headers['idempotency-key']).toMatch(/^tollgate-topup-/)
    expect(await balance(owner.personalOrgId)).toBe(200)

    // Stripe's webhook for the same payment intent arrives too: nothing more is granted.
    const intent = { id: request.payment_intent_id, object: 'payment_intent', status: 'succeeded', metadata: { topup_request_id: (await primaryDb.query('select id from public.credit_topup_requests where org_id = $1', [owner.personalOrgId])).rows[0].id } }
    expect((await deliver('payment_intent.succeeded', intent)).status).toBe(200)
    expect(await grantsOf(owner.personalOrgId, 'auto_top_up')).toEqual([{ amount: 200, status: 'active', external_ref: request.payment_intent_id }])
    expect(await balance(owner.personalOrgId)).toBe(200)
    expect((await runProcessor()).body.claimed).toBe(0)
  })

  it('respects the monthly cap', async () => {
    const { owner, spend } = await setUp('capped')
    await spend(20)
    await runProcessor() // +200 (1 of 2 allowed this month)
    await spend(40) // 200 → 0: crosses again → second request
    await runProcessor() // +200 (2 of 2)
    await spend(40) // crosses a third time: over the 400 cap, nothing queued
    expect((await requestsOf(owner.personalOrgId)).map((r) => r.status)).toEqual(['succeeded', 'succeeded'])
    expect(await balance(owner.personalOrgId)).toBe(0)
  })

  it('records a declined card as a failed request, grants nothing', async () => {
    const { owner, customer, spend } = await setUp('declined')
    behaviour.set(customer, 'decline')
    await spend(20)
    const run = await runProcessor()
    expect(run.body).toEqual(summary({ claimed: 1, failed: 1 }))
    expect(await requestsOf(owner.personalOrgId)).toEqual([{ amount: 200, status: 'failed', payment_intent_id: null, error: expect.stringMatching(/declined/) }])
    expect(await balance(owner.personalOrgId)).toBe(0)
  })

  // Regression: the webhook settled the request before stripe.paymentIntents.create returned;
  // the processor's `submitted` mark raised, then its `failed` mark raised, and it answered 500
  // with the rest of its batch left in `processing` for ever.
  it('accepts a payment webhook that lands before Stripe answers the processor, and finishes the batch', async () => {
    const raced = await setUp('webhook-first')
    const next = await setUp('after-the-race')
    behaviour.set(raced.customer, 'webhook_first')
    await raced.spend(20)
    await next.spend(20)

    const run = await runProcessor()
    expect(run).toEqual({ status: 200, body: summary({ claimed: 2, succeeded: 2 }) })
    expect(webhookAnswers.at(-1)).toEqual({ status: 200, body: { received: true } })
    for (const { org } of [raced, next]) {
      expect(await requestsOf(org)).toEqual([{ amount: 200, status: 'succeeded', payment_intent_id: expect.stringMatching(/^pi_/), error: null }])
      expect(await grantsOf(org, 'auto_top_up')).toHaveLength(1)
      expect(await balance(org)).toBe(200)
    }
    // Nothing is left open: the next crossing queues the next top-up.
    await raced.spend(40)
    expect((await requestsOf(raced.org)).map((r) => r.status)).toEqual(['succeeded', 'pending'])
    expect(await runProcessor()).toEqual({ status: 200, body: summary({ claimed: 1, succeeded: 1 }) })
    expect(await balance(raced.org)).toBe(200)
  })

  it('isolates every request of a batch: a decline, an unavailable Stripe and a raced webhook do not stop the others', async () => {
    const orgs = {
      raced: await setUp('batch-raced'),
      declined: await setUp('batch-declined'),
      unavailable: await setUp('batch-unavailable'),
      fine: await setUp('batch-fine'),
    }
    behaviour.set(orgs.raced.customer, 'webhook_first')
    behaviour.set(orgs.declined.customer, 'decline')
    behaviour.set(orgs.unavailable.customer, 'unavailable')
    for (const o of Object.values(orgs)) await o.spend(20)

    const run = await runProcessor()
    expect(run).toEqual({ status: 200, body: summary({ claimed: 4, succeeded: 2, failed: 1, retrying: 1 }) })
    expect((await requestsOf(orgs.raced.org))[0].status).toBe('succeeded')
    expect((await requestsOf(orgs.fine.org))[0].status).toBe('succeeded')
    expect((await requestsOf(orgs.declined.org))[0]).toMatchObject({ status: 'failed', error: expect.stringMatching(/declined/) })
    // Stripe being unavailable is retried later (backoff), not failed.
    const { rows: [retry] } = await primaryDb.query(
      `select status, attempts, error, next_attempt_at > now() as backing_off, lease_expires_at from public.credit_topup_requests where org_id = $1`,
      [orgs.unavailable.org],
    )
    expect(retry).toEqual({ status: 'pending', attempts: 1, error: expect.stringMatching(/unavailable/), backing_off: true, lease_expires_at: null })
    expect((await runProcessor()).body.claimed).toBe(0) // not due yet

    behaviour.delete(orgs.unavailable.customer)
    await primaryDb.query('update public.credit_topup_requests set next_attempt_at = now() where org_id = $1', [orgs.unavailable.org])
    expect((await runProcessor()).body).toEqual(summary({ claimed: 1, succeeded: 1 }))
    expect(await balance(orgs.unavailable.org)).toBe(200)
    expect(await balance(orgs.declined.org)).toBe(0)
  })

  it('reclaims a request whose processor died after calling Stripe, and charges the card once', async () => {
    const crashed = await setUp('crashed')
    await crashed.spend(20)
    // A processor claims the request, has Stripe create the payment intent, and dies before
    // it records anything.
    const claim = await service.rpc('claim_topup_requests', { p_limit: 1 })
    expect(claim.error).toBeNull()
    expect(claim.data).toEqual([{ id: expect.any(String), org_id: crashed.org, amount: 200, stripe_customer_id: crashed.customer, stripe_payment_method_id: 'pm_card_visa' }])
    const id: string = claim.data[0].id
    const port = Number(new URL(stripeApi.url).port)
    const dying = new Stripe('sk_test_local', { host: '127.0.0.1', port, protocol: 'http' })
    await dying.paymentIntents.create(
      { amount: 400, currency: 'usd', customer: crashed.customer, payment_method: 'pm_card_visa', off_session: true, confirm: true, metadata: { topup_request_id: id, org_id: crashed.org, credits: '200' } },
      { idempotencyKey: `tollgate-topup-${id}` },
    )
    expect((await runProcessor()).body.claimed).toBe(0) // the lease still holds
    // The lease runs out (minutes in production; moved here rather than waited for).
    await primaryDb.query(`update public.credit_topup_requests set lease_expires_at = now() - interval '1 second' where id = $1`, [id])

    expect(await runProcessor()).toEqual({ status: 200, body: summary({ claimed: 1, succeeded: 1 }) })
    expect(stripeCallsFor(crashed.customer).map((r) => r.headers['idempotency-key'])).toEqual([`tollgate-topup-${id}`, `tollgate-topup-${id}`])
    expect(charges.filter((key) => key === `tollgate-topup-${id}`)).toHaveLength(1)
    expect((await primaryDb.query('select status, attempts from public.credit_topup_requests where id = $1', [id])).rows).toEqual([{ status: 'succeeded', attempts: 2 }])
    expect(await grantsOf(crashed.org, 'auto_top_up')).toHaveLength(1)
    expect(await balance(crashed.org)).toBe(200)
  })

  // Regression: a hold queued the top-up; the backend failed, the hold was released and the
  // balance was back where it started, yet the processor charged the card.
  it('cancels a top-up queued by a hold that was released, charges nothing, and tops up on a real crossing', async () => {
    const held = await setUp('released-hold')
    const requestId = randomUUID()
    const reserve = await service.rpc('reserve_credits', { p_org_id: held.org, p_user_id: held.owner.id, p_operation: held.op, p_request_id: requestId, p_quantity: 12 })
    expect(reserve.error).toBeNull()
    expect(await balance(held.org)).toBe(40)
    expect((await requestsOf(held.org)).map((r) => r.status)).toEqual(['pending'])
    expect((await service.rpc('release_credits', { p_org_id: held.org, p_request_id: requestId })).error).toBeNull()
    expect(await balance(held.org)).toBe(100)

    expect((await runProcessor()).body).toEqual(summary({}))
    expect(stripeCallsFor(held.customer)).toEqual([])
    expect((await primaryDb.query('select status, cancel_reason, payment_intent_id from public.credit_topup_requests where org_id = $1', [held.org])).rows).toEqual([
      { status: 'cancelled', cancel_reason: 'balance_recovered', payment_intent_id: null },
    ])

    await held.spend(11) // 100 → 45: a real crossing queues a new top-up
    expect(await runProcessor()).toEqual({ status: 200, body: summary({ claimed: 1, succeeded: 1 }) })
    expect((await requestsOf(held.org)).map((r) => r.status)).toEqual(['cancelled', 'succeeded'])
    expect(stripeCallsFor(held.customer)).toHaveLength(1)
    expect(await balance(held.org)).toBe(245)
  })

  // Regression: a processor that ran while the hold was still open charged the card, and the
  // hold was released afterwards (a backend that never answers makes that window a minute long).
  it('waits while the hold that crossed is open: released, nothing is charged; captured, the top-up goes ahead', async () => {
    const due = (org: string) => primaryDb.query(`update public.credit_topup_requests set next_attempt_at = now() where org_id = $1 and status = 'pending'`, [org])
    for (const settle of ['release', 'capture'] as const) {
      const held = await setUp(`open-hold-${settle}`)
      const requestId = randomUUID()
      expect((await service.rpc('reserve_credits', { p_org_id: held.org, p_user_id: held.owner.id, p_operation: held.op, p_request_id: requestId, p_quantity: 12 })).error).toBeNull()
      expect(await balance(held.org)).toBe(40)

      // The hold is open: whether the balance stays below 50 is not known yet.
      expect((await runProcessor()).body).toEqual(summary({}))
      expect(stripeCallsFor(held.customer)).toEqual([])
      expect((await primaryDb.query('select status, attempts, next_attempt_at > now() as waiting from public.credit_topup_requests where org_id = $1', [held.org])).rows)
        .toEqual([{ status: 'pending', attempts: 0, waiting: true }])

      const settled = settle === 'release'
        ? await service.rpc('release_credits', { p_org_id: held.org, p_request_id: requestId })
        : await service.rpc('capture_credits', { p_org_id: held.org, p_request_id: requestId })
      expect(settled.error).toBeNull()
      await due(held.org)
      if (settle === 'release') {
        expect((await runProcessor()).body).toEqual(summary({}))
        expect(stripeCallsFor(held.customer)).toEqual([])
        expect((await requestsOf(held.org)).map((r) => r.status)).toEqual(['cancelled'])
        expect(await balance(held.org)).toBe(100)
      } else {
        expect(await runProcessor()).toEqual({ status: 200, body: summary({ claimed: 1, succeeded: 1 }) })
        expect(stripeCallsFor(held.customer)).toHaveLength(1)
        expect((await requestsOf(held.org)).map((r) => r.status)).toEqual(['succeeded'])
        expect(await balance(held.org)).toBe(240)
      }
    }
  })

  it('charges every request once when two processors run at once', async () => {
    const orgs = await Promise.all(Array.from({ length: 6 }, (_, i) => setUp(`concurrent-${i}`)))
    await Promise.all(orgs.map((o) => o.spend(20)))
    stripeDelayMs = 150 // keeps both processors busy at the same time
    try {
      const runs = await Promise.all([runProcessor(processors[0]), runProcessor(processors[1])])
      expect(runs.map((r) => r.status)).toEqual([200, 200])
      expect(runs[0]!.body.claimed + runs[1]!.body.claimed).toBe(6)
      expect(runs[0]!.body.succeeded + runs[1]!.body.succeeded).toBe(6)
    } finally {
      stripeDelayMs = 0
    }
    const ids = orgs.map((o) => o.org)
    for (const o of orgs) {
      expect(stripeCallsFor(o.customer)).toHaveLength(1)
      expect(await grantsOf(o.org, 'auto_top_up')).toHaveLength(1)
      expect(await balance(o.org)).toBe(200)
    }
    const { rows: [sums] } = await primaryDb.query(
      `select (select sum(available) from public.credit_balances where org_id = any($1::uuid[]))::int as balances,
              (select sum(amount) from public.credit_ledger where org_id = any($1::uuid[]))::int as ledger`,
      [ids],
    )
    expect(sums).toEqual({ balances: 1200, ledger: 1200 })
    expect((await service.rpc('reconcile_credits')).data).toBe(0)
  })

  it('lets only owners and admins change the settings, with validated values', async () => {
    const owner = await createUser('settings-owner')
    const member = await createUser('settings-member')
    await primaryDb.query(`insert into public.org_members (org_id, user_id, role) values ($1, $2, 'member')`, [owner.personalOrgId, member.id])
    const denied = await member.client.rpc('set_auto_topup', { p_enabled: true, p_threshold: 10, p_amount: 100, p_monthly_cap: 100, p_org_id: owner.personalOrgId })
    expect([denied.error?.code, denied.error?.message]).toEqual(['42501', 'forbidden'])
    const read = await member.client.rpc('get_auto_topup', { p_org_id: owner.personalOrgId })
    expect(read.data).toMatchObject({ enabled: false })
    const badCap = await owner.client.rpc('set_auto_topup', { p_enabled: true, p_threshold: 10, p_amount: 100, p_monthly_cap: 50 })
    expect([badCap.error?.code, badCap.error?.message]).toEqual(['22023', 'invalid_monthly_cap'])
    const processorAsUser = await fetch(`${env.SUPABASE_URL}/functions/v1/topup-processor`, { method: 'POST', headers: { authorization: `Bearer ${owner.jwt}` } })
    expect(processorAsUser.status).toBe(403)
    await processorAsUser.body?.cancel()
  })
})
