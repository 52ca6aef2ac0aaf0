import { createHealthHandler, type HealthProbes } from './health.ts'
import { assertEquals } from './testing.ts'

const healthy: HealthProbes = {
  primary: () => Promise.resolve({ replication: { lag_bytes: 0, replay_lag_ms: null } }),
  replica: () => Promise.resolve({ subscribed: true, last_message_age_ms: 12 }),
}

Deno.test('health answers 200 with both databases and replication details', async () => {
  const res = await createHealthHandler(healthy)(new Request('http://fn/health'))
  assertEquals(res.status, 200, 'status')
  const body = await res.json()
  assertEquals(body.status, 'ok', 'body.status')
  assertEquals(body.primary.replication, { lag_bytes: 0, replay_lag_ms: null }, 'replication')
  assertEquals(body.replica.subscribed, true, 'subscribed')
})

Deno.test('health answers 503 naming the unreachable replica', async () => {
  const res = await createHealthHandler({ ...healthy, replica: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), { code: 'ECONNREFUSED' })) })(
    new Request('http://fn/health'),
  )
  assertEquals(res.status, 503, 'status')
  const body = await res.json()
  assertEquals([body.status, body.primary.reachable, body.replica.reachable, body.replica.error], ['degraded', true, false, 'unreachable'], 'body: a class, not the driver\'s text')
})

Deno.test('health answers 503 when the replica is up but not subscribed', async () => {
  const res = await createHealthHandler({ ...healthy, replica: () => Promise.resolve({ subscribed: false, last_message_age_ms: null }) })(
    new Request('http://fn/health'),
  )
  assertEquals(res.status, 503, 'status')
})

Deno.test('health times out a hanging probe instead of hanging itself', async () => {
  const res = await createHealthHandler({ ...healthy, primary: () => new Promise(() => {}) }, 50)(new Request('http://fn/health'))
  const body = await res.json()
  assertEquals([res.status, body.primary.reachable, body.primary.error], [503, false, 'timeout'], 'body')
})
