import { afterAll, describe, expect, it } from 'vitest'
import type { PostgrestError } from '@supabase/supabase-js'
import { serviceClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { createPrice, expectRpcError, randomId, sleep, userTracker } from './support/credits.ts'
import { booksOf, expectOverageReconciled, grantScoped, setOverageLimit } from './support/scoped-credits.ts'

type Answer = { data: Record<string, unknown> | null; error: PostgrestError | null; status: number }

// Review attacks on scoped credits and overage (hostile billing review). Each test states the
// documented rule it checks. The first three pin defects found in review (they fail until fixed);
// the last one pins a path that held.
describe('review: overage debt attacks', () => {
  const { orgs, newUser } = userTracker()
  afterAll(async () => {
    await expectOverageReconciled(orgs)
  })

  it('a Stripe refund of the purchase that repaid the debt brings the debt back (no free overage by refunding)', async () => {
    // Rule: the overage limit caps what an org can use without paying. A purchase repays the debt;
    // when that payment is refunded, the credits it paid for are taken back (settle_stripe_payment).
    // Got: the revocation names the grant, whose credits all went to the debt, so nothing is taken
    // back (revocation_shortfall 100); the debt stays erased and the full overage room is open
    // again: the org used 200 credits and paid nothing. Repeatable with every refunded purchase.
    const user = await newUser('r11-stripe')
    const org = user.personalOrgId
    const op = await createPrice(10, 'r11')
    await setOverageLimit(org, 100)
    const first = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'use-1', p_quantity: 10 })) as Answer
    expect(first.data?.overage).toBe(100)

    const pi = `pi_r11${randomId()}`
    const service = serviceClient()
    const paid = (await service.rpc('apply_checkout_event', {
      p_event_id: `evt_${randomId()}`, p_event_type: 'checkout.session.completed', p_session_id: `cs_${randomId()}`,
      p_org_id: org, p_credits: 100, p_outcome: 'paid', p_payment_intent_id: pi, p_amount: 1000, p_currency: 'eur',
    })) as Answer
    expect(paid.error).toBeNull()
    expect((paid.data?.grant as Record<string, unknown>).overage_repaid).toBe(100)
    expect(await booksOf(org)).toEqual({ available: 0, overage: 0, held: 0, overage_limit: 100, flag: true })

    const refunded = (await service.rpc('apply_charge_event', {
      p_event_id: `evt_${randomId()}`, p_event_type: 'charge.refunded', p_payment_intent_id: pi, p_amount: 1000, p_amount_refunded: 1000,
    })) as Answer
    expect(refunded.error).toBeNull()
    // The payment is gone, so the debt it paid is owed again.
    expect(await booksOf(org)).toEqual({ available: -100, overage: 100, held: 0, overage_limit: 100, flag: false })
    const second = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'use-2', p_quantity: 10 })) as Answer
    expect(second.status).toBe(402)
  })

  it('an unscoped refund grant pays the outstanding debt first, like any new unscoped grant', async () => {
    // Rule: "a new grant that can be spent on anything pays the debt first when it is credited".
    // Got: refund_credits inserts its `refund` grant (expired credits coming back, unscoped) without
    // the crediting rule: the debt stays while 50 spendable credits sit beside it, and those
    // expire after 7 days with the debt still owed (the org loses what should have repaid it).
    const user = await newUser('r11-regrant')
    const org = user.personalOrgId
    const op = await createPrice(10, 'r11')
    await setOverageLimit(org, 100)
    await grantScoped(org, 50, { source: 'purchase', expiresAt: new Date(Date.now() + 1_500) })
    const spent = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'from-grant', p_quantity: 5 })) as Answer
    expect(spent.data?.charged).toBe(50)
    await sleep(1_700)
    const debt = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'into-debt', p_quantity: 3 })) as Answer
    expect(debt.data?.overage).toBe(30)

    const refund = (await serviceClient().rpc('refund_credits', { p_org_id: org, p_request_id: 'from-grant', p_reason: 'backend failed' })) as Answer
    expect(refund.error).toBeNull()
    const { rows } = await primaryDb.query<{ remaining: number; overage_repaid: number }>(
      `select remaining::int, overage_repaid::int from public.credit_grants where org_id = $1 and source = 'refund'`, [org])
    expect(rows).toEqual([{ remaining: 20, overage_repaid: 30 }])
    expect(await booksOf(org)).toEqual({ available: 20, overage: 0, held: 0, overage_limit: 100, flag: true })
  })

  it('p_operations as a two-dimensional array is invalid_operations (22023), not an undocumented 0A000', async () => {
    // Rule: every refusal is a documented key. Got: PostgREST turns nested JSON arrays into a
    // text[][] and check_operations' array_position raises 0A000 "searching for elements in
    // multidimensional arrays is not supported".
    const user = await newUser('r11-2d')
    const op = await createPrice(1, 'r11')
    const refused = (await serviceClient().rpc('grant_credits', {
      p_org_id: user.personalOrgId, p_amount: 5, p_source: 'promotion', p_operations: [[op], [op]],
    })) as Answer
    expect(refused.status).toBe(400)
    expectRpcError(refused, '22023', 'invalid_operations')
  })

  it('held: a refund after the repaying grant expired comes back as an unscoped refund grant; the books reconcile', async () => {
    const user = await newUser('r11-expired-repayer')
    const org = user.personalOrgId
    const op = await createPrice(10, 'r11')
    await setOverageLimit(org, 100)
    const charged = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'debt', p_quantity: 5 })) as Answer
    expect(charged.data?.overage).toBe(50)
    const repayer = await grantScoped(org, 80, { source: 'purchase', expiresAt: new Date(Date.now() + 1_500) })
    expect(repayer.overage_repaid).toBe(50)
    await sleep(1_700)
    const refund = (await serviceClient().rpc('refund_credits', { p_org_id: org, p_request_id: 'debt', p_reason: 'backend failed' })) as Answer
    expect(refund.error).toBeNull()
    const { rows } = await primaryDb.query<{ source: string; status: string; remaining: number; operations: string[] | null }>(
      `select source, status, remaining::int, operations from public.credit_grants where org_id = $1 order by created_at`, [org])
    expect(rows).toEqual([
      { source: 'purchase', status: 'expired', remaining: 0, operations: null },
      { source: 'refund', status: 'active', remaining: 50, operations: null },
    ])
    expect(await booksOf(org)).toEqual({ available: 50, overage: 0, held: 0, overage_limit: 100, flag: true })
  })
})
