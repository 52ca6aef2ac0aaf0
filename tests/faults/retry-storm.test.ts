import { randomUUID } from 'node:crypto'
import { afterAll, expect, it } from 'vitest'
import { createUser, serviceClient } from '../support/clients.ts'
import { primaryDb } from '../support/db.ts'
import { scale } from './own-stack.ts'

// 1,000 requests, each sent 4 times at once (the original and 3 retries) with the same id:
// each charged exactly once.

afterAll(async () => {
  const { data } = await serviceClient().rpc('reconcile_credits')
  expect(data).toBe(0)
})

it('a retry storm charges every request exactly once', async () => {
  const requests = scale === 'full' ? 1000 : 200
  const price = `storm_${randomUUID().slice(0, 8)}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 3)', [price])
  const user = await createUser('storm')
  await serviceClient().rpc('grant_credits', { p_org_id: user.personalOrgId, p_amount: requests * 3, p_source: 'promotion' })

  const ids = Array.from({ length: requests }, () => randomUUID())
  const calls = ids.flatMap((id) => [id, id, id, id])
  // Shuffle so retries of one id interleave with everything else.
  for (let i = calls.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[calls[i], calls[j]] = [calls[j]!, calls[i]!]
  }
  let next = 0
  const outcomes = { first: 0, replayed: 0, failed: 0 }
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < calls.length) {
        const id = calls[next++]!
        const { data, error } = await user.client.rpc('consume_credits', { p_operation: price, p_request_id: id })
        if (error) outcomes.failed++
        else if (data.replayed) outcomes.replayed++
        else outcomes.first++
      }
    }),
  )

  expect(outcomes).toEqual({ first: requests, replayed: requests * 3, failed: 0 })
  const { rows } = await primaryDb.query<{ available: string; charges: number }>(
    `select b.available, (select count(*)::int from public.credit_ledger l where l.org_id = b.org_id and l.kind = 'charge') as charges
     from public.credit_balances b where b.org_id = $1`,
    [user.personalOrgId],
  )
  expect(rows[0]).toEqual({ available: '0', charges: requests })
  console.log(`retry storm: ${calls.length} calls for ${requests} requests → ${requests} charges, ${requests * 3} replays, 0 double charges`)
}, 120_000)
