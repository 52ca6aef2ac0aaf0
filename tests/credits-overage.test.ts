import { afterAll, describe, expect, it } from 'vitest'
import type { PostgrestError } from '@supabase/supabase-js'
import { anonClient, serviceClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { createPrice, expectRpcError, ledgerOf, randomId, shuffle, userTracker } from './support/credits.ts'
import {
  allocationsOf,
  booksOf,
  chargeEntriesPerRequest,
  expectOverageBooksBalanced,
  expectOverageReconciled,
  grantScoped,
  grantStates,
  maxOverageEver,
  setOverageLimit,
} from './support/scoped-credits.ts'

type Answer = { data: Record<string, unknown> | null; error: PostgrestError | null; status: number }
type Item = { operation: string; request_id: string; quantity: number }
type BatchAnswer = { data: { results: Array<Record<string, unknown>>; charged_total: number; balance_after: number } | null; error: PostgrestError | null; status: number }

// Overage with a spend cap through supabase-js .rpc (PostgREST): set_overage_limit as servers,
// users and anon see it; charges into overage; grants paying the debt; and three storms with
// exact figures afterwards: mixed charges against scoped + unscoped credits and a limit, grants
// arriving while charges run into overage, and batches on scoped credits running into overage.
describe('overage', () => {
  const { orgs, newUser } = userTracker()
  afterAll(async () => {
    await expectOverageReconciled(orgs)
  })

  it('set_overage_limit: service role only (403 signed in, 401 anon), 400 / 404, idempotent answer', async () => {
    const user = await newUser('limit')
    const org = user.personalOrgId
    const byUser = (await user.client.rpc('set_overage_limit', { p_org_id: org, p_limit: 100 })) as Answer
    expect({ code: byUser.error?.code, status: byUser.status }).toEqual({ code: '42501', status: 403 })
    const byAnon = (await anonClient().rpc('set_overage_limit', { p_org_id: org, p_limit: 100 })) as Answer
    expect({ code: byAnon.error?.code, status: byAnon.status }).toEqual({ code: '42501', status: 401 })
    expect(await booksOf(org)).toEqual({ available: 0, overage: 0, held: 0, overage_limit: 0, flag: false })

    const service = serviceClient()
    for (const limit of [-1, 1_000_000_000_001, null]) {
      const refused = (await service.rpc('set_overage_limit', { p_org_id: org, p_limit: limit })) as Answer
      expect({ limit, status: refused.status }).toEqual({ limit, status: 400 })
      expectRpcError(refused, '22023', 'invalid_limit')
    }
    const unknown = (await service.rpc('set_overage_limit', { p_org_id: crypto.randomUUID(), p_limit: 5 })) as Answer
    expect(unknown.status).toBe(404)
    expectRpcError(unknown, 'PT404', 'unknown_org')
    expect(await booksOf(org)).toEqual({ available: 0, overage: 0, held: 0, overage_limit: 0, flag: false })

    const answer = { org_id: org, overage_limit: 100, overage: 0, available: 0, has_usage_credits: true }
    expect(await setOverageLimit(org, 100)).toEqual(answer)
    expect(await setOverageLimit(org, 100)).toEqual(answer)
    expect(await booksOf(org)).toEqual({ available: 0, overage: 0, held: 0, overage_limit: 100, flag: true })
    expect((await ledgerOf(org)).entries).toBe(0)
    await expectOverageBooksBalanced(org)
  })

  it('a charge into overage, the refusal beyond the limit, and a grant that repays the debt', async () => {
    const user = await newUser('debt')
    const org = user.personalOrgId
    const op = await createPrice(10, 'ov')
    await grantScoped(org, 30, { source: 'purchase', externalRef: 'first' })
    await setOverageLimit(org, 100)

    const c1 = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'c-1', p_quantity: 5 })) as Answer
    expect(c1.error).toBeNull()
    expect(c1.data).toEqual({
      request_id: 'c-1', org_id: org, operation: op, quantity: 5, status: 'charged', charged: 50,
      balance_before: 30, balance_after: -20, overage: 20, replayed: false,
    })
    const replay = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'c-1', p_quantity: 5 })) as Answer
    expect(replay.data).toEqual({ ...c1.data, replayed: true })

    const over = (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'c-2', p_quantity: 9 })) as Answer
    expect(over.status).toBe(402)
    expect(expectRpcError(over, 'PT402', 'insufficient_credits')).toEqual({
      required: 90, available: -20, operation: op, quantity: 9, overage: 20, overage_limit: 100,
    })
    const balance = await user.client.rpc('get_credit_balance')
    expect(balance.error).toBeNull()
    expect(balance.data).toMatchObject({ available: -20, overage: 20, overage_limit: 100 })
    expect(await booksOf(org)).toEqual({ available: -20, overage: 20, held: 0, overage_limit: 100, flag: true })

    const repay = await grantScoped(org, 50, { source: 'purchase', externalRef: 'second' })
    expect(repay).toMatchObject({ amount: 50, remaining: 30, balance_after: 30, operations: null, replayed: false })
    expect((await grantStates(org)).get(repay.grant_id as string)).toMatchObject({ remaining: 30, overage_repaid: 20 })
    const { rows } = await primaryDb.query<{ kind: string; amount: number; overage_delta: number; overage_after: number }>(
      `select kind, amount::int as amount, overage_delta::int as overage_delta, overage_after::int as overage_after
       from public.credit_ledger where org_id = $1 and grant_id = $2 order by id`,
      [org, repay.grant_id],
    )
    expect(rows).toEqual([{ kind: 'grant', amount: 50, overage_delta: -20, overage_after: 0 }])
    expect(await booksOf(org)).toEqual({ available: 30, overage: 0, held: 0, overage_limit: 100, flag: true })
    await expectOverageBooksBalanced(org)
  })

  it('(a) parallel mixed charges on scoped + unscoped credits with a limit: never beyond it, each once, exact books', async () => {
    const user = await newUser('ovstorm')
    const org = user.personalOrgId
    const img = await createPrice(1, 'img')
    const vid = await createPrice(3, 'vid')
    const price = (operation: string) => (operation === img ? 1 : 3)
    const s = (await grantScoped(org, 60, { externalRef: 's', operations: [img], priority: 50 })).grant_id as string
    const u = (await grantScoped(org, 90, { externalRef: 'u', source: 'purchase' })).grant_id as string
    const limit = 40
    await setOverageLimit(org, limit)
    expect(await booksOf(org)).toEqual({ available: 150, overage: 0, held: 0, overage_limit: 40, flag: true })
    const covering: Record<string, string[]> = { [img]: [s, u], [vid]: [u] }

    // 80 img and 60 vid charges by the user, 24 img/vid holds by the server; 20 sent twice.
    type Call = { kind: 'consume' | 'hold'; operation: string; request_id: string; quantity: number }
    const calls: Call[] = [
      ...Array.from({ length: 80 }, (_, i): Call => ({ kind: 'consume', operation: img, request_id: `i-${i}`, quantity: 1 + (i % 5) })),
      ...Array.from({ length: 60 }, (_, i): Call => ({ kind: 'consume', operation: vid, request_id: `v-${i}`, quantity: 1 + (i % 4) })),
      ...Array.from({ length: 24 }, (_, i): Call => ({ kind: 'hold', operation: i % 2 ? img : vid, request_id: `h-${i}`, quantity: 2 })),
    ]
    const service = serviceClient()
    const send = (c: Call) =>
      c.kind === 'consume'
        ? user.client.rpc('consume_credits', { p_operation: c.operation, p_request_id: c.request_id, p_quantity: c.quantity })
        : service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: c.operation, p_request_id: c.request_id, p_quantity: c.quantity })
    const sends = shuffle([...calls, ...shuffle([...calls]).slice(0, 20)])
    const answers = await Promise.all(sends.map(async (c) => ({ c, answer: (await send(c)) as Answer })))

    const first = new Map<string, Record<string, unknown>>()
    const refused: Array<{ operation: string; cost: number }> = []
    let total = 0
    let debt = 0
    for (const { c, answer } of answers) {
      const cost = price(c.operation) * c.quantity
      if (answer.error) {
        expect({ id: c.request_id, status: answer.status }).toEqual({ id: c.request_id, status: 402 })
        const details = expectRpcError(answer, 'PT402', 'insufficient_credits')
        expect(details).toMatchObject({ required: cost, operation: c.operation, quantity: c.quantity, overage_limit: limit })
        // The rule, as the refusal itself states it.
        expect(cost).toBeGreaterThan((details.available as number) + limit)
        expect(details.overage as number).toBeLessThanOrEqual(limit)
        refused.push({ operation: c.operation, cost })
        continue
      }
      expect(answer.data).toMatchObject(c.kind === 'consume' ? { request_id: c.request_id, charged: cost } : { request_id: c.request_id, reserved: cost })
      if (answer.data!.replayed === false) {
        expect(first.has(c.request_id)).toBe(false)
        first.set(c.request_id, answer.data!)
        total += cost
        debt += (answer.data!.overage as number | undefined) ?? 0
        expect(answer.data!.balance_after).toBe((answer.data!.balance_before as number) - cost)
      }
    }
    expect(refused.length).toBeGreaterThan(0)
    const entries = await chargeEntriesPerRequest(org)
    expect(new Set(entries.keys())).toEqual(new Set(first.keys()))
    expect([...entries.values()].every((n) => n === 1)).toBe(true)

    const holds = [...first.values()].filter((a) => a.reserved !== undefined).reduce((sum, a) => sum + (a.reserved as number), 0)
    const books = await expectOverageBooksBalanced(org)
    expect(books).toEqual({ available: 150 - total, overage: debt, held: holds, overage_limit: limit, flag: books.flag })
    expect(debt).toBeGreaterThan(0)
    expect(debt).toBeLessThanOrEqual(limit)
    expect(await maxOverageEver(org)).toBeLessThanOrEqual(limit)

    // Where every credit came from: covering grants, then debt (the last piece), and the books agree.
    const allocations = await allocationsOf(org)
    const used = new Map<string | null, number>([[s, 0], [u, 0], [null, 0]])
    for (const [id, request] of allocations) {
      request.allocations.forEach((piece, i) => {
        if (piece.grant_id === null) expect({ id, debtPieceLast: i === request.allocations.length - 1 }).toEqual({ id, debtPieceLast: true })
        else expect({ id, covers: covering[request.operation]!.includes(piece.grant_id) }).toEqual({ id, covers: true })
        used.set(piece.grant_id, used.get(piece.grant_id)! + piece.amount)
      })
    }
    const states = await grantStates(org)
    expect({ s: states.get(s)!.remaining, u: states.get(u)!.remaining, debt: books.overage }).toEqual({
      s: 60 - used.get(s)!,
      u: 90 - used.get(u)!,
      debt: used.get(null)!,
    })
    // Charges only lower what an operation may use, so every refusal still holds against the end state.
    const room = (operation: string) => covering[operation]!.reduce((sum, g) => sum + states.get(g)!.remaining, 0) - books.overage + limit
    for (const { operation, cost } of refused) expect({ operation, refusedFairly: cost > room(operation) }).toEqual({ operation, refusedFairly: true })

    // Settle the holds one by one: release the even ones, capture 1 of 2 of the odd ones. What
    // comes back of the debt pieces lowers the debt exactly.
    let expectedDebt = books.overage
    let expectedAvailable = books.available
    for (const [id, request] of allocations) {
      if (request.status !== 'held') continue
      const debtPiece = request.allocations.find((p) => p.grant_id === null)?.amount ?? 0
      const n = Number(id.slice(2))
      if (n % 2 === 0) {
        const released = await service.rpc('release_credits', { p_org_id: org, p_request_id: id })
        expect(released.error).toBeNull()
        expectedDebt -= debtPiece
        expectedAvailable += request.reserved
      } else {
        const captured = await service.rpc('capture_credits', { p_org_id: org, p_request_id: id, p_quantity: 1 })
        expect(captured.error).toBeNull()
        expectedDebt -= Math.min(debtPiece, request.reserved / 2)
        expectedAvailable += request.reserved / 2
      }
    }
    const settled = await expectOverageBooksBalanced(org)
    expect(settled).toMatchObject({ available: expectedAvailable, overage: expectedDebt, held: 0 })
  })

  it('(b) grants arriving while parallel charges run into overage repay the debt exactly once', async () => {
    const user = await newUser('repaystorm')
    const org = user.personalOrgId
    const op = await createPrice(1, 'rp')
    await grantScoped(org, 50, { source: 'purchase', externalRef: 'start' })
    const limit = 100
    await setOverageLimit(org, limit)
    const opening = await user.client.rpc('consume_credits', { p_operation: op, p_request_id: 'opening', p_quantity: 120 })
    expect(opening.error).toBeNull()
    expect(opening.data).toMatchObject({ balance_after: -70, overage: 70 })

    const charges = Array.from({ length: 150 }, (_, i) => ({ request_id: `c-${i}`, quantity: 1 + (i % 3) }))
    const grants = Array.from({ length: 12 }, (_, i) => `g-${i}`)
    const service = serviceClient()
    type Sent = { kind: 'charge'; id: string; quantity: number; answer: Answer } | { kind: 'grant'; id: string; answer: Answer }
    const sends: Array<() => Promise<Sent>> = shuffle([
      ...charges.map((c) => async (): Promise<Sent> => ({
        kind: 'charge', id: c.request_id, quantity: c.quantity,
        answer: (await user.client.rpc('consume_credits', { p_operation: op, p_request_id: c.request_id, p_quantity: c.quantity })) as Answer,
      })),
      // Each grant twice (a retried webhook): one credits it, the other replays it.
      ...[...grants, ...grants].map((ref) => async (): Promise<Sent> => ({
        kind: 'grant', id: ref,
        answer: (await service.rpc('grant_credits', { p_org_id: org, p_amount: 20, p_source: 'purchase', p_external_ref: ref })) as Answer,
      })),
    ])
    const results = await Promise.all(sends.map((f) => f()))

    let charged = 0
    const grantAnswers = new Map<string, Array<Record<string, unknown>>>()
    for (const sent of results) {
      if (sent.kind === 'grant') {
        expect(sent.answer.error).toBeNull()
        grantAnswers.set(sent.id, [...(grantAnswers.get(sent.id) ?? []), sent.answer.data!])
        continue
      }
      if (sent.answer.error) {
        expectRpcError(sent.answer, 'PT402', 'insufficient_credits')
        continue
      }
      expect(sent.answer.data).toMatchObject({ charged: sent.quantity, replayed: false })
      charged += sent.quantity
    }
    for (const [ref, pair] of grantAnswers) {
      expect({ ref, ids: new Set(pair.map((a) => a.grant_id)).size, replays: pair.map((a) => a.replayed).sort() }).toEqual({ ref, ids: 1, replays: [false, true] })
    }

    // Every grant: one row, one ledger entry whose overage_delta is minus what it repaid.
    const { rows } = await primaryDb.query<{ external_ref: string; amount: number; remaining: number; overage_repaid: number; entries: number; delta: number; credited: number }>(
      `select g.external_ref, g.amount::int as amount, g.remaining::int as remaining, g.overage_repaid::int as overage_repaid,
              count(l.id)::int as entries, coalesce(sum(l.overage_delta), 0)::int as delta, coalesce(sum(l.amount), 0)::int as credited
       from public.credit_grants g left join public.credit_ledger l on l.grant_id = g.id and l.kind = 'grant'
       where g.org_id = $1 group by g.id order by g.external_ref`,
      [org],
    )
    expect(rows).toHaveLength(13)
    for (const row of rows) expect({ ref: row.external_ref, entries: row.entries, deltaPlusRepaid: row.delta + row.overage_repaid, credited: row.credited }).toEqual({
      ref: row.external_ref, entries: 1, deltaPlusRepaid: 0, credited: row.amount,
    })
    const repaid = rows.reduce((sum, r) => sum + r.overage_repaid, 0)
    // The first grant to take the lock found at least 70 of debt.
    expect(repaid).toBeGreaterThanOrEqual(20)

    const books = await expectOverageBooksBalanced(org)
    expect(books.available).toBe(50 + 12 * 20 - 120 - charged)
    expect(await maxOverageEver(org)).toBeLessThanOrEqual(limit)
    const allocations = await allocationsOf(org)
    const debtPieces = [...allocations.values()].reduce((sum, r) => sum + r.allocations.filter((p) => p.grant_id === null).reduce((a, p) => a + p.amount, 0), 0)
    expect({ debtAccount: books.overage + repaid }).toEqual({ debtAccount: debtPieces })
    const ledger = await ledgerOf(org)
    expect(ledger.sums).toMatchObject({ grant: 50 + 12 * 20, charge: -(120 + charged) })
  })

  it('(c) a batch on scoped credits running into overage: atomic all-or-none (402), per item each on its own', async () => {
    const user = await newUser('ovbatch')
    const org = user.personalOrgId
    const a = await createPrice(10, 'ba')
    const b = await createPrice(1, 'bb')
    const s = (await grantScoped(org, 50, { externalRef: 's', operations: [a], priority: 50 })).grant_id as string
    const u = (await grantScoped(org, 30, { externalRef: 'u', source: 'purchase' })).grant_id as string
    await setOverageLimit(org, 40)

    const refused = (await user.client.rpc('consume_credits_batch', {
      p_items: [{ operation: a, request_id: 'k-0', quantity: 3 }, { operation: b, request_id: 'k-1', quantity: 75 }],
    })) as BatchAnswer
    expect(refused.status).toBe(402)
    expect(expectRpcError(refused, 'PT402', 'insufficient_credits')).toMatchObject({
      required: 105, item: 1, request_id: 'k-1', operation: b, item_required: 75, overage: 0, overage_limit: 40,
    })
    expect(await booksOf(org)).toEqual({ available: 80, overage: 0, held: 0, overage_limit: 40, flag: true })

    const atomic = (await user.client.rpc('consume_credits_batch', {
      p_items: [
        { operation: a, request_id: 'k-2', quantity: 3 },
        { operation: b, request_id: 'k-3', quantity: 20 },
        { operation: a, request_id: 'k-4', quantity: 4 },
        { operation: b, request_id: 'k-5', quantity: 30 },
      ],
    })) as BatchAnswer
    expect(atomic.error).toBeNull()
    expect(atomic.data).toMatchObject({ charged_total: 120, balance_after: -40 })
    expect(atomic.data!.results.map((r) => [r.request_id, r.charged, r.balance_after, r.overage])).toEqual([
      ['k-2', 30, 50, undefined],
      ['k-3', 20, 30, undefined],
      ['k-4', 40, -10, 10],
      ['k-5', 30, -40, 30],
    ])
    const allocations = await allocationsOf(org)
    expect(allocations.get('k-4')!.allocations).toEqual([{ grant_id: s, amount: 20 }, { grant_id: u, amount: 10 }, { grant_id: null, amount: 10 }])
    expect(allocations.get('k-5')!.allocations).toEqual([{ grant_id: null, amount: 30 }])
    expect(await booksOf(org)).toEqual({ available: -40, overage: 40, held: 0, overage_limit: 40, flag: false })

    // The same org after a top-up of 45 (40 repays the debt): per item, items beyond the limit fail alone.
    const topUp = await grantScoped(org, 45, { source: 'purchase', externalRef: 'top-up' })
    expect(topUp).toMatchObject({ remaining: 5, balance_after: 5 })
    const perItem = (await user.client.rpc('consume_credits_batch', {
      p_atomic: false,
      p_items: [
        { operation: b, request_id: 'p-0', quantity: 5 },
        { operation: a, request_id: 'p-1', quantity: 5 },
        { operation: b, request_id: 'p-2', quantity: 41 },
        { operation: b, request_id: 'p-3', quantity: 10 },
      ],
    })) as BatchAnswer
    expect(perItem.error).toBeNull()
    expect(perItem.data).toMatchObject({ charged_total: 15, balance_after: -10 })
    expect(perItem.data!.results[0]).toMatchObject({ request_id: 'p-0', charged: 5, balance_after: 0 })
    expect(perItem.data!.results[1]).toEqual({
      request_id: 'p-1', operation: a, error: 'insufficient_credits', sqlstate: 'PT402',
      details: { required: 50, available: 0, operation: a, quantity: 5, overage: 0, overage_limit: 40 },
    })
    expect(perItem.data!.results[2]).toEqual({
      request_id: 'p-2', operation: b, error: 'insufficient_credits', sqlstate: 'PT402',
      details: { required: 41, available: 0, operation: b, quantity: 41, overage: 0, overage_limit: 40 },
    })
    expect(perItem.data!.results[3]).toMatchObject({ request_id: 'p-3', charged: 10, balance_after: -10, overage: 10 })
    expect(await booksOf(org)).toEqual({ available: -10, overage: 10, held: 0, overage_limit: 40, flag: true })
    await expectOverageBooksBalanced(org)
  })

  it('(c) parallel atomic and per-item batches on scoped credits into overage: each id once, never beyond the limit', async () => {
    const user = await newUser('ovbatchstorm')
    const org = user.personalOrgId
    const a = await createPrice(2, 'ba')
    const b = await createPrice(1, 'bb')
    const price = (operation: string) => (operation === a ? 2 : 1)
    const s = (await grantScoped(org, 100, { externalRef: 's', operations: [a], priority: 50 })).grant_id as string
    const u = (await grantScoped(org, 60, { externalRef: 'u', source: 'purchase' })).grant_id as string
    const limit = 50
    await setOverageLimit(org, limit)
    const covering: Record<string, string[]> = { [a]: [s, u], [b]: [u] }

    const pool: Item[] = Array.from({ length: 150 }, (_, i) => ({
      operation: i % 3 === 0 ? b : a,
      request_id: `bs-${i}`,
      quantity: 1 + (i % 3 === 0 ? i % 5 : i % 3),
    }))
    const batches = Array.from({ length: 12 }, (_, i) => ({ atomic: i % 2 === 0, items: shuffle([...pool]).slice(0, 20) }))
    const answers = await Promise.all(
      batches.map(async (batch) => ({ batch, answer: (await user.client.rpc('consume_credits_batch', { p_items: batch.items, p_atomic: batch.atomic })) as BatchAnswer })),
    )

    const first = new Map<string, number>()
    const refusedItems: Item[] = []
    let total = 0
    for (const { batch, answer } of answers) {
      if (answer.error) {
        // Only an atomic batch fails as a whole, and only for credits.
        expect({ atomic: batch.atomic, status: answer.status }).toEqual({ atomic: true, status: 402 })
        expectRpcError(answer, 'PT402', 'insufficient_credits')
        continue
      }
      let chargedHere = 0
      answer.data!.results.forEach((r, i) => {
        const item = batch.items[i]!
        expect(r.request_id).toBe(item.request_id)
        if (r.error !== undefined) {
          expect({ atomic: batch.atomic, error: r.error, sqlstate: r.sqlstate }).toEqual({ atomic: false, error: 'insufficient_credits', sqlstate: 'PT402' })
          expect(r.details).toMatchObject({ required: price(item.operation) * item.quantity, operation: item.operation, overage_limit: limit })
          refusedItems.push(item)
          return
        }
        expect(r).toMatchObject({ status: 'charged', charged: price(item.operation) * item.quantity })
        if (r.replayed === false) {
          first.set(item.request_id, (first.get(item.request_id) ?? 0) + 1)
          chargedHere += r.charged as number
        }
      })
      expect(answer.data!.charged_total).toBe(chargedHere)
      total += chargedHere
    }
    expect([...first.values()].every((n) => n === 1)).toBe(true)
    const entries = await chargeEntriesPerRequest(org)
    expect(new Set(entries.keys())).toEqual(new Set(first.keys()))
    expect([...entries.values()].every((n) => n === 1)).toBe(true)

    const books = await expectOverageBooksBalanced(org)
    expect(books).toMatchObject({ available: 160 - total, held: 0, overage_limit: limit })
    expect(books.overage).toBeLessThanOrEqual(limit)
    expect(await maxOverageEver(org)).toBeLessThanOrEqual(limit)
    const allocations = await allocationsOf(org)
    let debt = 0
    for (const [id, request] of allocations) {
      request.allocations.forEach((piece, i) => {
        if (piece.grant_id === null) {
          expect({ id, debtPieceLast: i === request.allocations.length - 1 }).toEqual({ id, debtPieceLast: true })
          debt += piece.amount
        } else expect({ id, covers: covering[request.operation]!.includes(piece.grant_id) }).toEqual({ id, covers: true })
      })
    }
    expect(debt).toBe(books.overage)
    expect(debt).toBeGreaterThan(0)
    const states = await grantStates(org)
    const room = (operation: string) => covering[operation]!.reduce((sum, g) => sum + states.get(g)!.remaining, 0) - books.overage + limit
    for (const item of refusedItems) {
      expect({ id: item.request_id, refusedFairly: price(item.operation) * item.quantity > room(item.operation) }).toEqual({ id: item.request_id, refusedFairly: true })
    }
    // A random unused id to be sure the org is still usable or refused by the rule, not broken.
    const probe = (await user.client.rpc('consume_credits', { p_operation: b, p_request_id: `probe-${randomId()}` })) as Answer
    if (probe.error) expect(1).toBeGreaterThan(room(b))
    else expect(1).toBeLessThanOrEqual(room(b))
  })
})
