import { describe, expect, it } from 'vitest'
import { createTollgateClient, InsufficientCreditsError, InvalidInputError, type LedgerEntry } from '@tollgate/client'
import { createTollgateServer } from '@tollgate/client/server'
import { serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { balanceOf, createPrice, expectBooksBalanced, expectReconciled, grantCredits, randomId, requestOf, userTracker } from './support/credits.ts'
import { fastRetries } from './client-helpers.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** A shared org (not personal) with `user` as a member, arranged directly and checked. */
async function sharedOrg(user: TestUser, role = 'member'): Promise<string> {
  const { rows } = await primaryDb.query<{ id: string }>(`insert into public.orgs (name) values ($1) returning id`, [`team-${randomId(6)}`])
  const orgId = rows[0]!.id
  await primaryDb.query('insert into public.org_members (org_id, user_id, role) values ($1, $2, $3)', [orgId, user.id, role])
  expect(await balanceOf(orgId)).toEqual({ available: 0, held: 0 })
  return orgId
}

async function ledgerIdsOf(orgId: string): Promise<number[]> {
  const { rows } = await primaryDb.query<{ id: number }>('select id::int as id from public.credit_ledger where org_id = $1 order by id desc', [orgId])
  return rows.map((r) => r.id)
}

// The user half against the real stack: what a signed-in user's client answers, in camelCase.
describe('@tollgate/client user half', () => {
  const { orgs, newUser } = userTracker()

  it('balance, consume (with a generated request id), replay and usage stats', async () => {
    const user = await newUser('spender')
    const org = user.personalOrgId
    const operation = await createPrice(4, 'cuser')
    const expiresAt = new Date(Date.now() + 86_400_000)
    await grantCredits(org, 30, { expiresAt })
    await grantCredits(org, 20)
    const tollgate = createTollgateClient(user.client, fastRetries)

    const balance = await tollgate.balance()
    expect(balance).toEqual({
      orgId: org,
      available: 50,
      held: 0,
      nextExpiryAt: expect.any(String),
      nextExpiryAmount: 30,
      scheduled: 0,
      nextStartAt: null,
      nextStartAmount: null,
      overage: 0,
      overageLimit: 0,
      scopes: [{ operations: null, available: 50 }],
    })
    expect(new Date(balance.nextExpiryAt!).getTime()).toBe(expiresAt.getTime())

    const charge = await tollgate.consume({ operation, quantity: 3, metadata: { file: 'a.pdf' } })
    expect(charge.requestId).toMatch(UUID)
    expect(charge).toEqual({
      requestId: charge.requestId,
      orgId: org,
      operation,
      quantity: 3,
      status: 'charged',
      charged: 12,
      reserved: 0,
      refunded: 0,
      holdExpiresAt: null,
      balanceBefore: 50,
      balanceAfter: 38,
      overage: 0,
      replayed: false,
    })
    expect(await tollgate.consume({ operation, quantity: 3, requestId: charge.requestId })).toEqual({ ...charge, replayed: true })
    const mine = await tollgate.consume({ operation, requestId: `order-${randomId()}` })
    expect(mine).toMatchObject({ charged: 4, balanceAfter: 34, replayed: false })
    expect(await requestOf(org, charge.requestId)).toMatchObject({ status: 'charged', charged: 12, quantity: 3 })

    // A caller-supplied id generator.
    const prefixed = createTollgateClient(user.client, { newRequestId: () => `app-${randomId()}` })
    expect((await prefixed.consume({ operation })).requestId).toMatch(/^app-[0-9a-f]{12}$/)

    const stats = await tollgate.usageStats({ days: 1 })
    expect(stats).toEqual({
      periodDays: 1,
      totalCalls: 3,
      successfulCalls: 3,
      failedCalls: 0,
      totalCreditsUsed: 20,
      avgLatencyMs: 0,
      topOperations: [{ operation, calls: 3, credits: 20 }],
    })
    expect(await tollgate.usageStats()).toMatchObject({ periodDays: 30, totalCalls: 3 })
    expect(await expectBooksBalanced(org)).toEqual({ available: 30, held: 0 })
  })

  it('consumeBatch: typed results, replays, per-item errors and one 402 for an atomic batch', async () => {
    const user = await newUser('batcher')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'cuser')
    await grantCredits(org, 10)
    const tollgate = createTollgateClient(user.client, { ...fastRetries, newRequestId: () => `gen-${randomId()}` })

    const batch = await tollgate.consumeBatch({ items: [{ operation, requestId: 'cb-1' }, { operation, quantity: 2, metadata: { n: 1 } }, { operation, requestId: 'cb-1' }] })
    const generated = batch.results[1]!.requestId
    expect(generated).toMatch(/^gen-[0-9a-f]{12}$/)
    expect(batch).toEqual({
      orgId: org,
      chargedTotal: 6,
      balanceAfter: 4,
      results: [
        { ok: true, requestId: 'cb-1', orgId: org, operation, quantity: 1, status: 'charged', charged: 2, reserved: 0, refunded: 0, holdExpiresAt: null, balanceBefore: 10, balanceAfter: 8, overage: 0, replayed: false },
        { ok: true, requestId: generated, orgId: org, operation, quantity: 2, status: 'charged', charged: 4, reserved: 0, refunded: 0, holdExpiresAt: null, balanceBefore: 8, balanceAfter: 4, overage: 0, replayed: false },
        { ok: true, requestId: 'cb-1', orgId: org, operation, quantity: 1, status: 'charged', charged: 2, reserved: 0, refunded: 0, holdExpiresAt: null, balanceBefore: 10, balanceAfter: 8, overage: 0, replayed: true },
      ],
    })

    const atomic = await tollgate.consumeBatch({ items: [{ operation, requestId: 'cb-2' }, { operation, requestId: 'cb-3', quantity: 2 }] }).catch((e: unknown) => e)
    expect(atomic).toBeInstanceOf(InsufficientCreditsError)
    expect(atomic).toMatchObject({ key: 'insufficient_credits', code: 'PT402', status: 402, required: 6, available: 4, details: { item: 1, request_id: 'cb-3' } })

    const perItem = await tollgate.consumeBatch({ atomic: false, items: [{ operation, requestId: 'cb-2' }, { operation, requestId: 'cb-3', quantity: 2 }, { operation, requestId: 'cb-1', quantity: 5 }] })
    expect(perItem).toMatchObject({ chargedTotal: 2, balanceAfter: 2 })
    expect(perItem.results).toEqual([
      expect.objectContaining({ ok: true, requestId: 'cb-2', charged: 2, replayed: false }),
      { ok: false, requestId: 'cb-3', operation, error: { key: 'insufficient_credits', code: 'PT402', details: { required: 4, available: 2, operation, quantity: 2 } } },
      { ok: false, requestId: 'cb-1', operation, error: { key: 'idempotency_conflict', code: 'PT409', details: expect.objectContaining({ request_id: 'cb-1' }) } },
    ])

    const shape = await tollgate.consumeBatch({ items: [] }).catch((e: unknown) => e)
    expect(shape).toBeInstanceOf(InvalidInputError)
    expect(shape).toMatchObject({ key: 'invalid_items', code: '22023', status: 400 })
    expect(await expectBooksBalanced(org)).toEqual({ available: 2, held: 0 })
  })

  it('orgs, and every call on a shared org through orgId', async () => {
    const user = await newUser('member')
    const team = await sharedOrg(user, 'admin')
    orgs.push(team)
    const operation = await createPrice(2, 'cuser')
    await grantCredits(team, 10)
    await grantCredits(user.personalOrgId, 1)
    const tollgate = createTollgateClient(user.client, fastRetries)

    const list = await tollgate.orgs()
    expect(list).toEqual([
      { orgId: user.personalOrgId, name: expect.any(String), role: 'owner', isPersonal: true, hasUsageCredits: true },
      { orgId: team, name: expect.stringMatching(/^team-/), role: 'admin', isPersonal: false, hasUsageCredits: true },
    ])
    expect(await tollgate.consume({ operation, orgId: team })).toMatchObject({ orgId: team, charged: 2, balanceAfter: 8 })
    expect(await tollgate.balance(team)).toMatchObject({ orgId: team, available: 8, held: 0 })
    expect(await tollgate.balance()).toMatchObject({ orgId: user.personalOrgId, available: 1 })
    expect(await tollgate.usageStats({ orgId: team })).toMatchObject({ totalCalls: 1, totalCreditsUsed: 2 })
    expect((await tollgate.ledger({ orgId: team })).entries.map((e) => [e.orgId, e.kind, e.amount])).toEqual([
      [team, 'charge', -2],
      [team, 'grant', 10],
    ])
    expect((await tollgate.ledger()).entries.map((e) => [e.orgId, e.kind])).toEqual([[user.personalOrgId, 'grant']])
    expect((await tollgate.grants({ orgId: team })).map((g) => [g.orgId, g.amount, g.remaining])).toEqual([[team, 10, 8]])
  })

  it('grants: newest first, filtered by status', async () => {
    const user = await newUser('granted')
    const org = user.personalOrgId
    const server = createTollgateServer(serviceClient(), fastRetries)
    const pendingRef = `pi_${randomId()}`
    const voidRef = `pi_${randomId()}`
    await grantCredits(org, 10, { source: 'promotion' })
    await grantCredits(org, 25, { externalRef: pendingRef, pending: true })
    await grantCredits(org, 40, { externalRef: voidRef, pending: true })
    await server.voidGrant({ orgId: org, source: 'purchase', externalRef: voidRef })
    const tollgate = createTollgateClient(user.client, fastRetries)

    const all = await tollgate.grants()
    expect(all.map((g) => [g.amount, g.status, g.source, g.externalRef])).toEqual([
      [40, 'voided', 'purchase', voidRef],
      [25, 'pending', 'purchase', pendingRef],
      [10, 'active', 'promotion', null],
    ])
    expect(all[1]).toMatchObject({ orgId: org, remaining: 25, priority: 100, expiresAt: null, expiredAmount: 0, pendingSince: expect.any(String), activatedAt: null })
    expect((await tollgate.grants({ status: 'pending' })).map((g) => g.amount)).toEqual([25])
    expect((await tollgate.grants({ status: ['active', 'voided'] })).map((g) => g.amount)).toEqual([40, 10])
  })

  it('ledger pages cover every entry exactly once, newest first, without an empty last page', async () => {
    const user = await newUser('pager')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'cuser')
    await grantCredits(org, 1000)
    const tollgate = createTollgateClient(user.client, fastRetries)
    for (let i = 0; i < 23; i++) await tollgate.consume({ operation, requestId: `r${i}` })
    const expected = await ledgerIdsOf(org)
    expect(expected).toHaveLength(24)

    for (const limit of [5, 8, 24, 100]) {
      const pages: LedgerEntry[][] = []
      let cursor: number | null = null
      do {
        const page = await tollgate.ledger({ limit, before: cursor })
        pages.push(page.entries)
        cursor = page.nextCursor
        if (cursor !== null) expect(cursor).toBe(page.entries[page.entries.length - 1]!.id)
      } while (cursor !== null && pages.length < 50)
      const ids = pages.flat().map((e) => e.id)
      expect({ limit, ids }).toEqual({ limit, ids: expected })
      expect({ limit, sizes: pages.map((p) => p.length) }).toEqual({
        limit,
        sizes: Array.from({ length: Math.ceil(24 / limit) }, (_, i) => Math.min(limit, 24 - i * limit)),
      })
    }

    // Entries written while paging are newer than the cursor: the walk still sees each old entry once.
    const first = await tollgate.ledger({ limit: 10 })
    for (let i = 0; i < 5; i++) await tollgate.consume({ operation, requestId: `late${i}` })
    const rest: number[] = []
    let cursor = first.nextCursor
    while (cursor !== null) {
      const page = await tollgate.ledger({ limit: 10, before: cursor })
      rest.push(...page.entries.map((e) => e.id))
      cursor = page.nextCursor
    }
    expect([...first.entries.map((e) => e.id), ...rest]).toEqual(expected)

    const newest = (await tollgate.ledger({ limit: 1 })).entries[0]!
    expect(newest).toEqual({
      id: expect.any(Number),
      orgId: org,
      kind: 'charge',
      amount: -1,
      heldDelta: 0,
      balanceAfter: 972,
      heldAfter: 0,
      overageDelta: 0,
      overageAfter: 0,
      requestId: 'late4',
      grantId: null,
      actorUserId: user.id,
      actorRole: 'authenticated',
      metadata: { operation, quantity: 1 },
      createdAt: expect.any(String),
    })
    expect(await tollgate.ledger({ before: expected[expected.length - 1]! })).toEqual({ entries: [], nextCursor: null })
  })

  it('leaves the books balanced', async () => {
    await expectReconciled(orgs)
  })
})
