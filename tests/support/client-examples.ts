import { expect, it } from 'vitest'
import type { ExampleName } from '../../packages/client/scripts/run-example.ts'
import { createNodeSupabaseClient } from '../../packages/client/examples/node-client.ts'
import { patientClient } from '../../packages/client/examples/retries.ts'
import { env } from './env.ts'
import { balanceOf, createPrice, expectBooksBalanced, expectReconciled, grantCredits, requestOf, userTracker } from './credits.ts'

/**
 * Runs one README example (packages/client/scripts/run-example.ts) and answers its result as
 * JSON would carry it: in-process on the source, or with plain `node` where the packed
 * tarball is installed.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RunExample = (name: ExampleName, args: unknown[]) => Promise<any>

/**
 * The README examples against the stack under test, each with what it must have done: the same
 * checks for the source (tests/client-examples.test.ts) and for the installed package at both
 * ends of the supabase-js range (tests/client-package.test.ts).
 */
export function exampleTests(run: RunExample, { timeout = 30_000 } = {}): void {
  const { orgs, newUser } = userTracker()

  it('examples/user.ts and examples/node-client.ts', { timeout }, async () => {
    const user = await newUser('example-user')
    const operation = await createPrice(3, 'cex')
    await grantCredits(user.personalOrgId, 40)

    const out = await run('user', [env.SUPABASE_URL, env.SUPABASE_ANON_KEY, user.jwt, operation])
    expect(out.personal).toMatchObject({ orgId: user.personalOrgId, isPersonal: true, role: 'owner' })
    expect(out.before).toMatchObject({ available: 40, held: 0 })
    expect(out.charge).toMatchObject({ charged: 6, balanceAfter: 34, replayed: false })
    expect(out.replay).toEqual({ ...out.charge, replayed: true })
    expect(out.entries.map((e: { kind: string; amount: number }) => [e.kind, e.amount])).toEqual([['charge', -6], ['grant', 40]])
    expect(out.stats).toMatchObject({ totalCalls: 1, totalCreditsUsed: 6 })
    expect(out.grants.map((g: { remaining: number }) => g.remaining)).toEqual([34])
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 34, held: 0 })

    // A ledger longer than one page (the example pages by 10).
    const busy = await newUser('example-pager')
    await grantCredits(busy.personalOrgId, 100)
    const tollgate = patientClient(createNodeSupabaseClient(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, busy.jwt))
    for (let i = 0; i < 12; i++) await tollgate.consume({ operation })
    const long = await run('user', [env.SUPABASE_URL, env.SUPABASE_ANON_KEY, busy.jwt, operation])
    expect(long.entries).toHaveLength(14)
    expect(new Set(long.entries.map((e: { id: number }) => e.id)).size).toBe(14)
  })

  it('examples/server.ts', { timeout }, async () => {
    const user = await newUser('example-server')
    const org = user.personalOrgId
    const operation = await createPrice(10, 'cex')

    const out = await run('server', [env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY, org, user.id, operation])
    expect(out.topUp).toMatchObject({ amount: 500, status: 'active', balanceAfter: 500, replayed: false })
    expect(out.hold).toMatchObject({ status: 'held', reserved: 30, balanceAfter: 470 })
    expect(out.captured).toMatchObject({ status: 'captured', charged: 20, balanceAfter: 480 })
    expect(out.refund).toMatchObject({ status: 'refunded', refunded: 20, balanceAfter: 500 })
    expect(await requestOf(org, out.hold.requestId)).toMatchObject({ status: 'refunded', latency_ms: 120 })
    expect(await expectBooksBalanced(org)).toEqual({ available: 500, held: 0 })
  })

  it('examples/with-credits.ts', { timeout }, async () => {
    const user = await newUser('example-metered')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'cex')
    await grantCredits(org, 10)

    const out = await run('withCredits', [env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY, org, user.id, operation])
    expect(out.ok.result).toBe('A long article about')
    expect(out.ok.charge).toMatchObject({ status: 'captured', charged: 2 })
    expect(await requestOf(org, out.ok.charge.requestId)).toMatchObject({ success: true, backend_error: false })
    expect(out.outcomes).toEqual(['charged: empty_input', 'not charged: model backend unavailable'])
    // Success and the user's mistake were charged; the backend failure was not.
    expect(await expectBooksBalanced(org)).toEqual({ available: 6, held: 0 })
  })

  it('examples/errors.ts', { timeout }, async () => {
    const user = await newUser('example-errors')
    const operation = await createPrice(3, 'cex')
    await grantCredits(user.personalOrgId, 5)
    const errors = (op: string, quantity: number, url = env.SUPABASE_URL) => run('errors', [url, env.SUPABASE_ANON_KEY, user.jwt, op, quantity])

    expect(await errors(operation, 1)).toBe('charged 3')
    expect(await errors(operation, 5)).toBe('top up: need 15, have 2')
    expect(await errors('no_such_operation', 1)).toBe('no price for no_such_operation')
    expect(await errors(operation, 0)).toBe('bad input: invalid_quantity')
    expect(await errors(operation, 1, 'http://127.0.0.1:9')).toBe('offline: try again later (same request id)')
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 2, held: 0 })
  })

  it('examples/retries.ts', { timeout }, async () => {
    const user = await newUser('example-retries')
    await grantCredits(user.personalOrgId, 7)

    const out = await run('retries', [env.SUPABASE_URL, env.SUPABASE_ANON_KEY, user.jwt])
    expect(out.balance).toMatchObject({ available: 7 })
    expect(out.balanceCalls).toBe(3)
    expect(out.lines.map((l: string) => l.replace(/in \d+ ms/, 'in N ms'))).toEqual([
      'get_credit_balance: retry 1 in N ms (network_error, HTTP 0)',
      'get_credit_balance: retry 2 in N ms (network_error, HTTP 503)',
    ])
  })

  it('leaves the books balanced', { timeout }, async () => {
    await expectReconciled(orgs)
  })
}
