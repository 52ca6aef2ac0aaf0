import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { drive, ownStack, scale, sleep, type OwnStack } from './own-stack.ts'

// Restart PostgREST and the replica under load: clients see errors, never wrong balances, and
// the replica catches up so the plugin gate converges.

let own: OwnStack
beforeAll(async () => {
  own = await ownStack('restarts')
  await own.db.query(`insert into public.credit_prices (operation, credits) values ('restart_op', 1)`)
}, 60_000)
afterAll(async () => own?.close(), 60_000)

it('a PostgREST restart under load costs errors, never a wrong balance; retries with the same ids settle everything once', async () => {
  const user = await own.fundedUser(100_000)
  const acknowledged = new Set<string>()
  const failed = new Set<string>()
  let done = false
  const attempt = async (requestId: string) => {
    const { error } = await user.client.rpc('consume_credits', { p_operation: 'restart_op', p_request_id: requestId })
    if (error) failed.add(requestId)
    else {
      acknowledged.add(requestId)
      failed.delete(requestId)
    }
  }
  const load = drive(8, () => done, () => attempt(randomUUID()))
  await sleep(800)
  await own.stack.restartPostgrest({ downMs: scale === 'full' ? 1500 : 500 })
  await sleep(800)
  done = true
  await load
  expect(failed.size).toBeGreaterThan(0)

  const count = async () =>
    (await own.db.query<{ available: string; requests: number }>(
      `select b.available, (select count(*)::int from public.credit_requests r where r.org_id = b.org_id) as requests
       from public.credit_balances b where b.org_id = $1`,
      [user.orgId],
    )).rows[0]!
  // A request cut off mid-flight may have committed without its answer reaching the client,
  // so the database holds at least what was acknowledged — and its books are exact either way.
  const before = await count()
  expect(before.requests).toBeGreaterThanOrEqual(acknowledged.size)
  expect(before.requests).toBeLessThanOrEqual(acknowledged.size + failed.size)
  expect(Number(before.available)).toBe(100_000 - before.requests)

  // The client's answer to an error is a retry with the same id: afterwards every request is
  // charged exactly once.
  const retried = failed.size
  for (const requestId of [...failed]) await attempt(requestId)
  expect(failed.size).toBe(0)
  const after = await count()
  expect(after.requests).toBe(acknowledged.size)
  expect(Number(after.available)).toBe(100_000 - acknowledged.size)
  console.log(`postgrest restart: ${acknowledged.size} requests, ${retried} failed during the restart and were retried, ${before.requests - (acknowledged.size - retried)} of those had committed unseen; every one charged once`)
}, 60_000)

it('the replica catches up after a restart and the gate converges', async () => {
  const user = await own.fundedUser(0)
  const appId = `com.restart${randomUUID().replaceAll('-', '').slice(0, 10)}.app`
  await own.db.query(`insert into public.apps (app_id, org_id, name) values ($1, $2, 'restart')`, [appId, user.orgId])
  const body = JSON.stringify({ app_id: appId, device_id: 'd1', version_name: '1.0.0', version_build: '1', platform: 'ios', plugin_version: '6', is_emulator: false, is_prod: true })
  const status = async () => (await fetch(`${own.stack.env.SUPABASE_URL}/functions/v1/updates`, { method: 'POST', body })).status
  const until = async (want: number, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs
    let got = await status()
    while (got !== want && Date.now() < deadline) {
      await sleep(50)
      got = await status()
    }
    return got
  }
  expect(await until(429)).toBe(429)

  await own.stack.replica.stop()
  // Credits granted while the replica is down: the primary keeps the change for it.
  await own.db.query(`select public.grant_credits($1, 10, 'promotion')`, [user.orgId])
  const whileDown = await fetch(`${own.stack.env.SUPABASE_URL}/functions/v1/updates`, { method: 'POST', body })
  expect([whileDown.status, (await whileDown.json()).error]).toEqual([503, 'replica_unavailable'])
  await own.stack.replica.start()
  expect(await until(200)).toBe(200)
}, 90_000)
