import { afterAll, describe, expect, it } from 'vitest'
import type { PostgrestError } from '@supabase/supabase-js'
import { anonClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import {
  balanceOf,
  createPrice,
  expectBooksBalanced,
  expectReconciled,
  expectRpcError,
  grantCredits,
  ledgerOf,
  randomId,
  requestCountOf,
  shuffle,
  userTracker,
} from './support/credits.ts'

type Item = { operation: string; request_id: string; quantity?: number; metadata?: Record<string, unknown> }
type ItemResult = Record<string, unknown>
type BatchAnswer = { org_id: string; results: ItemResult[]; charged_total: number; balance_after: number }
type RpcAnswer = { data: BatchAnswer | null; error: PostgrestError | null; status: number }

/** Charge ledger entries per request id of one org. */
async function chargesPerRequest(orgId: string): Promise<Map<string, number>> {
  const { rows } = await primaryDb.query<{ request_id: string; n: number }>(
    `select request_id, count(*)::int as n from public.credit_ledger where org_id = $1 and kind = 'charge' group by request_id`,
    [orgId],
  )
  return new Map(rows.map((r) => [r.request_id, r.n]))
}

// consume_credits_batch through supabase-js .rpc (PostgREST), as a signed-in user's app sends it.
describe('consume_credits_batch', () => {
  const { orgs, newUser } = userTracker()
  afterAll(async () => {
    await expectReconciled(orgs)
  })

  it('charges every item once, in order, and replays items already charged', async () => {
    const user = await newUser('batch')
    const org = user.personalOrgId
    const operation = await createPrice(3, 'batch')
    await grantCredits(org, 100)
    expect(await balanceOf(org)).toEqual({ available: 100, held: 0 })

    const items: Item[] = [
      { operation, request_id: 'b-1' },
      { operation, request_id: 'b-2', quantity: 4, metadata: { event: 'upload' } },
      { operation, request_id: 'b-1' },
    ]
    const first = (await user.client.rpc('consume_credits_batch', { p_items: items })) as RpcAnswer
    expect(first.error).toBeNull()
    expect(first.data).toEqual({
      org_id: org,
      charged_total: 15,
      balance_after: 85,
      results: [
        { request_id: 'b-1', org_id: org, operation, quantity: 1, status: 'charged', charged: 3, balance_before: 100, balance_after: 97, replayed: false },
        { request_id: 'b-2', org_id: org, operation, quantity: 4, status: 'charged', charged: 12, balance_before: 97, balance_after: 85, replayed: false },
        // The same id twice in one batch: the second occurrence replays the first.
        { request_id: 'b-1', org_id: org, operation, quantity: 1, status: 'charged', charged: 3, balance_before: 100, balance_after: 97, replayed: true },
      ],
    })
    // The same batch again (a client retry): nothing charged.
    const again = (await user.client.rpc('consume_credits_batch', { p_items: items })) as RpcAnswer
    expect(again.error).toBeNull()
    expect(again.data!.charged_total).toBe(0)
    expect(again.data!.results.map((r) => r.replayed)).toEqual([true, true, true])
    // An item a single call charged is a replay for the batch, and the other way round.
    const single = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'b-2', p_quantity: 4 })
    expect(single.error).toBeNull()
    expect(single.data).toMatchObject({ replayed: true, charged: 12 })

    expect(await balanceOf(org)).toEqual({ available: 85, held: 0 })
    expect(await requestCountOf(org)).toBe(2)
    expect(Object.fromEntries(await chargesPerRequest(org))).toEqual({ 'b-1': 1, 'b-2': 1 })
    await expectBooksBalanced(org)
  })

  it('atomic: insufficient credits is one 402 for the batch and charges nothing', async () => {
    const user = await newUser('atomic')
    const org = user.personalOrgId
    const operation = await createPrice(5, 'batch')
    await grantCredits(org, 12)
    const items: Item[] = [
      { operation, request_id: 'a-1' },
      { operation, request_id: 'a-2' },
      { operation, request_id: 'a-3' },
    ]
    const answer = (await user.client.rpc('consume_credits_batch', { p_items: items })) as RpcAnswer
    expect(answer.status).toBe(402)
    const details = expectRpcError(answer, 'PT402', 'insufficient_credits')
    expect(details).toEqual({ required: 15, available: 12, item: 2, request_id: 'a-3', operation, item_required: 5 })
    expect(await balanceOf(org)).toEqual({ available: 12, held: 0 })
    expect(await requestCountOf(org)).toBe(0)

    // Another item's error fails the batch too, naming the item.
    const unknown = (await user.client.rpc('consume_credits_batch', {
      p_items: [{ operation, request_id: 'a-1' }, { operation: `missing_${randomId()}`, request_id: 'a-4' }],
    })) as RpcAnswer
    expect(unknown.status).toBe(404)
    expect(expectRpcError(unknown, 'PT404', 'unknown_operation')).toMatchObject({ item: 1, request_id: 'a-4' })
    expect(await requestCountOf(org)).toBe(0)
    await expectBooksBalanced(org)
  })

  it('per item: each item answers its result or its error key; failures undo nothing', async () => {
    const user = await newUser('peritem')
    const org = user.personalOrgId
    const operation = await createPrice(5, 'batch')
    await grantCredits(org, 12)
    const answer = (await user.client.rpc('consume_credits_batch', {
      p_atomic: false,
      p_items: [
        { operation, request_id: 'p-1' },
        { operation, request_id: 'p-2', quantity: 2 },
        { operation, request_id: 'p-3' },
        { operation, request_id: 'p-1', quantity: 3 },
      ],
    })) as RpcAnswer
    expect(answer.error).toBeNull()
    expect(answer.data).toMatchObject({ org_id: org, charged_total: 10, balance_after: 2 })
    expect(answer.data!.results).toEqual([
      expect.objectContaining({ request_id: 'p-1', status: 'charged', charged: 5, replayed: false }),
      { request_id: 'p-2', operation, error: 'insufficient_credits', sqlstate: 'PT402', details: { required: 10, available: 7, operation, quantity: 2 } },
      expect.objectContaining({ request_id: 'p-3', status: 'charged', charged: 5, balance_after: 2, replayed: false }),
      expect.objectContaining({ request_id: 'p-1', error: 'idempotency_conflict', sqlstate: 'PT409' }),
    ])
    expect(await balanceOf(org)).toEqual({ available: 2, held: 0 })
    expect(Object.fromEntries(await chargesPerRequest(org))).toEqual({ 'p-1': 1, 'p-3': 1 })
    await expectBooksBalanced(org)
  })

  it('refuses a bad shape with 400 invalid_items before charging anything, and anon', async () => {
    const user = await newUser('shape')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'batch')
    await grantCredits(org, 10)
    for (const [items, atomic, expected] of [
      [[], true, { field: 'items', count: 0, max_items: 1000 }],
      [[{ operation, request_id: 's-1' }, { operation, request_id: 's-2', quantity: '2' }], false, { item: 1, field: 'quantity', max_items: 1000 }],
      [[{ operation, request_id: 's-1', price: 0 }], true, { item: 0, field: 'keys', max_items: 1000 }],
      [Array.from({ length: 1001 }, (_, i) => ({ operation, request_id: `s-${i}` })), false, { field: 'items', count: 1001, max_items: 1000 }],
    ] as const) {
      const answer = (await user.client.rpc('consume_credits_batch', { p_items: items, p_atomic: atomic })) as RpcAnswer
      expect(answer.status).toBe(400)
      expect(expectRpcError(answer, '22023', 'invalid_items')).toEqual(expected)
    }
    expect(await balanceOf(org)).toEqual({ available: 10, held: 0 })
    expect(await requestCountOf(org)).toBe(0)

    const anon = await anonClient().rpc('consume_credits_batch', { p_items: [{ operation, request_id: 's-1' }] })
    expect(anon.error?.code).toBe('42501')
    expect(await requestCountOf(org)).toBe(0)
  })

  it('overlapping batches from parallel clients charge every request id exactly once', async () => {
    const user = await newUser('batchstorm')
    const org = user.personalOrgId
    const cheap = await createPrice(1, 'storm')
    const dear = await createPrice(3, 'storm')
    await grantCredits(org, 100_000)
    expect(await balanceOf(org)).toEqual({ available: 100_000, held: 0 })

    // 240 request ids, each with fixed parameters; every batch draws 60 of them (with overlap
    // between batches and some ids twice in one batch), in both modes, beside single calls.
    const pool: Item[] = Array.from({ length: 240 }, (_, i) => ({
      operation: i % 3 === 0 ? dear : cheap,
      request_id: `storm-${i}`,
      ...(i % 4 === 0 ? {} : { quantity: 1 + (i % 5) }),
    }))
    const price = (item: Item) => (item.operation === dear ? 3 : 1) * (item.quantity ?? 1)
    const pick = () => shuffle([...pool]).slice(0, 55).concat(shuffle([...pool]).slice(0, 5))
    const batches = Array.from({ length: 16 }, (_, i) => ({ items: pick(), atomic: i % 2 === 0 }))
    const singles = shuffle([...pool]).slice(0, 40)

    const answers = await Promise.all([
      ...batches.map(async (b) => ({ kind: 'batch' as const, items: b.items, answer: (await user.client.rpc('consume_credits_batch', { p_items: b.items, p_atomic: b.atomic })) as RpcAnswer })),
      ...singles.map(async (item) => ({
        kind: 'single' as const,
        items: [item],
        answer: await user.client.rpc('consume_credits', { p_operation: item.operation, p_request_id: item.request_id, p_quantity: item.quantity ?? 1 }),
      })),
    ])

    // Every call succeeded and every item was charged or replayed (credits never ran out).
    const firstCharges = new Map<string, number>()
    let chargedTotal = 0
    for (const { kind, items, answer } of answers) {
      expect(answer.error).toBeNull()
      const results = kind === 'batch' ? (answer.data as BatchAnswer).results : [answer.data as ItemResult]
      expect(results).toHaveLength(items.length)
      let charged = 0
      results.forEach((r, i) => {
        expect(r).toMatchObject({ request_id: items[i]!.request_id, status: 'charged', charged: price(items[i]!) })
        if (r.replayed === false) {
          firstCharges.set(String(r.request_id), (firstCharges.get(String(r.request_id)) ?? 0) + 1)
          charged += r.charged as number
        }
      })
      if (kind === 'batch') expect((answer.data as BatchAnswer).charged_total).toBe(charged)
      chargedTotal += charged
    }
    const sent = new Set(answers.flatMap((a) => a.items.map((item) => item.request_id)))
    // Exactly one answer charged each id; everyone else replayed it.
    expect([...firstCharges.values()].every((n) => n === 1)).toBe(true)
    expect(new Set(firstCharges.keys())).toEqual(sent)

    const expected = [...sent].reduce((sum, id) => sum + price(pool.find((p) => p.request_id === id)!), 0)
    expect(chargedTotal).toBe(expected)
    expect(await balanceOf(org)).toEqual({ available: 100_000 - expected, held: 0 })
    expect(await requestCountOf(org)).toBe(sent.size)
    const perRequest = await chargesPerRequest(org)
    expect(perRequest.size).toBe(sent.size)
    expect([...perRequest.values()].every((n) => n === 1)).toBe(true)
    const ledger = await ledgerOf(org)
    expect(ledger).toMatchObject({ amount: 100_000 - expected, sums: { grant: 100_000, charge: -expected } })
    await expectBooksBalanced(org)
  })

  it('parallel per-item batches on a short balance: never overdrawn, each id charged at most once', async () => {
    const user = await newUser('batchshort')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'short')
    await grantCredits(org, 150)
    const pool: Item[] = Array.from({ length: 120 }, (_, i) => ({ operation, request_id: `short-${i}` }))
    const answers = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const items = shuffle([...pool]).slice(0, 40)
        return { items, answer: (await user.client.rpc('consume_credits_batch', { p_items: items, p_atomic: false })) as RpcAnswer }
      }),
    )
    const firstCharges = new Map<string, number>()
    for (const { items, answer } of answers) {
      expect(answer.error).toBeNull()
      answer.data!.results.forEach((r, i) => {
        expect(r.request_id).toBe(items[i]!.request_id)
        if (r.error !== undefined) expect({ error: r.error, sqlstate: r.sqlstate }).toEqual({ error: 'insufficient_credits', sqlstate: 'PT402' })
        else if (r.replayed === false) firstCharges.set(String(r.request_id), (firstCharges.get(String(r.request_id)) ?? 0) + 1)
      })
    }
    expect([...firstCharges.values()].every((n) => n === 1)).toBe(true)
    const charged = firstCharges.size
    // 150 credits at 2 each: 75 charges, if at least 75 distinct ids were sent.
    const sent = new Set(answers.flatMap((a) => a.items.map((item) => item.request_id)))
    expect(charged).toBe(Math.min(75, sent.size))
    expect(await balanceOf(org)).toEqual({ available: 150 - 2 * charged, held: 0 })
    expect(await requestCountOf(org)).toBe(charged)
    expect([...(await chargesPerRequest(org)).values()].every((n) => n === 1)).toBe(true)
    await expectBooksBalanced(org)
  })
})
