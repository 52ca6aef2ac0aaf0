import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder } from './support/http-recorder.ts'

// Regression for SSRF through alert webhooks: an org owner could point the webhook at internal
// addresses (loopback, private ranges, cloud metadata), the dispatcher followed redirects, and
// the raw network error text landed in credit_alert_outbox where every member reads it.
// Nothing here sends a packet beyond 127.0.0.1: refusals are asserted at configuration time.

let owner: TestUser
let member: TestUser
let internal: Awaited<ReturnType<typeof startRecorder>>
let redirecting: Awaited<ReturnType<typeof startRecorder>>
let op: string

const dispatch = async () => {
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/alerts-dispatcher`, { method: 'POST', headers: { authorization: `Bearer ${env.SUPABASE_SERVICE_ROLE_KEY}` } })
  expect(res.status).toBe(200)
  return res.json()
}

/** A fresh grant of 100 becomes the alerts' reference; spending down to 50 queues its 50 % alert. */
async function queueOneAlert() {
  const grant = await serviceClient().rpc('grant_credits', { p_org_id: owner.personalOrgId, p_amount: 100, p_source: 'purchase', p_external_ref: `ssrf-${randomUUID()}` })
  expect(grant.error).toBeNull()
  const { rows } = await primaryDb.query('select available from public.credit_balances where org_id = $1', [owner.personalOrgId])
  const spend = await owner.client.rpc('consume_credits', { p_operation: op, p_request_id: randomUUID(), p_quantity: Number(rows[0].available) - 50 })
  expect(spend.error).toBeNull()
}

beforeAll(async () => {
  internal = await startRecorder(() => ({ status: 200, body: { secret: 'internal-only' } }))
  redirecting = await startRecorder(() => ({ status: 302, headers: { location: `${internal.url}/latest/meta-data/` } }))
  owner = await createUser('ssrf-owner')
  member = await createUser('ssrf-member')
  await primaryDb.query(`insert into public.org_members (org_id, user_id, role) values ($1, $2, 'member')`, [owner.personalOrgId, member.id])
  op = `ssrf_${randomUUID().slice(0, 8)}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 1)', [op])
})

afterAll(async () => {
  await Promise.all([internal?.close(), redirecting?.close()])
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
    const { error } = await owner.client.rpc('set_alert_webhook', { p_url: url })
    expect([url, error?.code, error?.message]).toEqual([url, '22023', 'url_not_allowed'])
  }
  const stored = await primaryDb.query('select 1 from public.org_alert_webhooks where org_id = $1', [owner.personalOrgId])
  expect(stored.rowCount).toBe(0)
})

it('does not follow a redirect to an internal address, and records only the outcome class', async () => {
  const set = await owner.client.rpc('set_alert_webhook', { p_url: `${redirecting.url}/hook` })
  expect(set.error).toBeNull()
  await queueOneAlert()
  expect(await dispatch()).toMatchObject({ claimed: 1, delivered: 0 })
  expect(redirecting.requests).toHaveLength(1)
  expect(internal.requests).toHaveLength(0)
  const seen = await member.client.from('credit_alert_outbox').select('status, last_error').eq('org_id', owner.personalOrgId)
  expect(seen.error).toBeNull()
  expect(seen.data).toEqual([{ status: 'pending', last_error: 'redirect_refused' }])
})

it('shows members a class, never the raw network error', async () => {
  await primaryDb.query(`update public.credit_alert_outbox set status = 'failed' where org_id = $1`, [owner.personalOrgId])
  // Port 9 (discard) on loopback: nothing listens, the connection is refused.
  const set = await owner.client.rpc('set_alert_webhook', { p_url: 'http://127.0.0.1:9/hook' })
  expect(set.error).toBeNull()
  await queueOneAlert()
  expect(await dispatch()).toMatchObject({ claimed: 1, delivered: 0 })
  const seen = await member.client.from('credit_alert_outbox').select('status, last_error').eq('org_id', owner.personalOrgId).eq('status', 'pending')
  expect(seen.data).toEqual([{ status: 'pending', last_error: 'connection_failed' }])
})
