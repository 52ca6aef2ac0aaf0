import { afterAll, describe, expect, it } from 'vitest'
import type { PostgrestError } from '@supabase/supabase-js'
import { serviceClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { createPrice, expectRpcError, randomId, shuffle, userTracker } from './support/credits.ts'
import {
  allocationsOf,
  booksOf,
  chargeEntriesPerRequest,
  expectOverageBooksBalanced,
  expectOverageReconciled,
  grantScoped,
  grantStates,
} from './support/scoped-credits.ts'

type Answer = { data: Record<string, unknown> | null; error: PostgrestError | null; status: number }

// Scoped credits through supabase-js .rpc (PostgREST), as servers and signed-in users' apps see
// them: grant_credits(p_operations), charges that only burn grants covering their operation,
// insufficient_credits per operation, get_credit_balance's scopes, and a parallel storm.
describe('scoped credits', () => {
  const { orgs, newUser } = userTracker()
  afterAll(async () => {
    await expectOverageReconciled(orgs)
  })

  it('grant_credits(p_operations): normalised answer, 400 / 404 / 409 refusals, users refused', async () => {
    const user = await newUser('scopegrant')
    const org = user.personalOrgId
    const img = await createPrice(10, 'img')
    const txt = await createPrice(1, 'txt')
    const [first, second] = [img, txt].sort()
    const service = serviceClient()

    const grant = await grantScoped(org, 30, { externalRef: 'promo-1', operations: [second!, first!, second!] })
    expect(grant).toMatchObject({ amount: 30, remaining: 30, status: 'active', operations: [first, second], balance_after: 30, replayed: false })
    const { rows } = await primaryDb.query<{ operations: string[] }>(
      'select operations from public.credit_grants where id = $1',
      [grant.grant_id],
    )
    expect(rows[0]!.operations).toEqual([first, second])
    expect(await grantScoped(org, 5, { externalRef: 'any-1' })).toMatchObject({ operations: null })

    for (const operations of [[], [null], [img, null], ['Not An Op'], ['']]) {
      const refused = (await service.rpc('grant_credits', {
        p_org_id: org, p_amount: 10, p_source: 'promotion', p_external_ref: `bad-${randomId()}`, p_operations: operations,
      })) as Answer
      expect({ operations, status: refused.status }).toEqual({ operations, status: 400 })
      expectRpcError(refused, '22023', 'invalid_operations')
    }
    const unknownName = `nope_${randomId()}`
    const unknown = (await service.rpc('grant_credits', {
      p_org_id: org, p_amount: 10, p_source: 'promotion', p_external_ref: 'bad-unknown', p_operations: [img, unknownName],
    })) as Answer
    expect(unknown.status).toBe(404)
    expect(expectRpcError(unknown, 'PT404', 'unknown_operation')).toMatchObject({ operations: [unknownName] })

    const replay = (await service.rpc('grant_credits', {
      p_org_id: org, p_amount: 30, p_source: 'promotion', p_external_ref: 'promo-1', p_operations: [first, second],
    })) as Answer
    expect(replay.error).toBeNull()
    expect(replay.data).toMatchObject({ grant_id: grant.grant_id, replayed: true, operations: [first, second] })
    const conflict = (await service.rpc('grant_credits', {
      p_org_id: org, p_amount: 30, p_source: 'promotion', p_external_ref: 'promo-1', p_operations: [img],
    })) as Answer
    expect(conflict.status).toBe(409)
    expectRpcError(conflict, 'PT409', 'idempotency_conflict')

    const byUser = (await user.client.rpc('grant_credits', {
      p_org_id: org, p_amount: 10, p_source: 'promotion', p_operations: [img],
    })) as Answer
    expect({ code: byUser.error?.code, status: byUser.status }).toEqual({ code: '42501', status: 403 })

    expect(await booksOf(org)).toMatchObject({ available: 35, overage: 0, held: 0 })
    expect((await grantStates(org)).size).toBe(2)
    await expectOverageBooksBalanced(org)
  })

  it('charges burn only covering grants; insufficient_credits and get_credit_balance speak per operation', async () => {
    const user = await newUser('scopecharge')
    const org = user.personalOrgId
    const img = await createPrice(10, 'img')
    const txt = await createPrice(1, 'txt')
    const scoped = await grantScoped(org, 30, { externalRef: 's', operations: [img], priority: 50 })
    const any = await grantScoped(org, 20, { externalRef: 'u', source: 'purchase' })

    const before = await user.client.rpc('get_credit_balance')
    expect(before.error).toBeNull()
    expect(before.data).toMatchObject({
      available: 50,
      overage: 0,
      overage_limit: 0,
      scopes: [{ operations: null, available: 20 }, { operations: [img], available: 30 }],
    })

    const t1 = await user.client.rpc('consume_credits', { p_operation: txt, p_request_id: 't-1', p_quantity: 5 })
    expect(t1.error).toBeNull()
    expect(t1.data).toMatchObject({ charged: 5, balance_before: 50, balance_after: 45, replayed: false })
    const i1 = await user.client.rpc('consume_credits', { p_operation: img, p_request_id: 'i-1', p_quantity: 4 })
    expect(i1.error).toBeNull()
    expect(i1.data).toMatchObject({ charged: 40, balance_after: 5 })
    const allocations = await allocationsOf(org)
    expect(allocations.get('t-1')!.allocations).toEqual([{ grant_id: any.grant_id, amount: 5 }])
    expect(allocations.get('i-1')!.allocations).toEqual([
      { grant_id: scoped.grant_id, amount: 30 },
      { grant_id: any.grant_id, amount: 10 },
    ])

    const short = (await user.client.rpc('consume_credits', { p_operation: txt, p_request_id: 't-2', p_quantity: 6 })) as Answer
    expect(short.status).toBe(402)
    const shortDetails = expectRpcError(short, 'PT402', 'insufficient_credits')
    expect(shortDetails).toMatchObject({ required: 6, available: 5, operation: txt, quantity: 6 })

    const after = await user.client.rpc('get_credit_balance')
    expect(after.error).toBeNull()
    expect(after.data).toMatchObject({ available: 5, overage: 0, overage_limit: 0 })
    expect((after.data as { scopes: Array<{ available: number }> }).scopes.filter((s) => s.available !== 0)).toEqual([
      { operations: null, available: 5 },
    ])
    expect(await booksOf(org)).toEqual({ available: 5, overage: 0, held: 0, overage_limit: 0, flag: true })
    await expectOverageBooksBalanced(org)
    // The details carry the overage figures whatever the org's limit (last, so the checks above run).
    // An org without an overage limit or debt: the figures of the operation only (no overage keys).
    expect(shortDetails).toEqual({ required: 6, available: 5, operation: txt, quantity: 6 })
  })

  it('holds, partial captures, releases and refunds give credits back to the scoped grants they came from', async () => {
    const user = await newUser('scopehold')
    const org = user.personalOrgId
    const img = await createPrice(10, 'img')
    const scoped = await grantScoped(org, 30, { externalRef: 's', operations: [img], priority: 50 })
    const any = await grantScoped(org, 20, { externalRef: 'u', source: 'purchase' })
    const service = serviceClient()

    const hold = await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: img, p_request_id: 'h-1', p_quantity: 4 })
    expect(hold.error).toBeNull()
    expect((await allocationsOf(org)).get('h-1')!.allocations).toEqual([
      { grant_id: scoped.grant_id, amount: 30 },
      { grant_id: any.grant_id, amount: 10 },
    ])
    const capture = await service.rpc('capture_credits', { p_org_id: org, p_request_id: 'h-1', p_quantity: 2 })
    expect(capture.error).toBeNull()
    // 20 released newest first: 10 to the unscoped grant, then 10 to the scoped one.
    let states = await grantStates(org)
    expect([states.get(scoped.grant_id as string)!.remaining, states.get(any.grant_id as string)!.remaining]).toEqual([10, 20])
    expect((await allocationsOf(org)).get('h-1')!.allocations).toEqual([{ grant_id: scoped.grant_id, amount: 20 }])

    const refund = await service.rpc('refund_credits', { p_org_id: org, p_request_id: 'h-1', p_reason: 'backend failed' })
    expect(refund.error).toBeNull()
    states = await grantStates(org)
    expect([states.get(scoped.grant_id as string)!.remaining, states.get(any.grant_id as string)!.remaining]).toEqual([30, 20])

    const hold2 = await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: img, p_request_id: 'h-2', p_quantity: 5 })
    expect(hold2.error).toBeNull()
    const release = await service.rpc('release_credits', { p_org_id: org, p_request_id: 'h-2' })
    expect(release.error).toBeNull()
    states = await grantStates(org)
    expect([states.get(scoped.grant_id as string)!.remaining, states.get(any.grant_id as string)!.remaining]).toEqual([30, 20])
    expect(await booksOf(org)).toEqual({ available: 50, overage: 0, held: 0, overage_limit: 0, flag: true })
    await expectOverageBooksBalanced(org)
  })

  it('parallel charges of mixed operations never spend a grant on an operation it does not cover, each request once', async () => {
    const user = await newUser('scopestorm')
    const org = user.personalOrgId
    const prices = { img: 3, txt: 1, vid: 2, other: 5 }
    const op = {
      img: await createPrice(prices.img, 'img'),
      txt: await createPrice(prices.txt, 'txt'),
      vid: await createPrice(prices.vid, 'vid'),
      other: await createPrice(prices.other, 'oth'),
    }
    const priceOf = new Map(Object.entries(op).map(([k, name]) => [name, prices[k as keyof typeof prices]]))
    const s = (await grantScoped(org, 300, { externalRef: 's', operations: [op.img], priority: 50 })).grant_id as string
    const t = (await grantScoped(org, 200, { externalRef: 't', operations: [op.txt, op.vid], priority: 50, expiresAt: new Date(Date.now() + 86_400_000) }))
      .grant_id as string
    const u = (await grantScoped(org, 500, { externalRef: 'u', source: 'purchase' })).grant_id as string
    expect(await booksOf(org)).toMatchObject({ available: 1000, overage: 0 })
    const covering: Record<string, string[]> = { [op.img]: [s, u], [op.txt]: [t, u], [op.vid]: [t, u], [op.other]: [u] }

    // 220 requests with fixed parameters; 30 of them sent twice.
    const names = Object.values(op)
    const requests = Array.from({ length: 220 }, (_, i) => ({
      operation: names[i % names.length]!,
      request_id: `r-${i}`,
      quantity: 1 + ((i * 7) % 10),
    }))
    const sends = shuffle([...requests, ...shuffle([...requests]).slice(0, 30)])
    const answers = await Promise.all(
      sends.map(async (r) => ({
        r,
        answer: (await user.client.rpc('consume_credits', { p_operation: r.operation, p_request_id: r.request_id, p_quantity: r.quantity })) as Answer,
      })),
    )

    const firstCharges = new Map<string, number>()
    const refused: Array<{ operation: string; cost: number }> = []
    const refusalDetails: Array<Record<string, unknown>> = []
    let charged = 0
    for (const { r, answer } of answers) {
      const cost = priceOf.get(r.operation)! * r.quantity
      if (answer.error) {
        expect({ id: r.request_id, status: answer.status }).toEqual({ id: r.request_id, status: 402 })
        const details = expectRpcError(answer, 'PT402', 'insufficient_credits')
        expect(details).toMatchObject({ required: cost, operation: r.operation, quantity: r.quantity })
        refusalDetails.push(details)
        expect(details.required as number).toBeGreaterThan(details.available as number)
        refused.push({ operation: r.operation, cost })
        continue
      }
      expect(answer.data).toMatchObject({ request_id: r.request_id, charged: cost })
      expect(answer.data!.overage).toBeUndefined()
      if (answer.data!.replayed === false) {
        firstCharges.set(r.request_id, (firstCharges.get(r.request_id) ?? 0) + 1)
        charged += cost
      }
    }
    expect([...firstCharges.values()].every((n) => n === 1)).toBe(true)
    // A request refused once and charged by its twin later is possible; never charged twice.
    const entries = await chargeEntriesPerRequest(org)
    expect(new Set(entries.keys())).toEqual(new Set(firstCharges.keys()))
    expect([...entries.values()].every((n) => n === 1)).toBe(true)
    expect(refused.length).toBeGreaterThan(0)

    const books = await expectOverageBooksBalanced(org)
    expect(books).toEqual({ available: 1000 - charged, overage: 0, held: 0, overage_limit: 0, flag: books.available > 0 })

    // Every piece of every request came from a grant covering its operation; no debt.
    const allocations = await allocationsOf(org)
    const used = new Map<string, number>([[s, 0], [t, 0], [u, 0]])
    for (const [id, request] of allocations) {
      expect(request.charged).toBe(priceOf.get(request.operation)! * requests.find((x) => x.request_id === id)!.quantity)
      for (const piece of request.allocations) {
        expect({ id, grant: piece.grant_id, covers: covering[request.operation]!.includes(piece.grant_id as string) }).toEqual({ id, grant: piece.grant_id, covers: true })
        used.set(piece.grant_id as string, used.get(piece.grant_id as string)! + piece.amount)
      }
    }
    const states = await grantStates(org)
    expect({ s: states.get(s)!.remaining, t: states.get(t)!.remaining, u: states.get(u)!.remaining }).toEqual({
      s: 300 - used.get(s)!,
      t: 200 - used.get(t)!,
      u: 500 - used.get(u)!,
    })
    // Charges only ever lower what an operation may use: a refusal at any moment is still a
    // refusal against the final state.
    const finalCovering = (operation: string) => covering[operation]!.reduce((sum, g) => sum + states.get(g)!.remaining, 0)
    for (const { operation, cost } of refused) expect({ operation, refusedFairly: cost > finalCovering(operation) }).toEqual({ operation, refusedFairly: true })
    // A scoped grant (priority 50) burns first for its operations: while it has credits left, none of them touched u.
    for (const [grant, operations] of [[s, [op.img]], [t, [op.txt, op.vid]]] as const) {
      if (states.get(grant)!.remaining === 0) continue
      for (const request of allocations.values()) {
        if (operations.includes(request.operation)) expect(request.allocations.map((p) => p.grant_id)).toEqual([grant])
      }
    }
    // No overage limit and no debt: the refusals carry no overage figures.
    for (const details of refusalDetails) expect(details).not.toHaveProperty('overage_limit')
  })
})
