import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type CreditAlert, creditAlertReceiver } from './examples/credit-alert-receiver.ts'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder } from './support/http-recorder.ts'

// Low-balance alerts: one event per threshold of the last grant used, delivered to
// the org's webhook signed per Standard Webhooks (verified here with the same library a
// receiver uses), retried with backoff and the identical body when the webhook fails.
// The dispatcher serves every org at once: every test that dispatches alerts lives in this
// one file (files run in parallel), and each leaves none of its events pending.

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

  expect(await dispatch()).toEqual({ claimed: 3, delivered: 3, retrying: 0, failed: 0, errors: 0 })
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
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 0, retrying: 1, failed: 0, errors: 0 })
  expect((await outbox()).at(-1)).toEqual({ threshold: 100, status: 'pending', attempts: 1, last_status_code: 500, last_error: 'http_5xx', backing_off: true })
  expect((await dispatch()).claimed).toBe(0) // not due yet

  failing = false
  await primaryDb.query('update public.credit_alert_outbox set next_attempt_at = now() where org_id = $1 and status = $2', [owner.personalOrgId, 'pending'])
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 1, retrying: 0, failed: 0, errors: 0 })
  expect((await outbox()).at(-1)).toMatchObject({ threshold: 100, status: 'delivered', attempts: 2 })

  const [failed, retried] = receiver.requests.slice(-2) as [(typeof receiver.requests)[number], (typeof receiver.requests)[number]]
  expect(retried.body).toBe(failed.body)
  expect(retried.headers['webhook-id']).toBe(failed.headers['webhook-id'])
  expect([failed.headers['webhook-attempt'], retried.headers['webhook-attempt']]).toEqual(['1', '2'])
  expect(verify(secret, retried)).toEqual(verify(secret, failed))
  expect(verify(secret, retried).data).toMatchObject({ threshold_percent: 100, available: 0 })

  // The README's receiver accepts every real delivery and refuses a tampered one.
  const seen: Array<[string, CreditAlert]> = []
  const receive = creditAlertReceiver(secret, async (alert, id) => void seen.push([id, alert]))
  const asFetchRequest = (request: (typeof receiver.requests)[number], body = request.body) =>
    new Request(`${receiver.url}${request.path}`, { method: 'POST', headers: request.headers as Record<string, string>, body })
  for (const request of receiver.requests) expect((await receive(asFetchRequest(request))).status).toBe(204)
  expect(seen.map(([id]) => id)).toEqual(receiver.requests.map((request) => request.headers['webhook-id']))
  expect(seen.at(-1)?.[1]).toMatchObject({ type: 'credits.low_balance', data: { threshold_percent: 100 } })
  expect((await receive(asFetchRequest(retried, retried.body.replace('"available":0', '"available":9')))).status).toBe(400)
})

