import { afterAll, beforeAll, expect, it } from 'vitest'
import { drive, ownStack, scale, sleep, type OwnStack } from './own-stack.ts'

// kill -9 the primary's postmaster in the middle of concurrent charges, restart it, and check
// that what the clients saw acknowledged is exactly what the database kept.

let own: OwnStack
beforeAll(async () => {
  own = await ownStack('crash')
  await own.db.query(`insert into public.credit_prices (operation, credits) values ('crash_op', 1)`)
}, 60_000)
afterAll(async () => own?.close(), 60_000)

it('every acknowledged charge survives a crash, nothing is half-written, reconcile finds nothing', async () => {
  const users = await Promise.all(Array.from({ length: 8 }, () => own.fundedUser(1_000_000)))
  const acknowledged: Array<{ orgId: string; requestId: string }> = []
  const failedCalls: Array<{ user: (typeof users)[number]; requestId: string }> = []
  let failures = 0
  let phase: 'before' | 'down' | 'after' | 'done' = 'before'

  const load = drive(16, () => phase === 'done', async (lane) => {
    const user = users[lane % users.length]!
    const requestId = crypto.randomUUID()
    const { error } = await user.client.rpc('consume_credits', { p_operation: 'crash_op', p_request_id: requestId })
    if (error) {
      failures++
      failedCalls.push({ user, requestId })
    } else acknowledged.push({ orgId: user.orgId, requestId })
  })

  await sleep(scale === 'full' ? 3000 : 1500)
  const beforeCrash = acknowledged.length
  await own.stack.primary.crash()
  phase = 'down'
  await sleep(500)
  await own.stack.primary.start()
  phase = 'after'
  // PostgREST reconnects by itself; keep charging until it has, then a little longer.
  const seen = acknowledged.length
  const deadline = Date.now() + 30_000
  while (acknowledged.length < seen + 50 && Date.now() < deadline) await sleep(50)
  phase = 'done'
  await load

  expect(beforeCrash).toBeGreaterThan(0)
  expect(acknowledged.length).toBeGreaterThan(seen)
  expect(failures).toBeGreaterThan(0)

  const ids = acknowledged.map((a) => a.requestId)
  const kept = await own.db.query<{ n: number }>(
    `select count(*)::int as n from public.credit_requests r
     where r.request_id = any($1) and r.status = 'charged'
       and (select count(*) from public.credit_ledger l where l.org_id = r.org_id and l.request_id = r.request_id and l.kind = 'charge') = 1`,
    [ids],
  )
  expect(kept.rows[0]!.n).toBe(ids.length)

  // Not half-written: for every org, requests, ledger and balance agree exactly.
  for (const user of users) {
    const { rows } = await own.db.query<{ available: string; requests: number; charges: number; ledger_sum: string }>(
      `select b.available,
              (select count(*)::int from public.credit_requests r where r.org_id = b.org_id) as requests,
              (select count(*)::int from public.credit_ledger l where l.org_id = b.org_id and l.kind = 'charge') as charges,
              (select sum(amount) from public.credit_ledger l where l.org_id = b.org_id) as ledger_sum
       from public.credit_balances b where b.org_id = $1`,
      [user.orgId],
    )
    const row = rows[0]!
    expect(row.requests).toBe(row.charges)
    expect(Number(row.available)).toBe(1_000_000 - row.requests)
    expect(Number(row.ledger_sum)).toBe(Number(row.available))
    expect(Number(row.available)).toBeGreaterThanOrEqual(0)
  }
  const reconcile = await own.db.query<{ issues: number }>('select public.reconcile_credits() as issues')
  expect(reconcile.rows[0]!.issues).toBe(0)

  // Retrying every failed call with its own id settles each exactly once: the ones that had
  // committed unseen replay, the others charge now.
  let replays = 0
  let next = 0
  await drive(16, () => next >= failedCalls.length, async () => {
    const { user, requestId } = failedCalls[next++]!
    const { data, error } = await user.client.rpc('consume_credits', { p_operation: 'crash_op', p_request_id: requestId })
    expect(error).toBeNull()
    if (data.replayed) replays++
  })
  const settled = await own.db.query<{ n: number }>('select count(*)::int as n from public.credit_requests where request_id = any($1)', [
    [...ids, ...failedCalls.map((f) => f.requestId)],
  ])
  expect(settled.rows[0]!.n).toBe(ids.length + failedCalls.length)
  expect((await own.db.query<{ issues: number }>('select public.reconcile_credits() as issues')).rows[0]!.issues).toBe(0)
  console.log(`crash: ${acknowledged.length} acknowledged (${beforeCrash} before the kill), ${failures} failed during the outage and were retried (${replays} had committed unseen), 0 lost, 0 double charges, 0 invariant violations`)
}, 120_000)
