import { afterAll, describe, expect, it } from 'vitest'
import { serviceClient } from './support/clients.ts'
import { createPrice, expectBooksBalanced, ledgerOf, userTracker } from './support/credits.ts'
import { primaryDb } from './support/db.ts'
import { deliver, inBatches, orderings, stripeEvent, stripeId, type StripeTestEvent } from './support/stripe.ts'

// Stripe does not order events and delivers each at least once. Whatever the order and the
// number of deliveries, the events of one checkout session / payment intent end in one state:
// every ordering of each scenario's events (duplicates included) is delivered to its own org,
// and every org must end with the same exact balance, grants and ledger.
//
// Pins the lost-purchase defect: async_payment_succeeded before checkout.session.completed was
// answered 200 `unknown_grant` (never retried), and the later `completed` left a pending grant
// that never activated; async_payment_failed first had the mirror problem.

const service = serviceClient()
const { orgs, newUser } = userTracker()

interface Purchase {
  orgId: string
  sessionId: string
  paymentIntentId: string
}

async function newPurchase(label: string): Promise<Purchase> {
  const user = await newUser(label)
  return { orgId: user.personalOrgId, sessionId: stripeId('cs'), paymentIntentId: stripeId('pi') }
}

const session = (p: Purchase, paymentStatus: string, credits: string | undefined = '500', extra: Record<string, unknown> = {}) => ({
  id: p.sessionId,
  object: 'checkout.session',
  mode: 'payment',
  payment_status: paymentStatus,
  payment_intent: p.paymentIntentId,
  amount_total: 1000,
  currency: 'eur',
  metadata: credits === undefined ? { org_id: p.orgId } : { org_id: p.orgId, credits },
  ...extra,
})

const charge = (p: Purchase, amountRefunded: number) => ({
  id: `ch_${p.paymentIntentId.slice(3)}`,
  object: 'charge',
  amount: 1000,
  amount_refunded: amountRefunded,
  refunded: amountRefunded === 1000,
  currency: 'eur',
  payment_intent: p.paymentIntentId,
})

const dispute = (p: Purchase, status: string, amount: number) => ({
  id: `dp_${p.paymentIntentId.slice(3)}`,
  object: 'dispute',
  amount,
  currency: 'eur',
  status,
  charge: `ch_${p.paymentIntentId.slice(3)}`,
  payment_intent: p.paymentIntentId,
})

async function grantsOf(orgId: string) {
  const { rows } = await primaryDb.query(
    `select source, external_ref, amount::int, remaining::int, status from public.credit_grants where org_id = $1 order by created_at`,
    [orgId],
  )
  return rows
}

async function revokedOf(orgId: string): Promise<number> {
  const { rows } = await primaryDb.query(`select coalesce(sum(revoked_amount), 0)::int as revoked from public.credit_grants where org_id = $1`, [orgId])
  return rows[0].revoked
}

async function exceptionsOf(orgId: string) {
  const { rows } = await primaryDb.query(
    `select event_id, event_type, object_id, reason from public.payment_exceptions where org_id = $1 order by id`,
    [orgId],
  )
  return rows
}

async function paymentOf(paymentIntentId: string) {
  const { rows } = await primaryDb.query(
    `select credits::int, amount::int, amount_refunded::int, credits_target::int, credits_revoked::int, shortfall::int
     from public.stripe_payments where payment_intent_id = $1`,
    [paymentIntentId],
  )
  return rows[0]
}

/** Delivers `events` one after another; every delivery must be acknowledged with 200. */
async function deliverAll(events: StripeTestEvent[]) {
  for (const event of events) {
    const res = await deliver(event)
    expect({ event: event.type, status: res.status, body: res.body }).toEqual({ event: event.type, status: 200, body: expect.objectContaining({ received: true }) })
  }
}

/**
 * Delivers every distinct ordering of a scenario's events, each ordering to its own org, and
 * checks the final state; then delivers them all again in reverse (Stripe's duplicates) and
 * checks that nothing changed. The final state is checked after the first pass too, so a
 * duplicate can never hide an event that was lost the first time.
 */
