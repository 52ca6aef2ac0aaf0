import { describe, expect, it } from 'vitest'
import { createTollgateClient, InsufficientCreditsError, NetworkError, type RetryEvent } from '@tollgate/client'
import { createTollgateServer } from '@tollgate/client/server'
import { backoffMs, retryPolicy } from '../packages/client/src/retry.ts'
import { createUser, type TestUser } from './support/clients.ts'
import { env } from './support/env.ts'
import { balanceOf, createPrice, expectReconciled, grantCredits, ledgerOfRequest, randomId, requestCountOf, requestOf } from './support/credits.ts'
import { primaryDb } from './support/db.ts'
import { clientWithFetch, fastRetries, faultyFetch, type Fault } from './client-helpers.ts'

/** A user with `credits`, a price, and a Tollgate client whose fetch applies `faults` to one RPC or table. */
async function arrange(label: string, credits: number, price: number, path: string, faults: Fault[]) {
  const user = await createUser(label)
  const operation = await createPrice(price, 'cretry')
  if (credits > 0) await grantCredits(user.personalOrgId, credits)
  const net = faultyFetch(path, faults)
  const retries: RetryEvent[] = []
  const tollgate = createTollgateClient(clientWithFetch(user.jwt, net.fetch), { ...fastRetries, onRetry: (event) => retries.push(event) })
  return { user, operation, net, retries, tollgate }
}

const requestIdsOf = (sent: Array<{ body: unknown }>) => sent.map((s) => (s.body as { p_request_id?: string }).p_request_id)

