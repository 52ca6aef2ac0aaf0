import { describe, expect, it } from 'vitest'
import { exampleFiles, exampleSource, readmeBlocks, readmeFile } from '../packages/client/scripts/readme-examples.ts'
import { createNodeSupabaseClient } from '../packages/client/examples/node-client.ts'
import { errorsExample } from '../packages/client/examples/errors.ts'
import { patientClient } from '../packages/client/examples/retries.ts'
import { serverExample } from '../packages/client/examples/server.ts'
import { userExample } from '../packages/client/examples/user.ts'
import { withCreditsExample } from '../packages/client/examples/with-credits.ts'
import { env } from './support/env.ts'
import { balanceOf, createPrice, expectBooksBalanced, expectReconciled, grantCredits, requestOf, userTracker } from './support/credits.ts'
import { clientWithFetch, faultyFetch } from './client-helpers.ts'
import fs from 'node:fs'

// packages/client/README.md shows packages/client/examples/*.ts verbatim; each example runs here
// against the stack under test, so the documentation cannot rot.
describe('@tollgate/client README examples', () => {
  const { orgs, newUser } = userTracker()

  it('the README shows every example file, unchanged', () => {
    const blocks = readmeBlocks(fs.readFileSync(readmeFile, 'utf8'))
    expect(blocks.map((b) => b.file).sort()).toEqual(exampleFiles())
    for (const block of blocks) {
      if (block.code !== exampleSource(block.file)) {
        expect.fail(`README block for ${block.file} differs from the file: run \`npx tsx packages/client/scripts/readme-examples.ts\``)
      }
    }
    expect(exampleFiles()).toEqual([
      'examples/errors.ts',
      'examples/node-client.ts',
      'examples/retries.ts',
      'examples/server.ts',
      'examples/user.ts',
      'examples/with-credits.ts',
    ])
  })

  it('examples/user.ts and examples/node-client.ts', async () => {
    const user = await newUser('example-user')
    const operation = await createPrice(3, 'cex')
    await grantCredits(user.personalOrgId, 40)

    const out = await userExample(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, user.jwt, operation)
    expect(out.personal).toMatchObject({ orgId: user.personalOrgId, isPersonal: true, role: 'owner' })
    expect(out.before).toMatchObject({ available: 40, held: 0 })
    expect(out.charge).toMatchObject({ charged: 6, balanceAfter: 34, replayed: false })
    expect(out.replay).toEqual({ ...out.charge, replayed: true })
    expect(out.entries.map((e) => [e.kind, e.amount])).toEqual([['charge', -6], ['grant', 40]])
    expect(out.stats).toMatchObject({ totalCalls: 1, totalCreditsUsed: 6 })
    expect(out.grants.map((g) => g.remaining)).toEqual([34])
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 34, held: 0 })

    // A ledger longer than one page (the example pages by 10).
    const busy = await newUser('example-pager')
    await grantCredits(busy.personalOrgId, 100)
    const tollgate = patientClient(createNodeSupabaseClient(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, busy.jwt))
    for (let i = 0; i < 12; i++) await tollgate.consume({ operation })
    const long = await userExample(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, busy.jwt, operation)
    expect(long.entries).toHaveLength(14)
    expect(new Set(long.entries.map((e) => e.id)).size).toBe(14)
  })

  it('examples/server.ts', async () => {
    const user = await newUser('example-server')
    const org = user.personalOrgId
    const operation = await createPrice(10, 'cex')

    const out = await serverExample(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY, org, user.id, operation)
    expect(out.topUp).toMatchObject({ amount: 500, status: 'active', balanceAfter: 500, replayed: false })
    expect(out.hold).toMatchObject({ status: 'held', reserved: 30, balanceAfter: 470 })
    expect(out.captured).toMatchObject({ status: 'captured', charged: 20, balanceAfter: 480 })
    expect(out.refund).toMatchObject({ status: 'refunded', refunded: 20, balanceAfter: 500 })
    expect(await requestOf(org, out.hold.requestId)).toMatchObject({ status: 'refunded', latency_ms: 120 })
    expect(await expectBooksBalanced(org)).toEqual({ available: 500, held: 0 })
  })

  it('examples/with-credits.ts', async () => {
    const user = await newUser('example-metered')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'cex')
    await grantCredits(org, 10)

    const out = await withCreditsExample(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY, org, user.id, operation)
    expect(out.ok.result).toBe('A long article about')
    expect(out.ok.charge).toMatchObject({ status: 'captured', charged: 2 })
    expect(await requestOf(org, out.ok.charge.requestId)).toMatchObject({ success: true, backend_error: false })
    expect(out.outcomes).toEqual(['charged: empty_input', 'not charged: model backend unavailable'])
    // Success and the user's mistake were charged; the backend failure was not.
    expect(await expectBooksBalanced(org)).toEqual({ available: 6, held: 0 })
  })

  it('examples/errors.ts', async () => {
    const user = await newUser('example-errors')
    const operation = await createPrice(3, 'cex')
    await grantCredits(user.personalOrgId, 5)
    const run = (op: string, quantity: number, url = env.SUPABASE_URL) => errorsExample(url, env.SUPABASE_ANON_KEY, user.jwt, op, quantity)

    expect(await run(operation, 1)).toBe('charged 3')
    expect(await run(operation, 5)).toBe('top up: need 15, have 2')
    expect(await run('no_such_operation', 1)).toBe('no price for no_such_operation')
    expect(await run(operation, 0)).toBe('bad input: invalid_quantity')
    expect(await run(operation, 1, 'http://127.0.0.1:9')).toBe('offline: try again later (same request id)')
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 2, held: 0 })
  })

  it('examples/retries.ts', async () => {
    const user = await newUser('example-retries')
    await grantCredits(user.personalOrgId, 7)
    const net = faultyFetch('/rpc/get_credit_balance', ['drop-before', 503])
    const lines: string[] = []
    const tollgate = patientClient(clientWithFetch(user.jwt, net.fetch), (line) => lines.push(line))

    expect(await tollgate.balance()).toMatchObject({ available: 7 })
    expect(lines.map((l) => l.replace(/in \d+ ms/, 'in N ms'))).toEqual([
      'get_credit_balance: retry 1 in N ms (network_error, HTTP 0)',
      'get_credit_balance: retry 2 in N ms (network_error, HTTP 503)',
    ])
  })

  it('leaves the books balanced', async () => {
    await expectReconciled(orgs)
  })
})
