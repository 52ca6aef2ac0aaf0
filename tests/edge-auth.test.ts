import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { discoverFunctions, signJwt, startFunctions, type RunningFunction } from '@tollgate/local-stack'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'

// Every edge function authenticates its caller itself. The gateway (ours, like Supabase's)
// lets OPTIONS through unverified for CORS, and a function may be deployed without it, so the
// service-only functions are attacked here both through the gateway and directly.

const service = serviceClient()
const now = () => Math.floor(Date.now() / 1000)

/** An unsigned token claiming service_role, as an attacker would forge it. */
const unsignedServiceRole = () =>
  `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ role: 'service_role', exp: now() + 3600 })).toString('base64url')}.`

let owner: TestUser

/** A pending top-up and pending low-balance alerts: the work a forged call would trigger. */
beforeAll(async () => {
  owner = await createUser('edge-auth')
  const op = `edge_${randomUUID().slice(0, 8)}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 10)', [op])
  expect((await service.rpc('set_org_billing', { p_org_id: owner.personalOrgId, p_stripe_customer_id: 'cus_edgeauth', p_stripe_payment_method_id: 'pm_card_visa' })).error).toBeNull()
  expect((await owner.client.rpc('set_auto_topup', { p_enabled: true, p_threshold: 50, p_amount: 100, p_monthly_cap: 100 })).error).toBeNull()
  expect((await service.rpc('grant_credits', { p_org_id: owner.personalOrgId, p_amount: 100, p_source: 'promotion' })).error).toBeNull()
  expect((await owner.client.rpc('consume_credits', { p_operation: op, p_request_id: randomUUID(), p_quantity: 6 })).error).toBeNull()
  expect(await pendingWork()).toEqual({ topups: [{ status: 'pending', attempts: 0 }], alerts: [{ status: 'pending', attempts: 0 }] })
})

afterAll(async () => {
  expect((await service.rpc('reconcile_credits')).data).toBe(0)
})

async function pendingWork() {
  const topups = await primaryDb.query('select status, attempts from public.credit_topup_requests where org_id = $1', [owner.personalOrgId])
  const alerts = await primaryDb.query('select status, attempts from public.credit_alert_outbox where org_id = $1', [owner.personalOrgId])
  return { topups: topups.rows, alerts: alerts.rows }
}

const untouched = { topups: [{ status: 'pending', attempts: 0 }], alerts: [{ status: 'pending', attempts: 0 }] }

describe('through the gateway', () => {
  it('OPTIONS with a forged service_role token answers CORS and runs nothing', async () => {
    for (const name of ['topup-processor', 'alerts-dispatcher']) {
      const res = await fetch(`${env.SUPABASE_URL}/functions/v1/${name}`, { method: 'OPTIONS', headers: { authorization: `Bearer ${unsignedServiceRole()}` } })
      expect([res.status, await res.text(), res.headers.get('access-control-allow-methods')]).toEqual([204, '', 'POST, OPTIONS'])
    }
    expect(await pendingWork()).toEqual(untouched)
  })
})

describe('called directly, without any gateway', () => {
  let functions: RunningFunction[] = []
  const url = (name: string) => `http://127.0.0.1:${functions.find((f) => f.name === name)!.port}/${name}`

  beforeAll(async () => {
    const names = new Set(['topup-processor', 'alerts-dispatcher', 'meter'])
    functions = await startFunctions(discoverFunctions().filter((f) => names.has(f.name)), {
      // Stripe's API is pointed at a closed local port: if anything slipped through, no packet
      // would leave this machine.
      env: { SUPABASE_URL: env.SUPABASE_URL, SUPABASE_DB_URL: env.SUPABASE_DB_URL, SUPABASE_JWT_SECRET: env.SUPABASE_JWT_SECRET, STRIPE_API_BASE: 'http://127.0.0.1:9' },
      logDir: fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-edge-auth-')),
      denoDir: path.resolve('.tollgate/deno-cache'),
      watch: false,
    })
  })

  afterAll(() => {
    for (const fn of functions) fn.child.kill('SIGTERM')
  })

  it('service-only functions refuse forged, expired, anon and user tokens before any work', async () => {
    const tokens: Array<[string, string | undefined, number]> = [
      ['none', undefined, 401],
      ['unsigned service_role', unsignedServiceRole(), 401],
      ['signed with another secret', await signJwt({ role: 'service_role', exp: now() + 60 }, 'not-the-project-secret-but-32-characters-long'), 401],
      ['expired service_role', await signJwt({ role: 'service_role', exp: now() - 10 }, env.SUPABASE_JWT_SECRET), 401],
      ['service_role without expiry', await signJwt({ role: 'service_role' }, env.SUPABASE_JWT_SECRET), 401],
      ['anon key', env.SUPABASE_ANON_KEY, 403],
      ['user token', owner.jwt, 403],
    ]
    for (const name of ['topup-processor', 'alerts-dispatcher']) {
      for (const [what, token, status] of tokens) {
        const res = await fetch(url(name), { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {} })
        const body = await res.json()
        expect([name, what, res.status, body.error]).toEqual([name, what, status, status === 401 ? 'unauthorized' : 'forbidden'])
      }
      for (const method of ['OPTIONS', 'GET', 'PUT', 'DELETE']) {
        const res = await fetch(url(name), { method, headers: { authorization: `Bearer ${unsignedServiceRole()}` } })
        expect([name, method, res.status]).toEqual([name, method, method === 'OPTIONS' ? 204 : 405])
        await res.body?.cancel()
      }
    }
    expect(await pendingWork()).toEqual(untouched)
  })

  it('the meter gateway needs a verified user token: a forged one charges nothing', async () => {
    const forgedUser = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ role: 'authenticated', sub: owner.id, exp: now() + 60 })).toString('base64url')}.`
    for (const [token, status] of [[forgedUser, 401], [env.SUPABASE_ANON_KEY, 401], [env.SUPABASE_SERVICE_ROLE_KEY, 401]] as const) {
      const res = await fetch(`${url('meter')}/anything`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID() }, body: '{}' })
      expect([res.status, (await res.json()).error]).toEqual([status, 'unauthorized'])
    }
    const requests = await primaryDb.query('select count(*)::int as n from public.credit_requests where org_id = $1', [owner.personalOrgId])
    expect(requests.rows[0].n).toBe(1) // the setup's charge only
  })
})
