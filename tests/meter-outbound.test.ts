import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder } from './support/http-recorder.ts'

// Meter backends are configured through set_meter_backend (the outbound URL rule) and reached
// only through the outbound guard: no redirects followed, no internal address contacted even
// for a row that predates the rule. Everything here stays on 127.0.0.1; the "internal" service
// is a local recorder that must never be reached.

let user: TestUser
let internal: Awaited<ReturnType<typeof startRecorder>>
let redirecting: Awaited<ReturnType<typeof startRecorder>>
const suffix = randomUUID().slice(0, 8)
const op = (name: string) => `outbound_${name}_${suffix}`

async function callMeter(operation: string) {
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/meter/${operation}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${user.jwt}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
    body: '{}',
  })
  return { status: res.status, body: await res.json(), charged: res.headers.get('x-credits-charged') }
}

beforeAll(async () => {
  internal = await startRecorder(() => ({ status: 200, body: { secret: 'internal-only' } }))
  redirecting = await startRecorder(() => ({ status: 302, headers: { location: `${internal.url}/admin` } }))
  user = await createUser('meter-outbound')
  for (const name of ['redirect', 'legacy']) {
    await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 2)', [op(name)])
  }
  const grant = await serviceClient().rpc('grant_credits', { p_org_id: user.personalOrgId, p_amount: 100, p_source: 'promotion' })
  expect(grant.error).toBeNull()
})

afterAll(async () => {
  await Promise.all([internal?.close(), redirecting?.close()])
})

it('set_meter_backend applies the outbound URL rule and is for the service role only', async () => {
  const service = serviceClient()
  for (const url of ['https://169.254.169.254/latest/meta-data/', 'https://10.0.0.5/run', 'https://tools.internal/run', 'http://tools.example.com/run']) {
    const { error } = await service.rpc('set_meter_backend', { p_operation: op('refused'), p_url: url })
    expect([url, error?.code, error?.message]).toEqual([url, '22023', 'url_not_allowed'])
  }
  const invalid = await service.rpc('set_meter_backend', { p_operation: op('refused'), p_url: 'not a url' })
  expect([invalid.error?.code, invalid.error?.message]).toEqual(['22023', 'invalid_url'])
  const ok = await service.rpc('set_meter_backend', { p_operation: op('listed'), p_url: 'https://tools.example.com/run', p_timeout_ms: 1500 })
  expect(ok.error).toBeNull()
  expect(ok.data).toMatchObject({ operation: op('listed'), url: 'https://tools.example.com/run', timeout_ms: 1500, enabled: true })

  const listed = await service.from('meter_backends').select('operation, url, enabled').eq('operation', op('listed'))
  expect(listed.data).toEqual([{ operation: op('listed'), url: 'https://tools.example.com/run', enabled: true }])
  const direct = await service.from('meter_backends').insert({ operation: op('direct'), url: 'https://127.0.0.1/' })
  expect(direct.error?.code).toBe('42501')

  const byUser = await user.client.rpc('set_meter_backend', { p_operation: op('user'), p_url: 'https://tools.example.com/run' })
  expect(byUser.error?.code).toBe('42501')
})

it('does not follow a backend\'s redirect: the call fails uncharged and the target is never contacted', async () => {
  const set = await serviceClient().rpc('set_meter_backend', { p_operation: op('redirect'), p_url: `${redirecting.url}/run`, p_timeout_ms: 2000 })
  expect(set.error).toBeNull()
  const res = await callMeter(op('redirect'))
  expect(res).toMatchObject({ status: 502, body: { error: 'backend_invalid_response' }, charged: '0' })
  expect(redirecting.requests).toHaveLength(1)
  expect(internal.requests).toHaveLength(0)
})

it('re-checks stored URLs at delivery: a row written before the rule reaches nothing', async () => {
  // As a row written straight into the table before set_meter_backend existed would be.
  // http://localhost is refused by the rule before any resolution or connection.
  await primaryDb.query('insert into public.meter_backends (operation, url, timeout_ms) values ($1, $2, 2000)', [op('legacy'), `http://localhost:${new URL(internal.url).port}/admin`])
  const res = await callMeter(op('legacy'))
  expect(res).toMatchObject({ status: 502, body: { error: 'backend_unavailable' }, charged: '0' })
  expect(internal.requests).toHaveLength(0)
})