// Network failures and 502/503/504 are retried with the same request id; the RPCs' idempotency
// makes that safe, so a lost answer never charges twice. Business errors are never retried.
describe('@tollgate/client retries', () => {
  const orgs: string[] = []
  const track = (user: TestUser) => orgs.push(user.personalOrgId)

  it('answer lost after the server charged: retried with the same id, charged once, replayed', async () => {
    const { user, operation, net, retries, tollgate } = await arrange('lost-answer', 100, 7, '/rpc/consume_credits', ['drop-after'])
    track(user)
    const charge = await tollgate.consume({ operation, quantity: 2, metadata: { attempt: 'any' } })

    expect(net.sent).toHaveLength(2)
    expect(requestIdsOf(net.sent)).toEqual([charge.requestId, charge.requestId])
    expect(net.sent[1]!.body).toEqual(net.sent[0]!.body) // the very same call
    expect(retries.map((r) => [r.call, r.attempt, r.error.constructor.name, r.error.status])).toEqual([['consume_credits', 1, 'NetworkError', 0]])
    // The retry found the first charge: the answer is the first one, marked replayed.
    expect(charge).toMatchObject({ charged: 14, balanceBefore: 100, balanceAfter: 86, replayed: true, status: 'charged' })
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 86, held: 0 })
    expect(await ledgerOfRequest(user.personalOrgId, charge.requestId)).toEqual([['charge', -14, 0]])
    expect(await requestCountOf(user.personalOrgId)).toBe(1)
  })

  it('connection refused before sending: retried with the same id, charged once, not a replay', async () => {
    const { user, operation, net, retries, tollgate } = await arrange('refused', 100, 7, '/rpc/consume_credits', ['drop-before', 'drop-before'])
    track(user)
    const requestId = `job-${randomId()}`
    const charge = await tollgate.consume({ operation, requestId })

    expect(requestIdsOf(net.sent)).toEqual([requestId, requestId, requestId])
    expect(retries.map((r) => r.attempt)).toEqual([1, 2])
    expect(charge).toMatchObject({ requestId, charged: 7, balanceAfter: 93, replayed: false })
    expect(await ledgerOfRequest(user.personalOrgId, requestId)).toEqual([['charge', -7, 0]])
    expect(await requestCountOf(user.personalOrgId)).toBe(1)
  })

  it('502, 503 and 504 from the gateway after the server charged: retried, charged once', async () => {
    const { user, operation, net, retries, tollgate } = await arrange('gateway', 100, 5, '/rpc/consume_credits', [502, 503, 504])
    track(user)
    const charge = await tollgate.consume({ operation })
    expect(net.sent).toHaveLength(4)
    expect(new Set(requestIdsOf(net.sent))).toEqual(new Set([charge.requestId]))
    expect(retries.map((r) => r.error.status)).toEqual([502, 503, 504])
    expect(charge).toMatchObject({ charged: 5, balanceAfter: 95, replayed: true })
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 95, held: 0 })
    expect(await requestCountOf(user.personalOrgId)).toBe(1)
  })

  it('gives up after `retries` with a NetworkError; the one charge that got through stays single', async () => {
    const { user, operation, net, retries, tollgate } = await arrange('down', 100, 5, '/rpc/consume_credits', [503, 503, 503, 503, 503])
    track(user)
    const requestId = `job-${randomId()}`
    await expect(tollgate.consume({ operation, requestId })).rejects.toBeInstanceOf(NetworkError)
    expect(net.sent).toHaveLength(fastRetries.retries + 1)
    expect(retries.every((r) => r.delayMs >= fastRetries.baseDelayMs / 2 && r.delayMs <= fastRetries.maxDelayMs)).toBe(true)
    // Each attempt reached the server; the id made every one after the first a replay.
    expect(await ledgerOfRequest(user.personalOrgId, requestId)).toEqual([['charge', -5, 0]])
    // The caller retries later with the same id and gets the first answer.
    const later = await createTollgateClient(user.client).consume({ operation, requestId })
    expect(later).toMatchObject({ charged: 5, balanceAfter: 95, replayed: true })
  })

  it('never retries a business error (402, 409, 404, 400, 403)', async () => {
    const { user, operation, net, retries, tollgate } = await arrange('business', 3, 5, '/rpc/', [])
    track(user)
    const other = await createUser('other')
    track(other)
    await expect(tollgate.consume({ operation })).rejects.toBeInstanceOf(InsufficientCreditsError)
    expect(net.sent).toHaveLength(1)

    const cheap = await createPrice(1, 'cretry')
    const first = await tollgate.consume({ operation: cheap })
    const calls: Array<[number, () => Promise<unknown>]> = [
      [409, () => tollgate.consume({ operation: cheap, quantity: 2, requestId: first.requestId })],
      [404, () => tollgate.consume({ operation: `nope_${randomId()}` })],
      [400, () => tollgate.consume({ operation: cheap, quantity: 0 })],
      [403, () => tollgate.balance(other.personalOrgId)],
    ]
    for (const [status, call] of calls) {
      const before = net.sent.length
      await expect(call()).rejects.toMatchObject({ status, retryable: false })
      expect({ status, requests: net.sent.length - before }).toEqual({ status, requests: 1 })
    }
    expect(retries).toEqual([])
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 2, held: 0 })
  })

  it('retries table reads too (ledger), and turns postgrest-js own GET retries off', async () => {
    const { user, operation, net, retries, tollgate } = await arrange('reader', 10, 1, '/rest/v1/credit_ledger', ['drop-before', 503])
    track(user)
    await tollgate.consume({ operation })
    const started = Date.now()
    const page = await tollgate.ledger({ limit: 10 })
    expect(page.entries.map((e) => e.kind)).toEqual(['charge', 'grant'])
    expect(net.sent).toHaveLength(3)
    expect(retries.map((r) => r.call)).toEqual(['credit_ledger', 'credit_ledger'])
    // postgrest-js would have waited 1 s before its own retry of the 503.
    expect(Date.now() - started).toBeLessThan(900)
  })

  it('server calls: same request id across retries; a grant without a reference is not retried', async () => {
    const user = await createUser('srv')
    track(user)
    const org = user.personalOrgId
    const operation = await createPrice(4, 'cretry')
    const net = faultyFetch('/rest/v1/rpc/', ['drop-after', 'pass', 'drop-after', 'pass', 'drop-after', 'pass'])
    const server = createTollgateServer(clientWithFetch(env.SUPABASE_SERVICE_ROLE_KEY, net.fetch, env.SUPABASE_SERVICE_ROLE_KEY), fastRetries)

    // With a payment reference: retried, credited once.
    const ref = `pi_${randomId()}`
    const grant = await server.grant({ orgId: org, amount: 50, source: 'purchase', externalRef: ref })
    expect(grant).toMatchObject({ amount: 50, replayed: true, balanceAfter: 50 })
    // reserve → lost, retried (same id), capture → lost, retried.
    const hold = await server.reserve({ orgId: org, userId: user.id, operation, quantity: 2 })
    expect(hold).toMatchObject({ status: 'held', reserved: 8, replayed: true })
    const captured = await server.capture({ orgId: org, requestId: hold.requestId, result: { latencyMs: 5 } })
    expect(captured).toMatchObject({ status: 'captured', charged: 8, replayed: true })
    expect(net.sent.map((s) => s.url.split('/rpc/')[1])).toEqual([
      'grant_credits', 'grant_credits', 'reserve_credits', 'reserve_credits', 'capture_credits', 'capture_credits',
    ])
    expect(requestIdsOf(net.sent.slice(2))).toEqual(Array(4).fill(hold.requestId))
    expect(await ledgerOfRequest(org, hold.requestId)).toEqual([['hold', -8, 8], ['capture', 0, -8]])
    expect(await requestOf(org, hold.requestId)).toMatchObject({ status: 'captured', charged: 8, latency_ms: 5 })

    // Without a reference a retry could grant twice: one attempt, and the caller learns it.
    const lone = faultyFetch('/rest/v1/rpc/grant_credits', ['drop-after'])
    const unsafe = createTollgateServer(clientWithFetch(env.SUPABASE_SERVICE_ROLE_KEY, lone.fetch, env.SUPABASE_SERVICE_ROLE_KEY), fastRetries)
    await expect(unsafe.grant({ orgId: org, amount: 10, source: 'promotion' })).rejects.toBeInstanceOf(NetworkError)
    expect(lone.sent).toHaveLength(1)
    const { rows } = await primaryDb.query<{ n: number }>(`select count(*)::int as n from public.credit_grants where org_id = $1 and source = 'promotion'`, [org])
    expect(rows[0]!.n).toBe(1) // it did land, exactly once
    expect(await balanceOf(org)).toEqual({ available: 52, held: 0 })
  })

  it('backoff: exponential, jittered between half and the full step, capped', () => {
    const policy = retryPolicy({ baseDelayMs: 100, maxDelayMs: 2000 })
    expect([0, 1, 2, 3, 4, 5, 9].map((i) => backoffMs(policy, i, () => 0))).toEqual([50, 100, 200, 400, 800, 1000, 1000])
    expect([0, 1, 2, 3, 4, 5, 9].map((i) => backoffMs(policy, i, () => 1))).toEqual([100, 200, 400, 800, 1600, 2000, 2000])
    expect(retryPolicy()).toMatchObject({ retries: 3, baseDelayMs: 100, maxDelayMs: 2000 })
    expect(() => retryPolicy({ retries: -1 })).toThrow(RangeError)
    expect(() => retryPolicy({ baseDelayMs: 500, maxDelayMs: 100 })).toThrow(RangeError)
  })

  it('leaves the books balanced', async () => {
    await expectReconciled(orgs)
  })
})
