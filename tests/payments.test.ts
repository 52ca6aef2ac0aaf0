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
import { startRecorder } from './support/http-recorder.ts'

// Payments (seed 002): the Stripe webhook with signed, forged and duplicate deliveries; auto
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
  let processor: RunningFunction
  let decline = new Set<string>()

  beforeAll(async () => {
    // Stripe's API as a local recording server: payment intents succeed unless declined.
    stripeApi = await startRecorder((req) => {
      const form = new URLSearchParams(req.body)
      const requestId = form.get('metadata[topup_request_id]') ?? ''
      if (decline.has(form.get('customer') ?? '')) {
        return { status: 402, body: { error: { type: 'card_error', code: 'card_declined', message: 'Your card was declined.' } } }
      }
      return {
        status: 200,
        body: { id: `pi_${requestId.replaceAll('-', '').slice(0, 20)}`, object: 'payment_intent', status: 'succeeded', amount: Number(form.get('amount')), currency: form.get('currency'), metadata: { topup_request_id: requestId } },
      }
    })
    // The processor as its own Deno process, pointed at that server.
    const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-topup-'))
    const [fn] = await startFunctions(discoverFunctions().filter((f) => f.name === 'topup-processor'), {
      env: { SUPABASE_DB_URL: env.SUPABASE_DB_URL, SUPABASE_JWT_SECRET: env.SUPABASE_JWT_SECRET, STRIPE_SECRET_KEY: 'sk_test_local', STRIPE_API_BASE: stripeApi.url, TOLLGATE_TOPUP_CENTS_PER_CREDIT: '2' },
      logDir,
      denoDir: path.resolve('.tollgate/deno-cache'),
      watch: false,
    })
    processor = fn!
  })

  afterAll(async () => {
    processor?.child.kill('SIGTERM')
    await stripeApi?.close()
  })

  const runProcessor = async () => {
    const res = await fetch(`http://127.0.0.1:${processor.port}/topup-processor`, { method: 'POST', headers: { authorization: `Bearer ${env.SUPABASE_SERVICE_ROLE_KEY}` } })
    return { status: res.status, body: await res.json() }
  }
  const requestsOf = async (orgId: string) =>
    (await primaryDb.query('select amount::int, status, payment_intent_id, error from public.credit_topup_requests where org_id = $1 order by created_at', [orgId])).rows

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
    const spend = (count: number) =>
      Promise.all(Array.from({ length: count }, () => owner.client.rpc('consume_credits', { p_operation: op, p_request_id: randomUUID() })))
    return { owner, customer, spend }
  }

  it('queues exactly one top-up when concurrent charges cross the threshold, pays it off-session and grants once', async () => {
    const { owner, spend } = await setUp('autotopup')
    const results = await spend(20) // 20 × 5 = 100: crosses 50 once, ends at 0
    expect(results.every((r) => r.error === null)).toBe(true)
    expect(await requestsOf(owner.personalOrgId)).toEqual([{ amount: 200, status: 'pending', payment_intent_id: null, error: null }])

    const run = await runProcessor()
    expect(run).toEqual({ status: 200, body: { claimed: 1, succeeded: 1, submitted: 0, failed: 0 } })
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
    decline.add(customer)
    await spend(20)
    const run = await runProcessor()
    expect(run.body).toEqual({ claimed: 1, succeeded: 0, submitted: 0, failed: 1 })
    expect(await requestsOf(owner.personalOrgId)).toEqual([{ amount: 200, status: 'failed', payment_intent_id: null, error: expect.stringMatching(/declined/) }])
    expect(await balance(owner.personalOrgId)).toBe(0)
    decline = new Set()
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