async function everyOrdering(label: string, events: (p: Purchase) => StripeTestEvent[], expectFinal: (p: Purchase) => Promise<void>) {
  const template = events(await newPurchase(`${label}-template`))
  const sequences = orderings(template.map((_, i) => i), (i) => template[i]!.id)
  const purchases = await inBatches(sequences, 4, () => newPurchase(label))
  await inBatches(sequences, 6, async (order, n) => {
    const p = purchases[n]!
    const own = events(p)
    const sequence = order.map((i) => own[i]!)
    await deliverAll(sequence)
    await expectFinal(p)
    await deliverAll([...sequence].reverse())
    await expectFinal(p)
  })
  return sequences.length
}

afterAll(async () => {
  const { data, error } = await service.rpc('reconcile_credits')
  expect(error).toBeNull()
  expect(data).toBe(0)
})

describe('checkout sessions converge in any order', () => {
  it('a delayed payment that succeeds: completed (unpaid) and async_payment_succeeded, any order, any number of times → 500 active credits once', async () => {
    const count = await everyOrdering(
      'async-ok',
      (p) => {
        const completed = stripeEvent('checkout.session.completed', session(p, 'unpaid'), `evt_c_${p.sessionId}`)
        const succeeded = stripeEvent('checkout.session.async_payment_succeeded', session(p, 'paid'), `evt_s_${p.sessionId}`)
        return [completed, completed, succeeded, succeeded]
      },
      async (p) => {
        expect(await grantsOf(p.orgId)).toEqual([{ source: 'purchase', external_ref: p.sessionId, amount: 500, remaining: 500, status: 'active' }])
        const ledger = await ledgerOf(p.orgId)
        expect({ kinds: ledger.kinds, sums: ledger.sums }).toEqual({ kinds: { grant: 1 }, sums: { grant: 500 } })
        expect((await expectBooksBalanced(p.orgId)).available).toBe(500)
        expect(await exceptionsOf(p.orgId)).toEqual([])
      },
    )
    expect(count).toBe(6) // the distinct orderings of {c, c, s, s}
  })

  it('a delayed payment that fails: completed (unpaid) and async_payment_failed, any order → a voided record, no credits, never pending', async () => {
    await everyOrdering(
      'async-fail',
      (p) => {
        const completed = stripeEvent('checkout.session.completed', session(p, 'unpaid'), `evt_c_${p.sessionId}`)
        const failed = stripeEvent('checkout.session.async_payment_failed', session(p, 'unpaid'), `evt_f_${p.sessionId}`)
        return [completed, completed, failed, failed]
      },
      async (p) => {
        expect(await grantsOf(p.orgId)).toEqual([{ source: 'purchase', external_ref: p.sessionId, amount: 500, remaining: 0, status: 'voided' }])
        expect((await ledgerOf(p.orgId)).entries).toBe(0)
        expect((await expectBooksBalanced(p.orgId)).available).toBe(0)
        expect(await exceptionsOf(p.orgId)).toEqual([])
      },
    )
  })

  it('contradictory outcomes (succeeded and failed for one session) converge too: paid wins, the contradiction is recorded', async () => {
    await everyOrdering(
      'async-both',
      (p) => [
        stripeEvent('checkout.session.completed', session(p, 'unpaid'), `evt_c_${p.sessionId}`),
        stripeEvent('checkout.session.async_payment_succeeded', session(p, 'paid'), `evt_s_${p.sessionId}`),
        stripeEvent('checkout.session.async_payment_failed', session(p, 'unpaid'), `evt_f_${p.sessionId}`),
      ],
      async (p) => {
        expect(await grantsOf(p.orgId)).toEqual([{ source: 'purchase', external_ref: p.sessionId, amount: 500, remaining: 500, status: 'active' }])
        expect((await ledgerOf(p.orgId)).sums).toEqual({ grant: 500 })
        expect((await exceptionsOf(p.orgId)).map((e) => e.reason)).toEqual(['contradictory_outcomes'])
        await resolveAll(p.orgId)
      },
    )
  })
})

