import { randomUUID } from 'node:crypto'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder } from './support/http-recorder.ts'

// Low-balance alerts (seed 004): one event per threshold of the last grant used, delivered to
// the org's webhook signed per Standard Webhooks (verified here with the same library a
// receiver uses), retried with backoff and the identical body when the webhook fails.

let receiver: Awaited<ReturnType<typeof startRecorder>>
let failing = false
let owner: TestUser
let op: string

const dispatch = async () => {
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/alerts-dispatcher`, { method: 'POST', headers: { authorization: `Bearer ${env.SUPABASE_SERVICE_ROLE_KEY}` } })
  return res.json()
}
const outbox = async () =>
  (await primaryDb.query('select threshold, status, attempts, last_status_code, last_error, next_attempt_at > now() + interval \'20 seconds\' as backing_off from public.credit_alert_outbox where org_id = $1 order by threshold', [owner.personalOrgId])).rows
/** What the receiver's Standard Webhooks library makes of a request (it throws when the signature does not verify). */
const verify = (secret: string, request: { headers: Record<string, unknown>; body: string }) =>
  new Webhook(secret).verify(request.body, request.headers as Record<string, string>) as { type: string; timestamp: string; data: Record<string, unknown> }
const spend = async (quantity: number) => {
  const { error } = await owner.client.rpc('consume_credits', { p_operation: op, p_request_id: randomUUID(), p_quantity: quantity })
  expect(error).toBeNull()
}

beforeAll(async () => {
  receiver = await startRecorder(() => ({ status: failing ? 500 : 204 }))
  owner = await createUser('alerts')
  op = `alert_${randomUUID().slice(0, 8)}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 1)', [op])
})

afterAll(async () => {
  await receiver?.close()
  const { data } = await serviceClient().rpc('reconcile_credits')
  expect(data).toBe(0)
})

it('delivers one signed event per crossed threshold, and retries a failing webhook with backoff and the same body', async () => {
  const webhook = await owner.client.rpc('set_alert_webhook', { p_url: `${receiver.url}/hooks/credits` })
  expect(webhook.error).toBeNull()
  const secret: string = webhook.data.secret
  expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/) // base64 of 32 random bytes
  await serviceClient().rpc('grant_credits', { p_org_id: owner.personalOrgId, p_amount: 200, p_source: 'purchase', p_external_ref: `alerts-${randomUUID()}` })

  await spend(99) // 49.5 % used: nothing yet
  expect(await outbox()).toEqual([])
  await spend(1) // 50 %
  await spend(90) // 95 %: crosses 75 and 90 in one charge
  expect((await outbox()).map((r) => [r.threshold, r.status])).toEqual([[50, 'pending'], [75, 'pending'], [90, 'pending']])

  expect(await dispatch()).toEqual({ claimed: 3, delivered: 3, retrying: 0, failed: 0 })
  expect(receiver.requests).toHaveLength(3)
  const events = await primaryDb.query('select id, threshold from public.credit_alert_outbox where org_id = $1', [owner.personalOrgId])
  for (const request of receiver.requests) {
    const event = verify(secret, request)
    const id = request.headers['webhook-id']
    expect(event).toMatchObject({ type: 'credits.low_balance', data: { org_id: owner.personalOrgId, grant_amount: 200 } })
    expect(events.rows.find((row) => row.id === id)?.threshold).toBe(event.data.threshold_percent)
    expect(request.headers['webhook-attempt']).toBe('1')
  }
  expect(() => verify(`whsec_${Buffer.from('someone else').toString('base64')}`, receiver.requests[0]!)).toThrow()
  expect((await outbox()).every((r) => r.status === 'delivered' && r.last_error === null)).toBe(true)

  failing = true
  await spend(10) // 100 %
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 0, retrying: 1, failed: 0 })
  expect((await outbox()).at(-1)).toEqual({ threshold: 100, status: 'pending', attempts: 1, last_status_code: 500, last_error: 'http_5xx', backing_off: true })
  expect((await dispatch()).claimed).toBe(0) // not due yet

  failing = false
  await primaryDb.query('update public.credit_alert_outbox set next_attempt_at = now() where org_id = $1 and status = $2', [owner.personalOrgId, 'pending'])
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 1, retrying: 0, failed: 0 })
  expect((await outbox()).at(-1)).toMatchObject({ threshold: 100, status: 'delivered', attempts: 2 })

  const [failed, retried] = receiver.requests.slice(-2) as [(typeof receiver.requests)[number], (typeof receiver.requests)[number]]
  expect(retried.body).toBe(failed.body)
  expect(retried.headers['webhook-id']).toBe(failed.headers['webhook-id'])
  expect([failed.headers['webhook-attempt'], retried.headers['webhook-attempt']]).toEqual(['1', '2'])
  expect(verify(secret, retried)).toEqual(verify(secret, failed))
  expect(verify(secret, retried).data).toMatchObject({ threshold_percent: 100, available: 0 })
})

it('lets members read their alerts, and only owners and admins set the webhook', async () => {
  const member = await createUser('alerts-member')
  await primaryDb.query(`insert into public.org_members (org_id, user_id, role) values ($1, $2, 'member')`, [owner.personalOrgId, member.id])
  const denied = await member.client.rpc('set_alert_webhook', { p_url: 'https://example.com/x', p_org_id: owner.personalOrgId })
  expect([denied.error?.code, denied.error?.message]).toEqual(['42501', 'forbidden'])
  const visible = await member.client.from('credit_alert_outbox').select('threshold').eq('org_id', owner.personalOrgId)
  expect(visible.data).toHaveLength(4)
  const secrets = await member.client.from('org_alert_webhooks').select('secret')
  expect(secrets.error?.code).toBe('42501')
  // What members read of deliveries: statuses and outcome classes only.
  const states = await member.client.from('credit_alert_outbox').select('status, last_status_code, last_error').eq('org_id', owner.personalOrgId)
  expect(states.data?.map((row) => row.last_error).filter((error) => error !== null)).toEqual([])
  expect(states.data?.map((row) => row.status)).toEqual(['delivered', 'delivered', 'delivered', 'delivered'])
})
