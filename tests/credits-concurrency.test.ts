import { describe, expect, it } from 'vitest'
import { serviceClient } from './support/clients.ts'
import {
  balanceOf,
  createPrice,
  expectBooksBalanced,
  expectReconciled,
  expectRpcError,
  flagOf,
  grantCredits,
  ledgerOf,
  ledgerOfRequest,
  randomId,
  requestCountOf,
  requestOf,
  shuffle,
  userTracker,
} from './support/credits.ts'

// Parallel calls through PostgREST must net to an exact balance: never overdrawn, never
// charged twice for one request id, never refunded twice.
describe('credits under concurrency', () => {
  const { orgs, newUser } = userTracker()

  it('lets exactly 150 of 200 parallel charges through on a balance of 150', async () => {
    const user = await newUser('storm')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'conc')
    await grantCredits(org, 150)
    expect(await balanceOf(org)).toEqual({ available: 150, held: 0 })
    expect(await flagOf(org)).toBe(true)

    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        user.client.rpc('consume_credits', { p_operation: operation, p_request_id: `storm-${i}`, p_quantity: 1 }),
      ),
    )

    const succeeded = results.filter((r) => r.error === null)
    const failed = results.filter((r) => r.error !== null)
    expect({ succeeded: succeeded.length, failed: failed.length }).toEqual({ succeeded: 150, failed: 50 })
    for (const r of succeeded) expect(r.data).toMatchObject({ charged: 1, replayed: false, operation })
    // Each success saw a distinct balance: 150 → 149, 149 → 148, ... 1 → 0.
    expect(succeeded.map((r) => r.data.balance_before as number).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 150 }, (_, i) => i + 1),
    )
    for (const r of failed) {
      const details = expectRpcError(r, 'PT402', 'insufficient_credits')
      expect({ required: details.required, available: details.available }).toEqual({ required: 1, available: 0 })
    }

    expect(await balanceOf(org)).toEqual({ available: 0, held: 0 })
    const ledger = await ledgerOf(org)
    expect(ledger).toMatchObject({ amount: 0, kinds: { grant: 1, charge: 150 }, sums: { grant: 150, charge: -150 } })
    expect(ledger.amount).toBe(ledger.sums.grant! + ledger.sums.charge!)
    expect(await flagOf(org)).toBe(false)
    expect(await requestCountOf(org)).toBe(150)
    await expectBooksBalanced(org)
  })

  it('charges one request id sent 20 times in parallel exactly once', async () => {
    const user = await newUser('twin')
    const org = user.personalOrgId
    const operation = await createPrice(7, 'conc')
    await grantCredits(org, 100)
    expect(await balanceOf(org)).toEqual({ available: 100, held: 0 })

    const requestId = `twin-${randomId()}`
    const results = await Promise.all(
      Array.from({ length: 20 }, () => user.client.rpc('consume_credits', { p_operation: operation, p_request_id: requestId, p_quantity: 2 })),
    )

    for (const r of results) expect(r.error).toBeNull()
    expect(results.filter((r) => r.data.replayed === false)).toHaveLength(1)
    expect(results.filter((r) => r.data.replayed === true)).toHaveLength(19)
    // A replay answers the first result, numbers included.
    for (const r of results) {
      expect(r.data).toMatchObject({ request_id: requestId, operation, quantity: 2, charged: 14, balance_before: 100, balance_after: 86 })
    }
    expect(await balanceOf(org)).toEqual({ available: 86, held: 0 })
    expect(await ledgerOfRequest(org, requestId)).toEqual([['charge', -14, 0]])
    expect(await requestCountOf(org)).toBe(1)
    await expectBooksBalanced(org)
  })

  it('refunds one charge exactly once under 20 concurrent refund_credits', async () => {
    const user = await newUser('refund')
    const org = user.personalOrgId
    const operation = await createPrice(9, 'conc')
    await grantCredits(org, 50)
    const requestId = `refund-${randomId()}`
    const charge = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: requestId, p_quantity: 3 })
    expect(charge.error).toBeNull()
    expect(charge.data).toMatchObject({ charged: 27, balance_after: 23 })
    expect(await balanceOf(org)).toEqual({ available: 23, held: 0 })

    const service = serviceClient()
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        service.rpc('refund_credits', { p_org_id: org, p_request_id: requestId, p_reason: `backend failed (${i})` }),
      ),
    )

    for (const r of results) expect(r.error).toBeNull()
    expect(results.filter((r) => r.data.replayed === false)).toHaveLength(1)
    expect(results.filter((r) => r.data.replayed === true)).toHaveLength(19)
    for (const r of results) expect(r.data).toMatchObject({ status: 'refunded', charged: 27, refunded: 27, balance_after: 50 })
    expect(await balanceOf(org)).toEqual({ available: 50, held: 0 })
    expect(await ledgerOfRequest(org, requestId)).toEqual([
      ['charge', -27, 0],
      ['refund', 27, 0],
    ])
    expect(await requestOf(org, requestId)).toMatchObject({ status: 'refunded', charged: 27, refunded: 27 })
    await expectBooksBalanced(org)
  })

  it('nets a mixed storm of consumes, grants and refunds to an exact balance', async () => {
    const user = await newUser('mixed')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'conc')
    await grantCredits(org, 100)

    // 20 charges to refund during the storm.
    const charged: string[] = []
    for (let i = 0; i < 20; i++) {
      const requestId = `pre-${i}`
      const r = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: requestId })
      expect(r.error).toBeNull()
      charged.push(requestId)
    }
    expect(await balanceOf(org)).toEqual({ available: 60, held: 0 })

    // Demand 100 × 2 = 200 against supply 60 + 10 × 7 + 20 × 2 = 170: some consumes must fail.
    const service = serviceClient()
    type Call = { kind: 'consume' | 'grant' | 'refund'; run: () => PromiseLike<{ data: any; error: any }> }
    const calls: Call[] = [
      ...Array.from({ length: 100 }, (_, i): Call => ({
        kind: 'consume',
        run: () => user.client.rpc('consume_credits', { p_operation: operation, p_request_id: `storm-${i}` }),
      })),
      // Each payment reference arrives twice (webhook retries): credited once.
      ...Array.from({ length: 20 }, (_, i): Call => ({
        kind: 'grant',
        run: () => service.rpc('grant_credits', { p_org_id: org, p_amount: 7, p_source: 'purchase', p_external_ref: `pay-${i % 10}` }),
      })),
      // Each charge refunded twice.
      ...Array.from({ length: 40 }, (_, i): Call => ({
        kind: 'refund',
        run: () => service.rpc('refund_credits', { p_org_id: org, p_request_id: charged[i % 20], p_reason: 'storm' }),
      })),
    ]
    shuffle(calls)
    const results = await Promise.all(calls.map(async (c) => ({ kind: c.kind, ...(await c.run()) })))

    const consumes = results.filter((r) => r.kind === 'consume')
    const consumed = consumes.filter((r) => r.error === null)
    for (const r of consumes.filter((r) => r.error !== null)) expectRpcError(r, 'PT402', 'insufficient_credits')
    for (const r of results.filter((r) => r.kind !== 'consume')) expect(r.error).toBeNull()
    const firstGrants = results.filter((r) => r.kind === 'grant' && r.data.replayed === false)
    const firstRefunds = results.filter((r) => r.kind === 'refund' && r.data.replayed === false)
    expect({ grants: firstGrants.length, refunds: firstRefunds.length }).toEqual({ grants: 10, refunds: 20 })
    // At least the 60 credits there before the storm are spent; at most all 170.
    expect(consumed.length).toBeGreaterThanOrEqual(30)
    expect(consumed.length).toBeLessThanOrEqual(85)

    const expected = 170 - 2 * consumed.length
    const balance = await expectBooksBalanced(org)
    expect(balance).toEqual({ available: expected, held: 0 })
    const ledger = await ledgerOf(org)
    expect(ledger).toMatchObject({
      amount: expected,
      kinds: { grant: 11, charge: 20 + consumed.length, refund: 20 },
      sums: { grant: 170, charge: -40 - 2 * consumed.length, refund: 40 },
    })
    expect(await requestCountOf(org)).toBe(20 + consumed.length)
    expect(await flagOf(org)).toBe(expected > 0)
  })

  it('leaves the books reconciled', async () => {
    await expectReconciled(orgs)
  })
})
