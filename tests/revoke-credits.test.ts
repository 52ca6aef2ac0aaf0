import { describe, expect, it } from 'vitest'
import { anonClient, serviceClient } from './support/clients.ts'
import {
  createPrice,
  expectBooksBalanced,
  expectDenied,
  expectReconciled,
  expectRpcError,
  grantCredits,
  ledgerOf,
  randomId,
  shuffle,
  userTracker,
} from './support/credits.ts'
import { primaryDb } from './support/db.ts'

// revoke_credits through PostgREST: who may call it, its error keys, and a storm of concurrent
// revocations (one reference many times, many references, a named grant) racing charges, after
// which every credit is accounted for exactly once.

const service = serviceClient()
const { orgs, newUser } = userTracker()

interface Revocation {
  external_ref: string
  amount: number
  grant_id: string | null
  revoked: number
  shortfall: number
  balance_after: number
  allocations: Array<{ grant_id: string; amount: number }>
  replayed: boolean
}

const revoke = (orgId: string, amount: number, ref: string, grantId: string | null = null) =>
  service.rpc('revoke_credits', { p_org_id: orgId, p_amount: amount, p_reason: 'test revocation', p_external_ref: ref, p_grant_id: grantId })

describe('revoke_credits', () => {
  it('is refused to anon and to users, whatever org they name', async () => {
    const user = await newUser('revoke-self')
    await grantCredits(user.personalOrgId, 10)
    expectDenied(await user.client.rpc('revoke_credits', { p_org_id: user.personalOrgId, p_amount: 1, p_reason: 'x', p_external_ref: 'r' }))
    expectDenied(await anonClient().rpc('revoke_credits', { p_org_id: user.personalOrgId, p_amount: 1, p_reason: 'x', p_external_ref: 'r' }))
    expect((await expectBooksBalanced(user.personalOrgId)).available).toBe(10)
  })

  it('answers documented error keys', async () => {
    const user = await newUser('revoke-errors')
    const other = await newUser('revoke-errors-other')
    const foreign = await grantCredits(other.personalOrgId, 5)
    const org = user.personalOrgId
    expectRpcError(await revoke(org, 0, 'r'), '22023', 'invalid_amount')
    expectRpcError(await service.rpc('revoke_credits', { p_org_id: org, p_amount: 1, p_reason: ' ', p_external_ref: 'r' }), '22023', 'invalid_reason')
    expectRpcError(await service.rpc('revoke_credits', { p_org_id: org, p_amount: 1, p_reason: 'x', p_external_ref: '' }), '22023', 'invalid_external_ref')
    expectRpcError(await revoke(crypto.randomUUID(), 1, 'r'), 'PT404', 'unknown_org')
    expectRpcError(await revoke(org, 1, 'r', foreign.grant_id as string), 'PT404', 'unknown_grant')
    expect((await revoke(org, 3, 'r')).data).toMatchObject({ revoked: 0, shortfall: 3, balance_after: 0, replayed: false })
    expectRpcError(await revoke(org, 4, 'r'), 'PT409', 'idempotency_conflict')
  })

  it('many concurrent revocations (one reference 20 times, 30 references twice, a named grant) racing 80 charges: every credit once, never below zero', async () => {
    const user = await newUser('revoke-storm')
    const org = user.personalOrgId
    const operation = await createPrice(5, 'storm')
    const soon = await grantCredits(org, 300, { priority: 50, expiresAt: new Date(Date.now() + 30 * 86_400_000) })
    const named = await grantCredits(org, 300)
    await grantCredits(org, 400, { expiresAt: new Date(Date.now() + 10 * 86_400_000) })
    expect((await expectBooksBalanced(org)).available).toBe(1000)

    const refs = Array.from({ length: 30 }, (_, i) => `refund-${i}`)
    const namedRefs = Array.from({ length: 10 }, (_, i) => `named-${i}`)
    type Call = { kind: 'same' | 'many' | 'named' | 'charge'; run: () => PromiseLike<{ data: unknown; error: { code: string; message: string } | null }> }
    const calls: Call[] = shuffle([
      ...Array.from({ length: 20 }, (): Call => ({ kind: 'same', run: () => revoke(org, 60, 'same-ref') })),
      ...[...refs, ...refs].map((ref): Call => ({ kind: 'many', run: () => revoke(org, 25, ref) })),
      ...namedRefs.map((ref): Call => ({ kind: 'named', run: () => revoke(org, 40, ref, named.grant_id as string) })),
      ...Array.from({ length: 80 }, (): Call => ({ kind: 'charge', run: () => user.client.rpc('consume_credits', { p_operation: operation, p_request_id: randomId() }) })),
    ])
    const results = await Promise.all(calls.map(async (call) => ({ kind: call.kind, ...(await call.run()) })))

    // Revocations never fail; charges fail only for lack of credits.
    for (const r of results.filter((r) => r.kind !== 'charge')) expect(r.error).toBeNull()
    const charges = results.filter((r) => r.kind === 'charge')
    for (const r of charges.filter((r) => r.error)) expect([r.error!.code, r.error!.message]).toEqual(['PT402', 'insufficient_credits'])
    const charged = charges.filter((r) => !r.error).length * 5

    // One reference, 20 calls: one revocation, 19 replays of the same answer.
    const same = results.filter((r) => r.kind === 'same').map((r) => r.data as Revocation)
    expect(same.filter((r) => !r.replayed)).toHaveLength(1)
    const first = same.find((r) => !r.replayed)!
    for (const r of same) expect({ ...r, replayed: false }).toEqual(first)
    expect(first.revoked + first.shortfall).toBe(60)
    expectRpcError(await revoke(org, 61, 'same-ref'), 'PT409', 'idempotency_conflict')

    // Each of the 30 references twice: the two answers agree.
    const many = results.filter((r) => r.kind === 'many').map((r) => r.data as Revocation)
    for (const ref of refs) {
      const pair = many.filter((r) => r.external_ref === ref)
      expect(pair.map((r) => r.replayed).sort()).toEqual([false, true])
      expect({ ...pair[0]!, replayed: false }).toEqual({ ...pair[1]!, replayed: false })
    }
    // The named grant only ever gives its own credits, at most all 300 of them.
    const namedAnswers = results.filter((r) => r.kind === 'named').map((r) => r.data as Revocation)
    for (const r of namedAnswers) for (const piece of r.allocations) expect(piece.grant_id).toBe(named.grant_id)
    const fromNamed = namedAnswers.reduce((sum, r) => sum + r.revoked, 0)
    expect(fromNamed).toBeLessThanOrEqual(300)

    // Every credit is in exactly one place: spendable, charged or revoked.
    const { rows: records } = await primaryDb.query<{ n: number; revoked: number; shortfall: number; amount: number }>(
      `select count(*)::int as n, sum(revoked)::int as revoked, sum(shortfall)::int as shortfall, sum(amount)::int as amount
       from public.credit_revocations where org_id = $1`,
      [org],
    )
    expect(records[0]).toMatchObject({ n: 1 + 30 + 10, amount: 60 + 30 * 25 + 10 * 40 })
    expect(records[0]!.revoked + records[0]!.shortfall).toBe(records[0]!.amount)
    const revoked = first.revoked + refs.reduce((sum, ref) => sum + many.find((r) => r.external_ref === ref)!.revoked, 0) + fromNamed
    expect(records[0]!.revoked).toBe(revoked)

    const balance = await expectBooksBalanced(org)
    expect(balance.available).toBeGreaterThanOrEqual(0)
    expect(balance.available + charged + revoked).toBe(1000)
    const ledger = await ledgerOf(org)
    expect(ledger.sums).toEqual({ grant: 1000, ...(charged ? { charge: -charged } : {}), ...(revoked ? { revoke: -revoked } : {}) })

    // Per grant: what it gave away is what charges hold of it plus what was revoked from it.
    const { rows: grants } = await primaryDb.query<{ id: string; amount: number; remaining: number; revoked_amount: number; charged: number }>(
      `select g.id, g.amount::int, g.remaining::int, g.revoked_amount::int,
              coalesce((select sum((a.value ->> 'amount')::int) from public.credit_requests r, jsonb_array_elements(r.allocations) a
                        where r.org_id = g.org_id and (a.value ->> 'grant_id')::uuid = g.id), 0)::int as charged
       from public.credit_grants g where g.org_id = $1`,
      [org],
    )
    for (const g of grants) expect(g.amount).toBe(g.remaining + g.revoked_amount + g.charged)
    expect(grants.reduce((sum, g) => sum + g.revoked_amount, 0)).toBe(revoked)
    // ...and exactly what the answers said they took from it.
    const distinct = [first, ...refs.map((ref) => many.find((r) => r.external_ref === ref)!), ...namedAnswers]
    for (const g of grants) {
      const taken = distinct.flatMap((r) => r.allocations).filter((piece) => piece.grant_id === g.id).reduce((sum, piece) => sum + piece.amount, 0)
      expect({ grant: g.id, revoked: g.revoked_amount }).toEqual({ grant: g.id, revoked: taken })
    }
    // Burn-down order: the priority-50 grant is the first to go, whoever took it.
    expect(grants.find((g) => g.id === soon.grant_id)!.remaining).toBe(0)

    await expectReconciled(orgs)
  }, 60_000)

  it('never queues an auto top-up: taking credits back does not charge the same card again', async () => {
    const owner = await newUser('revoke-topup')
    const org = owner.personalOrgId
    expect((await service.rpc('set_org_billing', { p_org_id: org, p_stripe_customer_id: 'cus_revoked', p_stripe_payment_method_id: 'pm_card_visa' })).error).toBeNull()
    expect((await owner.client.rpc('set_auto_topup', { p_enabled: true, p_threshold: 50, p_amount: 100, p_monthly_cap: 1000 })).error).toBeNull()
    const purchase = await grantCredits(org, 100, { source: 'purchase', externalRef: `pi_${randomId()}` })
    // The revocation takes the balance from 100 to 20, across the threshold of 50: no top-up.
    const { data, error } = await revoke(org, 80, `refund-${randomId()}`, purchase.grant_id as string)
    expect(error).toBeNull()
    expect(data).toMatchObject({ revoked: 80, balance_after: 20 })
    const queued = async () => (await primaryDb.query('select status from public.credit_topup_requests where org_id = $1', [org])).rows
    expect(await queued()).toEqual([])
    // (That an ordinary charge crossing the threshold queues one is tests/payments.test.ts's: a
    // pending request left here would be claimed by the processors that file runs.)
    await expectReconciled([org])
  })
})
