import { describe, expect, it } from 'vitest'
import { serviceClient } from './support/clients.ts'
import { eventually, primaryDb } from './support/db.ts'
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
  userTracker,
} from './support/credits.ts'

interface GrantRow {
  id: string
  amount: number
  remaining: number
  expired_amount: number
  status: string
  source: string
}

async function grantsOf(orgId: string): Promise<GrantRow[]> {
  const { rows } = await primaryDb.query<GrantRow>(
    `select id, amount::int as amount, remaining::int as remaining, expired_amount::int as expired_amount, status, source
     from public.credit_grants where org_id = $1 order by created_at, id`,
    [orgId],
  )
  return rows
}

async function allocationsOf(orgId: string, requestId: string): Promise<unknown> {
  const { rows } = await primaryDb.query('select allocations from public.credit_requests where org_id = $1 and request_id = $2', [orgId, requestId])
  return rows[0]?.allocations
}

// Grants: burn-down order, expiry (by the job, flipping the gate flag in the same run),
// idempotent payment references, pending top-ups activated on payment.
describe('credit grants', () => {
  const { orgs, newUser } = userTracker()
  const service = serviceClient()

  it('burns the expiring grant before the one that never expires', async () => {
    const user = await newUser('burn')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'grant')
    // The non-expiring grant is the older one, so "oldest first" cannot explain the order.
    const forever = await grantCredits(org, 10)
    const soon = await grantCredits(org, 10, { expiresAt: new Date(Date.now() + 3_600_000) })
    expect(await balanceOf(org)).toEqual({ available: 20, held: 0 })

    const first = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'burn-1', p_quantity: 4 })
    expect(first.error).toBeNull()
    expect((await grantsOf(org)).map((g) => [g.id, g.remaining])).toEqual([
      [forever.grant_id, 10],
      [soon.grant_id, 6],
    ])
    expect(await allocationsOf(org, 'burn-1')).toEqual([{ grant_id: soon.grant_id, amount: 4 }])

    // Spills over into the next grant once the expiring one is empty.
    const second = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'burn-2', p_quantity: 8 })
    expect(second.error).toBeNull()
    expect((await grantsOf(org)).map((g) => [g.id, g.remaining])).toEqual([
      [forever.grant_id, 8],
      [soon.grant_id, 0],
    ])
    expect(await allocationsOf(org, 'burn-2')).toEqual([
      { grant_id: soon.grant_id, amount: 6 },
      { grant_id: forever.grant_id, amount: 2 },
    ])
    expect(await balanceOf(org)).toEqual({ available: 8, held: 0 })
    await expectBooksBalanced(org)
  })

  it('expires a grant in expire_credit_grants() and drops the gate flag in the same run', async () => {
    const user = await newUser('expiry')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'grant')
    const expiresAt = new Date(Date.now() + 2_000)
    const grant = await grantCredits(org, 10, { expiresAt })
    const requestId = `spent-${randomId()}`
    const spent = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: requestId, p_quantity: 3 })
    expect(spent.error).toBeNull()
    expect(await balanceOf(org)).toEqual({ available: 7, held: 0 })
    expect(await flagOf(org)).toBe(true)
    const before = await user.client.rpc('get_credit_balance')
    expect(before.error).toBeNull()
    expect(before.data).toMatchObject({ available: 7, held: 0, next_expiry_amount: 7 })
    expect(new Date(before.data.next_expiry_at).getTime()).toBe(expiresAt.getTime())

    await eventually('the grant is due on the database clock', async () => {
      const { rows } = await primaryDb.query<{ due: boolean }>('select now() >= $1::timestamptz as due', [expiresAt.toISOString()])
      return rows[0]!.due ? true : undefined
    })

    const job = await service.rpc('expire_credit_grants')
    expect(job.error).toBeNull()
    expect(typeof job.data).toBe('number')
    // Right after the job (or the pg_cron run of the same job, if it came first).
    expect(await flagOf(org)).toBe(false)
    const after = await user.client.rpc('get_credit_balance')
    expect(after.error).toBeNull()
    expect(after.data).toEqual({ org_id: org, available: 0, held: 0, next_expiry_at: null, next_expiry_amount: null, scheduled: 0, next_start_at: null, next_start_amount: null, overage: 0, overage_limit: 0, scopes: [] })
    expect(await balanceOf(org)).toEqual({ available: 0, held: 0 })
    expect(await grantsOf(org)).toMatchObject([{ id: grant.grant_id, amount: 10, remaining: 0, expired_amount: 7, status: 'expired' }])
    expect((await ledgerOf(org)).sums).toEqual({ grant: 10, charge: -3, expire: -7 })
    await expectBooksBalanced(org)

    // Refunding a charge whose grant has expired makes the user whole with a fresh 'refund'
    // grant instead of resurrecting the expired one.
    const refund = await service.rpc('refund_credits', { p_org_id: org, p_request_id: requestId, p_reason: 'backend failed' })
    expect(refund.error).toBeNull()
    expect(refund.data).toMatchObject({ status: 'refunded', refunded: 3, balance_after: 3, replayed: false })
    expect((await grantsOf(org)).map((g) => [g.source, g.status, g.amount, g.remaining, g.expired_amount])).toEqual([
      ['purchase', 'expired', 10, 0, 10],
      ['refund', 'active', 3, 3, 0],
    ])
    expect(await ledgerOfRequest(org, requestId)).toEqual([
      ['charge', -3, 0],
      ['refund', 3, 0],
    ])
    expect(await flagOf(org)).toBe(true)
    expect(await expectBooksBalanced(org)).toEqual({ available: 3, held: 0 })
  })

  it('credits a payment reference once, however often it is granted', async () => {
    const user = await newUser('payref')
    const org = user.personalOrgId
    const ref = `pi_${randomId()}`

    const first = await grantCredits(org, 25, { externalRef: ref })
    const second = await grantCredits(org, 25, { externalRef: ref })
    expect(first).toMatchObject({ amount: 25, remaining: 25, status: 'active', external_ref: ref, balance_after: 25, replayed: false })
    expect(second).toMatchObject({ grant_id: first.grant_id, balance_after: 25, replayed: true })
    // Same reference, other amount: a conflict, not a second grant.
    const conflict = await service.rpc('grant_credits', { p_org_id: org, p_amount: 30, p_source: 'purchase', p_external_ref: ref })
    const details = expectRpcError(conflict, 'PT409', 'idempotency_conflict')
    expect(details).toMatchObject({ external_ref: ref, amount: 25 })
    expect(await balanceOf(org)).toEqual({ available: 25, held: 0 })

    // Ten webhook deliveries at once.
    const parallelRef = `pi_${randomId()}`
    const results = await Promise.all(
      Array.from({ length: 10 }, () => service.rpc('grant_credits', { p_org_id: org, p_amount: 40, p_source: 'purchase', p_external_ref: parallelRef })),
    )
    for (const r of results) expect(r.error).toBeNull()
    expect(results.filter((r) => r.data.replayed === false)).toHaveLength(1)
    expect(results.filter((r) => r.data.replayed === true)).toHaveLength(9)
    expect(new Set(results.map((r) => r.data.grant_id)).size).toBe(1)

    expect((await grantsOf(org)).map((g) => [g.amount, g.status])).toEqual([
      [25, 'active'],
      [40, 'active'],
    ])
    expect(await ledgerOf(org)).toMatchObject({ entries: 2, amount: 65, kinds: { grant: 2 } })
    expect(await expectBooksBalanced(org)).toEqual({ available: 65, held: 0 })
  })

  it('keeps a pending grant unspendable until activate_credit_grant, then spends it', async () => {
    const user = await newUser('pending')
    const org = user.personalOrgId
    const operation = await createPrice(5, 'grant')
    const ref = `pi_${randomId()}`

    const pending = await grantCredits(org, 30, { externalRef: ref, pending: true })
    expect(pending).toMatchObject({ amount: 30, status: 'pending', balance_after: 0, replayed: false })
    expect(await balanceOf(org)).toEqual({ available: 0, held: 0 })
    expect(await flagOf(org)).toBe(false)
    expect((await ledgerOf(org)).entries).toBe(0)
    const early = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'early' })
    const details = expectRpcError(early, 'PT402', 'insufficient_credits')
    expect({ required: details.required, available: details.available }).toEqual({ required: 5, available: 0 })

    const activated = await service.rpc('activate_credit_grant', { p_org_id: org, p_source: 'purchase', p_external_ref: ref })
    expect(activated.error).toBeNull()
    expect(activated.data).toMatchObject({ grant_id: pending.grant_id, status: 'active', remaining: 30, balance_after: 30, replayed: false })
    expect(await flagOf(org)).toBe(true)

    const spend = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'after', p_quantity: 2 })
    expect(spend.error).toBeNull()
    expect(spend.data).toMatchObject({ charged: 10, balance_before: 30, balance_after: 20 })

    // The payment webhook again: nothing more is credited.
    const again = await service.rpc('activate_credit_grant', { p_org_id: org, p_source: 'purchase', p_external_ref: ref })
    expect(again.error).toBeNull()
    expect(again.data).toMatchObject({ grant_id: pending.grant_id, remaining: 20, balance_after: 20, replayed: true })
    expect(await ledgerOf(org)).toMatchObject({ entries: 2, sums: { grant: 30, charge: -10 } })

    // A voided top-up never becomes spendable.
    const failedRef = `pi_${randomId()}`
    await grantCredits(org, 50, { externalRef: failedRef, pending: true })
    const voided = await service.rpc('void_credit_grant', { p_org_id: org, p_source: 'purchase', p_external_ref: failedRef })
    expect(voided.error).toBeNull()
    expect(voided.data).toMatchObject({ status: 'voided', remaining: 0, replayed: false })
    const lateActivate = await service.rpc('activate_credit_grant', { p_org_id: org, p_source: 'purchase', p_external_ref: failedRef })
    expect(expectRpcError(lateActivate, 'PT409', 'grant_not_pending')).toEqual({ status: 'voided' })
    expect(await expectBooksBalanced(org)).toEqual({ available: 20, held: 0 })
  })

  it('leaves the books reconciled', async () => {
    await expectReconciled(orgs)
  })
})