it('the README shows the alert receiver example verbatim', () => {
  const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  expect(readme).toContain('```ts\n' + fs.readFileSync(new URL('./examples/credit-alert-receiver.ts', import.meta.url), 'utf8') + '```')
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

// Regression: SSRF through alert webhooks. An org owner could point the webhook at internal
// addresses (loopback, private ranges, cloud metadata), the dispatcher followed redirects, and
// the raw network error text landed in credit_alert_outbox where every member reads it.
// Nothing here sends a packet beyond 127.0.0.1: refusals are asserted at configuration time.
describe('SSRF through alert webhooks', () => {
  let prober: TestUser
  let probed: TestUser
  let internalService: Awaited<ReturnType<typeof startRecorder>>
  let redirector: Awaited<ReturnType<typeof startRecorder>>
  let ssrfOp: string

  /** A fresh grant of 100 becomes the alerts' reference; spending down to 50 queues its 50 % alert. */
  async function queueOneAlert() {
    const grant = await serviceClient().rpc('grant_credits', { p_org_id: prober.personalOrgId, p_amount: 100, p_source: 'purchase', p_external_ref: `ssrf-${randomUUID()}` })
    expect(grant.error).toBeNull()
    const { rows } = await primaryDb.query('select available from public.credit_balances where org_id = $1', [prober.personalOrgId])
    const spend = await prober.client.rpc('consume_credits', { p_operation: ssrfOp, p_request_id: randomUUID(), p_quantity: Number(rows[0].available) - 50 })
    expect(spend.error).toBeNull()
  }

  beforeAll(async () => {
    internalService = await startRecorder(() => ({ status: 200, body: { secret: 'internal-only' } }))
    redirector = await startRecorder(() => ({ status: 302, headers: { location: `${internalService.url}/latest/meta-data/` } }))
    prober = await createUser('ssrf-owner')
    probed = await createUser('ssrf-member')
    await primaryDb.query(`insert into public.org_members (org_id, user_id, role) values ($1, $2, 'member')`, [prober.personalOrgId, probed.id])
    ssrfOp = `ssrf_${randomUUID().slice(0, 8)}`
    await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 1)', [ssrfOp])
  })

  afterAll(async () => {
    await Promise.all([internalService?.close(), redirector?.close()])
    // Leave nothing pending for a later dispatch to retry.
    await primaryDb.query(`update public.credit_alert_outbox set status = 'failed' where org_id = $1 and status = 'pending'`, [prober?.personalOrgId])
  })

  it('refuses internal webhook URLs at configuration time, in any spelling', async () => {
    const refused = [
      'https://169.254.169.254/latest/meta-data/',
      'https://metadata.google.internal/computeMetadata/v1/',
      'https://10.0.0.1/hook',
      'https://192.168.1.10/hook',
      'https://[::1]/hook',
      'https://[::ffff:127.0.0.1]/hook',
      'https://0x7f.1/hook',
      'https://2130706433/hook',
      'https://localhost/hook',
      'https://api.localhost/hook',
      'http://example.com/hook',
    ]
    for (const url of refused) {
      const { error } = await prober.client.rpc('set_alert_webhook', { p_url: url })
      expect([url, error?.code, error?.message]).toEqual([url, '22023', 'url_not_allowed'])
    }
    const stored = await primaryDb.query('select 1 from public.org_alert_webhooks where org_id = $1', [prober.personalOrgId])
    expect(stored.rowCount).toBe(0)
  })

  it('does not follow a redirect to an internal address, and records only the outcome class', async () => {
    const set = await prober.client.rpc('set_alert_webhook', { p_url: `${redirector.url}/hook` })
    expect(set.error).toBeNull()
    await queueOneAlert()
    expect(await dispatch()).toMatchObject({ claimed: 1, delivered: 0 })
    expect(redirector.requests).toHaveLength(1)
    expect(internalService.requests).toHaveLength(0)
    const seen = await probed.client.from('credit_alert_outbox').select('status, last_error').eq('org_id', prober.personalOrgId)
    expect(seen.error).toBeNull()
    expect(seen.data).toEqual([{ status: 'pending', last_error: 'redirect_refused' }])
  })

  it('shows members a class, never the raw network error', async () => {
    await primaryDb.query(`update public.credit_alert_outbox set status = 'failed' where org_id = $1`, [prober.personalOrgId])
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    const set = await prober.client.rpc('set_alert_webhook', { p_url: 'http://127.0.0.1:9/hook' })
    expect(set.error).toBeNull()
    await queueOneAlert()
    expect(await dispatch()).toMatchObject({ claimed: 1, delivered: 0 })
    const seen = await probed.client.from('credit_alert_outbox').select('status, last_error').eq('org_id', prober.personalOrgId).eq('status', 'pending')
    expect(seen.data).toEqual([{ status: 'pending', last_error: 'connection_failed' }])
  })
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

  expect(await dispatch()).toEqual({ claimed: 0, delivered: 0, retrying: 0, failed: 0, errors: 0 })
  expect(deliveredTo()).toEqual([])
  expect((await primaryDb.query('select threshold, status, cancel_reason from public.credit_alert_outbox where org_id = $1', [org])).rows).toEqual([
    { threshold: 50, status: 'cancelled', cancel_reason: 'balance_recovered' },
  ])

  // Spending for real crosses 50 % again: a new event, delivered.
  const { error } = await user.client.rpc('consume_credits', { p_operation: op, p_request_id: randomUUID(), p_quantity: 100 })
  expect(error).toBeNull()
  expect(await dispatch()).toEqual({ claimed: 1, delivered: 1, retrying: 0, failed: 0, errors: 0 })
  expect(deliveredTo()).toHaveLength(1)
  expect(JSON.parse(deliveredTo()[0]!.body)).toMatchObject({ type: 'credits.low_balance', data: { org_id: org, threshold_percent: 50, available: 100 } })
  expect((await rows()).map((r) => [r.threshold, r.status])).toEqual([[50, 'cancelled'], [50, 'delivered']])
})