describe('refunds and disputes converge in any order', () => {
  // 500 credits for 10.00 EUR. Refunds are cumulative (amount_refunded); credits are taken back
  // in proportion, rounded down: floor(500 × reversed / 1000).
  it('two partial refunds and a lost dispute, every ordering, each event twice → floor(500 × 967 / 1000) = 483 taken back once', async () => {
    const count = await everyOrdering(
      'refund-lost',
      (p) => [
        stripeEvent('checkout.session.completed', session(p, 'paid'), `evt_c_${p.sessionId}`),
        stripeEvent('charge.refunded', charge(p, 333), `evt_r1_${p.sessionId}`),
        stripeEvent('charge.refunded', charge(p, 667), `evt_r2_${p.sessionId}`),
        stripeEvent('charge.dispute.created', dispute(p, 'needs_response', 300), `evt_dc_${p.sessionId}`),
        stripeEvent('charge.dispute.closed', dispute(p, 'lost', 300), `evt_dx_${p.sessionId}`),
      ],
      async (p) => {
        expect(await grantsOf(p.orgId)).toEqual([{ source: 'purchase', external_ref: p.sessionId, amount: 500, remaining: 17, status: 'active' }])
        expect(await revokedOf(p.orgId)).toBe(483)
        const ledger = await ledgerOf(p.orgId)
        expect(ledger.sums.grant).toBe(500)
        expect(ledger.amount).toBe(17)
        expect(ledger.sums.revoke! + (ledger.sums.reinstate ?? 0)).toBe(-483)
        expect((await expectBooksBalanced(p.orgId)).available).toBe(17)
        expect(await paymentOf(p.paymentIntentId)).toEqual({ credits: 500, amount: 1000, amount_refunded: 667, credits_target: 483, credits_revoked: 483, shortfall: 0 })
        expect(await exceptionsOf(p.orgId)).toEqual([])
      },
    )
    expect(count).toBe(120)
  }, 180_000)

  it('a refund and a dispute that is won, every ordering → only the refund is taken back (floor(500 × 333 / 1000) = 166)', async () => {
    await everyOrdering(
      'refund-won',
      (p) => [
        stripeEvent('checkout.session.completed', session(p, 'paid'), `evt_c_${p.sessionId}`),
        stripeEvent('charge.refunded', charge(p, 333), `evt_r1_${p.sessionId}`),
        stripeEvent('charge.dispute.created', dispute(p, 'needs_response', 667), `evt_dc_${p.sessionId}`),
        stripeEvent('charge.dispute.closed', dispute(p, 'won', 667), `evt_dx_${p.sessionId}`),
      ],
      async (p) => {
        expect((await expectBooksBalanced(p.orgId)).available).toBe(334)
        expect(await revokedOf(p.orgId)).toBe(166)
        expect((await ledgerOf(p.orgId)).amount).toBe(334)
        expect(await paymentOf(p.paymentIntentId)).toMatchObject({ credits_target: 166, credits_revoked: 166, shortfall: 0 })
      },
    )
  }, 120_000)

  it('a delayed payment refunded in full, events in every order: nothing stays spendable', async () => {
    await everyOrdering(
      'async-refund',
      (p) => [
        stripeEvent('checkout.session.completed', session(p, 'unpaid'), `evt_c_${p.sessionId}`),
        stripeEvent('checkout.session.async_payment_succeeded', session(p, 'paid'), `evt_s_${p.sessionId}`),
        stripeEvent('charge.refunded', charge(p, 1000), `evt_r_${p.sessionId}`),
      ],
      async (p) => {
        expect(await grantsOf(p.orgId)).toEqual([{ source: 'purchase', external_ref: p.sessionId, amount: 500, remaining: 0, status: 'active' }])
        expect((await expectBooksBalanced(p.orgId)).available).toBe(0)
        expect(await paymentOf(p.paymentIntentId)).toMatchObject({ credits_target: 500, credits_revoked: 500, shortfall: 0 })
      },
    )
  })

  it('credits already spent are reported as a shortfall, where reconcile_credits() lists them', async () => {
    const p = await newPurchase('spent')
    await deliverAll([stripeEvent('checkout.session.completed', session(p, 'paid'))])
    const operation = await createPrice(100, 'spend')
    const charged = await service.rpc('reserve_credits', { p_org_id: p.orgId, p_user_id: null, p_operation: operation, p_request_id: 'spend-1', p_quantity: 4 })
    expect(charged.error).toBeNull()
    expect((await service.rpc('capture_credits', { p_org_id: p.orgId, p_request_id: 'spend-1' })).error).toBeNull()

    const refund = stripeEvent('charge.refunded', charge(p, 1000))
    await deliverAll([refund, refund])
    expect((await expectBooksBalanced(p.orgId)).available).toBe(0)
    expect(await paymentOf(p.paymentIntentId)).toMatchObject({ credits_target: 500, credits_revoked: 100, shortfall: 400 })
    expect(await exceptionsOf(p.orgId)).toEqual([{ event_id: refund.id, event_type: 'charge.refunded', object_id: p.paymentIntentId, reason: 'revocation_shortfall' }])

    const { data } = await service.rpc('reconcile_credits')
    expect(data).toBe(0) // the books balance: a shortfall is a business loss, not a broken invariant
    const { rows } = await primaryDb.query(
      `select check_name, expected::int, actual::int, detail ->> 'reason' as reason from public.credit_reconciliation_issues
       where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id = $1`,
      [p.orgId],
    )
    expect(rows).toEqual([{ check_name: 'payment_exception', expected: 500, actual: 100, reason: 'revocation_shortfall' }])
    await resolveAll(p.orgId)
  })

  it('an auto top-up (payment intent id as external_ref) refunded in half loses half its credits', async () => {
    const user = await newUser('topup-refund')
    const paymentIntentId = stripeId('pi')
    const granted = await service.rpc('grant_credits', { p_org_id: user.personalOrgId, p_amount: 200, p_source: 'auto_top_up', p_external_ref: paymentIntentId })
    expect(granted.error).toBeNull()
    const refund = stripeEvent('charge.refunded', { id: stripeId('ch'), object: 'charge', amount: 400, amount_refunded: 200, currency: 'usd', payment_intent: paymentIntentId })
    await deliverAll([refund, refund])
    expect((await expectBooksBalanced(user.personalOrgId)).available).toBe(100)
    expect(await paymentOf(paymentIntentId)).toMatchObject({ credits: 200, amount: 400, credits_target: 100, credits_revoked: 100 })
  })
})

