import { createHmac, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder } from './support/http-recorder.ts'

// Low-balance alerts (seed 004): one event per threshold of the last grant used, delivered to
// the org's webhook with an HMAC signature, retried with backoff when the webhook fails.

let receiver: Awaited<ReturnType<typeof startRecorder>>
let failing = false
let owner: TestUser
let op: string

const dispatch = async () => {
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/alerts-dispatcher`, { method: 'POST', headers: { authorization: `Bearer ${env.SUPABASE_SERVICE_ROLE_KEY}` } })
  return res.json()
}
const outbox = async () =>
  (await primaryDb.query('select threshold, status, attempts, next_attempt_at > now() + interval \'20 seconds\' as backing_off from public.credit_alert_outbox where org_id = $1 order by threshold', [owner.personalOrgId])).rows
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

it('delivers one signed event per crossed threshold, and retries a failing webhook with backoff', async () => {
  const webhook = await owner.client.rpc('set_alert_webhook', { p_url: `${receiver.url}/hooks/credits` })
  expect(webhook.error).toBeNull()
  const secret: string = webhook.data.secret
  expect(secret).toMatch(/^whsec_[0-9a-f]{48}$/)
  await serviceClient().rpc('grant_credits', { p_org_id: owner.personalOrgId, p_amount: 200, p_source: 'purchase', p_external_ref: `alerts-${randomUUID()}` })

  await spend(99) // 49.5 % used: nothing yet
  expect(await outbox()).toEqual([])
  await spend(1) // 50 %
  await spend(90) // 95 %: crosses 75 and 90 in one charge
  expect((await outbox()).map((r) => [r.threshold, r.status])).toEqual([[50, 'pending'], [75, 'pending'], [90, 'pending']])

  expect(await dispatch()).toEqual({ claimed: 3, delivered: 3, retrying: 0, failed: 0 })
  expect(receiver.requests).toHaveLength(3)
  for (const request of receiver.requests) {
    const [t, v1] = String(request.headers['x-tollgate-signature']).split(',').map((part) => part.split('=')[1])
    expect(v1).toBe(createHmac('sha256', secret).update(`${t}.${request.body}`).digest('hex'))
    expect(JSON.parse(request.body)).toMatchObject({ type: 'credits.low_balance', org_id: owner.personalOrgId, grant_amount: 200 })
  }
  expect((await outbox()).every((r) => r.status === 'delivered')).toBe(true)

  failing = true
  await spend(10) // 100 %
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 0, retrying: 1, failed: 0 })
  expect((await outbox()).at(-1)).toEqual({ threshold: 100, status: 'pending', attempts: 1, backing_off: true })
  expect((await dispatch()).claimed).toBe(0) // not due yet

  failing = false
  await primaryDb.query('update public.credit_alert_outbox set next_attempt_at = now() where org_id = $1 and status = $2', [owner.personalOrgId, 'pending'])
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 1, retrying: 0, failed: 0 })
  expect((await outbox()).at(-1)).toMatchObject({ threshold: 100, status: 'delivered', attempts: 2 })
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
})

// Regression: a hold crossed a threshold and queued its alert; the backend failed and the hold
// was released (balance back where it was), yet the alert went out.
it('cancels an alert queued by a hold that was released, and alerts again on a real crossing', async () => {
  const user = await createUser('alerts-hold')
  const org = user.personalOrgId
  expect((await user.client.rpc('set_alert_webhook', { p_url: `${receiver.url}/hooks/hold` })).error).toBeNull()
  const service = serviceClient()
  await service.rpc('grant_credits', { p_org_id: org, p_amount: 200, p_source: 'purchase', p_external_ref: `alerts-hold-${randomUUID()}` })
  const rows = async () =>
    (await primaryDb.query('select threshold, status from public.credit_alert_outbox where org_id = $1 order by created_at', [org])).rows
  const deliveredTo = () => receiver.requests.filter((r) => r.path === '/hooks/hold')

  const requestId = randomUUID()
  expect((await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: op, p_request_id: requestId, p_quantity: 120 })).error).toBeNull()
  expect((await rows()).map((r) => [r.threshold, r.status])).toEqual([[50, 'pending']])
  expect((await service.rpc('release_credits', { p_org_id: org, p_request_id: requestId })).error).toBeNull()

  expect(await dispatch()).toEqual({ claimed: 0, delivered: 0, retrying: 0, failed: 0 })
  expect(deliveredTo()).toEqual([])
  expect((await primaryDb.query('select threshold, status, cancel_reason from public.credit_alert_outbox where org_id = $1', [org])).rows).toEqual([
    { threshold: 50, status: 'cancelled', cancel_reason: 'balance_recovered' },
  ])

  // Spending for real crosses 50 % again: a new event, delivered.
  const { error } = await user.client.rpc('consume_credits', { p_operation: op, p_request_id: randomUUID(), p_quantity: 100 })
  expect(error).toBeNull()
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 1, retrying: 0, failed: 0 })
  expect(deliveredTo()).toHaveLength(1)
  expect(JSON.parse(deliveredTo()[0]!.body)).toMatchObject({ type: 'credits.low_balance', org_id: org, threshold_percent: 50, available: 100 })
  expect((await rows()).map((r) => [r.threshold, r.status])).toEqual([[50, 'cancelled'], [50, 'delivered']])
})
