import { describe, expect, it } from 'vitest'
import { serviceClient } from './support/clients.ts'
import { createPrice, expectBooksBalanced, expectReconciled, expectRpcError, grantCredits, userTracker } from './support/credits.ts'

// Per-call records add up to usage stats; the balance answers available and held.
describe('usage stats and balance', () => {
  const { orgs, newUser } = userTracker()
  const service = serviceClient()

  it('sums consumes, captures, releases and refunds exactly in get_usage_stats', async () => {
    const user = await newUser('stats')
    const org = user.personalOrgId
    const opA = await createPrice(2, 'stats_a')
    const opB = await createPrice(5, 'stats_b')
    const opC = await createPrice(1, 'stats_c')
    await grantCredits(org, 100)

    const empty = await user.client.rpc('get_usage_stats')
    expect(empty.error).toBeNull()
    expect(empty.data).toEqual({
      period_days: 30,
      total_calls: 0,
      successful_calls: 0,
      failed_calls: 0,
      total_credits_used: 0,
      avg_latency_ms: 0,
      top_operations: [],
    })

    const ok = (r: { error: unknown }) => expect(r.error).toBeNull()
    // opA: three charges of 2, one refunded → 3 calls, 4 credits.
    for (const id of ['a1', 'a2', 'a3']) ok(await user.client.rpc('consume_credits', { p_operation: opA, p_request_id: id }))
    ok(await service.rpc('refund_credits', { p_org_id: org, p_request_id: 'a2', p_reason: 'backend error' }))
    // opB: one charge of 2 × 5, one released hold → 2 calls, 10 credits.
    ok(await user.client.rpc('consume_credits', { p_operation: opB, p_request_id: 'b1', p_quantity: 2 }))
    ok(await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: opB, p_request_id: 'b2' }))
    ok(await service.rpc('release_credits', { p_org_id: org, p_request_id: 'b2', p_result: { latency_ms: 51 } }))
    // opC: a hold of 4 captured for 3, and one hold still open → 2 calls, 3 credits.
    ok(await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: opC, p_request_id: 'c1', p_quantity: 4 }))
    ok(await service.rpc('capture_credits', { p_org_id: org, p_request_id: 'c1', p_quantity: 3, p_result: { latency_ms: 100 } }))
    ok(await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: opC, p_request_id: 'c2' }))
    // A refused charge is not a call: nothing is recorded.
    expectRpcError(await user.client.rpc('consume_credits', { p_operation: opB, p_request_id: 'b3', p_quantity: 1000 }), 'PT402', 'insufficient_credits')

    const { data, error } = await user.client.rpc('get_usage_stats', { p_days: 7 })
    expect(error).toBeNull()
    expect(data).toEqual({
      period_days: 7,
      total_calls: 7,
      // the three opA charges (a refund does not undo the call), b1 and the capture of c1
      successful_calls: 5,
      // the released hold b2; the open hold c2 has no outcome yet
      failed_calls: 1,
      total_credits_used: 4 + 10 + 3,
      avg_latency_ms: 75.5,
      top_operations: [
        { operation: opA, calls: 3, credits: 4 },
        { operation: opB, calls: 2, credits: 10 },
        { operation: opC, calls: 2, credits: 3 },
      ],
    })

    // 100 − 6 + 2 − 10 − 3 − 1 (c2 held)
    const balance = await user.client.rpc('get_credit_balance')
    expect(balance.error).toBeNull()
    expect(balance.data).toEqual({ org_id: org, available: 82, held: 1, next_expiry_at: null, next_expiry_amount: null, scheduled: 0, next_start_at: null, next_start_amount: null, overage: 0, overage_limit: 0, scopes: [{ operations: null, available: 82 }] })
    expect(await expectBooksBalanced(org)).toEqual({ available: 82, held: 1 })

    expectRpcError(await user.client.rpc('get_usage_stats', { p_days: 0 }), '22023', 'invalid_days')
    expectRpcError(await user.client.rpc('get_usage_stats', { p_days: 367 }), '22023', 'invalid_days')
  })

  it('answers available, held and the next expiry in get_credit_balance', async () => {
    const user = await newUser('balance')
    const org = user.personalOrgId
    const operation = await createPrice(3, 'stats')
    const expiresAt = new Date(Date.now() + 3_600_000)
    await grantCredits(org, 50)
    await grantCredits(org, 10, { expiresAt })
    await grantCredits(org, 4, { expiresAt: new Date(expiresAt.getTime() + 60_000) })

    // Holds burn the soonest-expiring grant first: 10 → 7.
    const hold = await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: 'h1' })
    expect(hold.error).toBeNull()

    const { data, error } = await user.client.rpc('get_credit_balance', { p_org_id: org })
    expect(error).toBeNull()
    expect(data).toMatchObject({ org_id: org, available: 61, held: 3, next_expiry_amount: 7 })
    expect(new Date(data.next_expiry_at).getTime()).toBe(expiresAt.getTime())
    expect(await expectBooksBalanced(org)).toEqual({ available: 61, held: 3 })
  })

  it('leaves the books reconciled', async () => {
    await expectReconciled(orgs)
  })
})