/** Marks the org's payment exceptions resolved (so later reconcile runs stop listing them). */
async function resolveAll(orgId: string) {
  const { rows } = await primaryDb.query('select id from public.payment_exceptions where org_id = $1 and resolved_at is null', [orgId])
  for (const row of rows) {
    const res = await service.rpc('resolve_payment_exception', { p_id: row.id, p_resolution: 'checked by the test' })
    expect(res.error).toBeNull()
  }
}

describe('unusable events are recorded, never acknowledged silently', () => {
  it('a paid session for an unknown org is recorded once, however often it is delivered', async () => {
    const p = await newPurchase('unknown-org')
    const ghost = crypto.randomUUID()
    const event = stripeEvent('checkout.session.completed', { ...session(p, 'paid'), metadata: { org_id: ghost, credits: '500' } })
    const answers = await Promise.all([deliver(event), deliver(event), deliver(event)])
    expect(answers.map((a) => [a.status, a.body.unapplied])).toEqual([[200, 'unknown_org'], [200, 'unknown_org'], [200, 'unknown_org']])
    const { rows } = await primaryDb.query('select event_type, object_id, org_id, reason from public.payment_exceptions where event_id = $1', [event.id])
    expect(rows).toEqual([{ event_type: 'checkout.session.completed', object_id: p.sessionId, org_id: ghost, reason: 'unknown_org' }])
    expect((await primaryDb.query('select count(*)::int as n from public.credit_grants where external_ref = $1', [p.sessionId])).rows[0].n).toBe(0)

    await service.rpc('reconcile_credits')
    const listed = await primaryDb.query(
      `select check_name, detail ->> 'event_id' as event_id from public.credit_reconciliation_issues
       where run_id = (select max(id) from public.credit_reconciliation_runs) and detail ->> 'event_id' = $1`,
      [event.id],
    )
    expect(listed.rows).toEqual([{ check_name: 'payment_exception', event_id: event.id }])
    const { rows: open } = await primaryDb.query('select id from public.payment_exceptions where event_id = $1', [event.id])
    expect((await service.rpc('resolve_payment_exception', { p_id: open[0].id, p_resolution: 'refunded in Stripe' })).error).toBeNull()
  })

  it.each([
    ['missing credits', { credits: undefined }, 'invalid_credits'],
    ['credits not a positive integer', { credits: '12.5' }, 'invalid_credits'],
    ['credits beyond the maximum', { credits: '2000000000000' }, 'invalid_credits'],
    ['a malformed org id', { org: 'not-a-uuid' }, 'invalid_org_id'],
  ])('a paid session with %s is recorded (%s)', async (_label, bad, reason) => {
    const p = await newPurchase('bad-metadata')
    const metadata = { org_id: 'org' in bad ? bad.org : p.orgId, ...('credits' in bad ? (bad.credits === undefined ? {} : { credits: bad.credits }) : { credits: '500' }) }
    const event = stripeEvent('checkout.session.async_payment_succeeded', { ...session(p, 'paid'), metadata })
    const first = await deliver(event)
    const again = await deliver(event)
    expect([first.status, first.body.unapplied, again.status, again.body.unapplied]).toEqual([200, reason, 200, reason])
    const { rows } = await primaryDb.query('select event_type, object_id, reason from public.payment_exceptions where event_id = $1', [event.id])
    expect(rows).toEqual([{ event_type: 'checkout.session.async_payment_succeeded', object_id: p.sessionId, reason }])
    expect((await expectBooksBalanced(p.orgId)).available).toBe(0)
    await primaryDb.query('update public.payment_exceptions set resolved_at = now(), resolution = $2 where event_id = $1', [event.id, 'test'])
  })

  it('a session pays for one org: the same session naming another org is recorded, never granted twice', async () => {
    const first = await newPurchase('session-owner')
    const other = await newPurchase('session-other')
    const paid = stripeEvent('checkout.session.completed', session(first, 'paid'))
    // The same session id, with another org (and its own payment intent) in its metadata.
    const hijack = stripeEvent('checkout.session.async_payment_succeeded', { ...session(first, 'paid'), payment_intent: other.paymentIntentId, metadata: { org_id: other.orgId, credits: '500' } })
    const answers = await Promise.all([deliver(paid), deliver(hijack)])
    expect(answers.map((a) => a.status)).toEqual([200, 200])
    const granted = await primaryDb.query('select org_id from public.credit_grants where source = $1 and external_ref = $2', ['purchase', first.sessionId])
    expect(granted.rows).toHaveLength(1)
    const owner = granted.rows[0].org_id as string
    const loser = owner === first.orgId ? other.orgId : first.orgId
    expect((await expectBooksBalanced(owner)).available).toBe(500)
    expect((await expectBooksBalanced(loser)).available).toBe(0)
    const { rows } = await primaryDb.query('select reason from public.payment_exceptions where object_id = $1', [first.sessionId])
    expect(rows).toEqual([{ reason: 'session_org_conflict' }])
    await primaryDb.query('update public.payment_exceptions set resolved_at = now(), resolution = $2 where object_id = $1', [first.sessionId, 'test'])
  })

  it('a top-up payment intent for an unknown request is recorded', async () => {
    const event = stripeEvent('payment_intent.succeeded', { id: stripeId('pi'), object: 'payment_intent', status: 'succeeded', amount: 100, amount_received: 100, metadata: { topup_request_id: crypto.randomUUID() } })
    const res = await deliver(event)
    expect([res.status, res.body.unapplied]).toEqual([200, 'unknown_request'])
    const { rows } = await primaryDb.query('select reason from public.payment_exceptions where event_id = $1', [event.id])
    expect(rows).toEqual([{ reason: 'unknown_request' }])
    await primaryDb.query('update public.payment_exceptions set resolved_at = now(), resolution = $2 where event_id = $1', [event.id, 'test'])
  })
})

afterAll(async () => {
  // This file's orgs: any exception a test recorded on purpose is resolved by it.
  const { rows } = await primaryDb.query('select event_id, reason from public.payment_exceptions where org_id = any($1::uuid[]) and resolved_at is null', [orgs])
  expect(rows).toEqual([])
})
