import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTollgateClient } from '@tollgate/client'
import { discoverFunctions, startFunctions, type RunningFunction } from '@tollgate/local-stack'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'
import { startRecorder } from './support/http-recorder.ts'

// Usage reads through the rollup: exact while charges land, while a transaction holds ledger
// entries open, and while the rollup job runs; the typed client's dailyUsage; and the
// credits-checkout function (owners and admins only, price from the environment).

const service = serviceClient()

afterAll(async () => {
  const { data } = await service.rpc('reconcile_credits')
  expect(data).toBe(0)
})

const watermark = async () => Number((await primaryDb.query('select rolled_through from private.credit_usage_rollup_state')).rows[0].rolled_through)
const rollUp = async (waitMs = 5000) => {
  const { data, error } = await service.rpc('roll_up_credit_usage', { p_batch_size: 100000, p_wait_ms: waitMs })
  expect(error).toBeNull()
  return data as number
}

/** get_usage_stats as it was: a full scan of the org's requests (the reference). */
const fullScanSql = `
  select jsonb_build_object(
    'period_days', $2::int, 'total_calls', count(*), 'successful_calls', count(*) filter (where r.success),
    'failed_calls', count(*) filter (where not r.success), 'total_credits_used', coalesce(sum(r.charged - r.refunded), 0),
    'avg_latency_ms', coalesce(round(avg(r.latency_ms), 2), 0),
    'top_operations', coalesce((
      select jsonb_agg(jsonb_build_object('operation', t.operation, 'calls', t.calls, 'credits', t.credits) order by t.calls desc, t.operation)
      from (select operation, count(*) as calls, coalesce(sum(charged - refunded), 0) as credits from public.credit_requests
            where org_id = $1 and created_at > now() - make_interval(days => $2::int) group by operation order by calls desc, operation limit 10) t), '[]')
  )::text as stats
  from public.credit_requests r where r.org_id = $1 and r.created_at > now() - make_interval(days => $2::int)`

/**
 * get_usage_stats as the user (as PostgREST calls it) and the full scan, as text (200.50 is not
 * 200.5), in one REPEATABLE READ transaction: both see the same data while charges land.
 */
async function oursAndFullScan(user: TestUser, days = 30): Promise<{ ours: string; scan: string }> {
  const client = await primaryDb.connect()
  try {
    await client.query('begin isolation level repeatable read')
    await client.query(`select set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`, [JSON.stringify({ role: 'authenticated', sub: user.id })])
    const ours = (await client.query('select public.get_usage_stats($1)::text as s', [days])).rows[0].s as string
    await client.query(`select set_config('role', 'postgres', true)`)
    const scan = (await client.query(fullScanSql, [user.personalOrgId, days])).rows[0].stats as string
    await client.query('commit')
    return { ours, scan }
  } catch (error) {
    await client.query('rollback')
    throw error
  } finally {
    client.release()
  }
}

async function expectExact(user: TestUser): Promise<{ total_calls: number }> {
  for (const days of [1, 30]) {
    const { ours, scan } = await oursAndFullScan(user, days)
    expect(ours).toBe(scan)
  }
  // And through PostgREST, as the page reads it.
  const { data, error } = await user.client.rpc('get_usage_stats', { p_days: 30 })
  expect(error).toBeNull()
  return data as { total_calls: number }
}

async function pricedOperation(credits: number): Promise<string> {
  const operation = `usage_${randomUUID().slice(0, 8)}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, $2)', [operation, credits])
  return operation
}

describe('usage rollup', () => {
  it('stays exact while a transaction holds ledger entries open: the watermark waits for it', async () => {
    const user = await createUser('rollup-open')
    const other = await createUser('rollup-other')
    const op = await pricedOperation(3)
    for (const u of [user, other]) await service.rpc('grant_credits', { p_org_id: u.personalOrgId, p_amount: 1000, p_source: 'promotion' })
    for (let i = 0; i < 3; i++) expect((await user.client.rpc('consume_credits', { p_operation: op, p_request_id: `before-${i}` })).error).toBeNull()

    // A charge in a transaction that stays open (as a slow business RPC would).
    const open = new pg.Client({ connectionString: env.SUPABASE_DB_URL })
    await open.connect()
    try {
      await open.query('begin')
      await open.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ role: 'authenticated', sub: user.id })])
      await open.query('select public.consume_credits($1, $2)', [op, 'held-open'])
      const openId = Number((await open.query('select max(id) as id from public.credit_ledger where org_id = $1', [user.personalOrgId])).rows[0].id)
      // Another org's charges commit meanwhile, with larger ledger ids.
      for (let i = 0; i < 2; i++) expect((await other.client.rpc('consume_credits', { p_operation: op, p_request_id: `after-${i}` })).error).toBeNull()

      expect(await rollUp(300)).toBe(0)
      expect(await watermark()).toBeLessThan(openId)
      expect((await expectExact(user)).total_calls).toBe(3)

      await open.query('commit')
      await expect.poll(async () => (await rollUp(), await watermark()), { timeout: 20_000, interval: 200 }).toBeGreaterThanOrEqual(openId)
      expect((await expectExact(user)).total_calls).toBe(4)
      expect((await expectExact(other)).total_calls).toBe(2)
    } finally {
      await open.end()
    }
  })

  it('is exact under concurrent charges, holds, refunds and rollup runs, and the rollup equals the requests', async () => {
    const user = await createUser('rollup-busy')
    const op = await pricedOperation(2)
    await service.rpc('grant_credits', { p_org_id: user.personalOrgId, p_amount: 100000, p_source: 'promotion' })
    let stop = false
    const charger = async (worker: number) => {
      for (let i = 0; !stop && i < 60; i++) {
        const id = `w${worker}-${i}`
        if (i % 5 === 0) {
          await service.rpc('reserve_credits', { p_org_id: user.personalOrgId, p_user_id: user.id, p_operation: op, p_request_id: id, p_quantity: 2 })
          await (i % 10 === 0
            ? service.rpc('capture_credits', { p_org_id: user.personalOrgId, p_request_id: id, p_quantity: 1, p_result: { latency_ms: 10 + i } })
            : service.rpc('release_credits', { p_org_id: user.personalOrgId, p_request_id: id, p_backend_error: true, p_result: { latency_ms: 500 } }))
        } else {
          expect((await user.client.rpc('consume_credits', { p_operation: op, p_request_id: id })).error).toBeNull()
          if (i % 7 === 0) await service.rpc('refund_credits', { p_org_id: user.personalOrgId, p_request_id: id, p_reason: 'backend failed' })
        }
      }
    }
    const roller = async () => {
      while (!stop) {
        await rollUp(2000)
        await expectExact(user)
      }
    }
    const rolling = roller()
    await Promise.all([0, 1, 2, 3].map(charger))
    stop = true
    await rolling
    expect((await expectExact(user)).total_calls).toBe(240)

    // Once everything is folded, the org's rollup rows are exactly the requests' sums.
    const newest = Number((await primaryDb.query('select max(id) as id from public.credit_ledger where org_id = $1', [user.personalOrgId])).rows[0].id)
    await expect.poll(async () => (await rollUp(), await watermark()), { timeout: 20_000, interval: 200 }).toBeGreaterThanOrEqual(newest)
    const rollup = await primaryDb.query(
      `select operation, calls::int, successful_calls::int, failed_calls::int, credits_used::int, latency_ms_sum::int, latency_count::int
       from public.credit_usage_rollup where org_id = $1 and grain = 'day' order by bucket_start, operation`,
      [user.personalOrgId],
    )
    const requests = await primaryDb.query(
      `select operation, count(*)::int as calls, (count(*) filter (where success))::int as successful_calls, (count(*) filter (where not success))::int as failed_calls,
              sum(charged - refunded)::int as credits_used, coalesce(sum(latency_ms), 0)::int as latency_ms_sum, count(latency_ms)::int as latency_count
       from public.credit_requests where org_id = $1 group by date_bin('1 day', created_at, timestamptz '2000-01-01 00:00:00+00'), operation
       order by date_bin('1 day', created_at, timestamptz '2000-01-01 00:00:00+00'), operation`,
      [user.personalOrgId],
    )
    expect(rollup.rows).toEqual(requests.rows)

    // And so are its running totals: per operation and 10-second bucket, everything of that UTC
    // day up to the end of the bucket, folded round by round while the charges landed.
    const prefix = await primaryDb.query(
      `select operation, bucket_start, calls::int, successful_calls::int, failed_calls::int, credits_used::int, latency_ms_sum::int, latency_count::int
       from public.credit_usage_prefix where org_id = $1 order by operation, bucket_start`,
      [user.personalOrgId],
    )
    const running = await primaryDb.query(
      `select operation, minute as bucket_start,
              (sum(calls) over w)::int as calls, (sum(successful_calls) over w)::int as successful_calls, (sum(failed_calls) over w)::int as failed_calls,
              (sum(credits_used) over w)::int as credits_used, (sum(latency_ms_sum) over w)::int as latency_ms_sum, (sum(latency_count) over w)::int as latency_count
       from (select operation, date_bin('10 seconds', created_at, timestamptz '2000-01-01 00:00:00+00') as minute, count(*) as calls,
                    count(*) filter (where success) as successful_calls, count(*) filter (where not success) as failed_calls,
                    sum(charged - refunded) as credits_used, coalesce(sum(latency_ms), 0) as latency_ms_sum, count(latency_ms) as latency_count
             from public.credit_requests where org_id = $1 group by 1, 2) m
       window w as (partition by operation, date_bin('1 day', minute, timestamptz '2000-01-01 00:00:00+00') order by minute)
       order by operation, minute`,
      [user.personalOrgId],
    )
    expect(prefix.rows.length).toBeGreaterThan(0)
    expect(prefix.rows).toEqual(running.rows)
  })

  it('dailyUsage: the typed client reads get_daily_usage', async () => {
    const user = await createUser('daily')
    const op = await pricedOperation(4)
    await service.rpc('grant_credits', { p_org_id: user.personalOrgId, p_amount: 100, p_source: 'promotion' })
    const tollgate = createTollgateClient(user.client)
    for (let i = 0; i < 3; i++) await tollgate.consume({ operation: op })
    const daily = await tollgate.dailyUsage({ days: 7 })
    const today = new Date().toISOString().slice(0, 10)
    expect(daily).toEqual({
      periodDays: 7,
      from: new Date(Date.now() - 6 * 86_400_000).toISOString().slice(0, 10),
      to: today,
      days: [{ day: today, operation: op, calls: 3, successfulCalls: 3, failedCalls: 0, creditsUsed: 12 }],
    })
    await expect(tollgate.dailyUsage({ days: 0 })).rejects.toMatchObject({ key: 'invalid_days', code: '22023' })
    const stranger = await createUser('daily-stranger')
    await expect(createTollgateClient(stranger.client).dailyUsage({ orgId: user.personalOrgId })).rejects.toMatchObject({ key: 'not_a_member' })
  })
})

describe('credits-checkout', () => {
  let stripeApi: Awaited<ReturnType<typeof startRecorder>>
  let checkout: RunningFunction

  beforeAll(async () => {
    stripeApi = await startRecorder((req) => {
      const form = new URLSearchParams(req.body)
      const id = `cs_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`
      return { status: 200, body: { id, object: 'checkout.session', url: `http://127.0.0.1:9/pay/${id}`, metadata: { org_id: form.get('metadata[org_id]'), credits: form.get('metadata[credits]') } } }
    })
    const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-checkout-'))
    const [fn] = await startFunctions(discoverFunctions().filter((f) => f.name === 'credits-checkout'), {
      env: {
        SUPABASE_DB_URL: env.SUPABASE_DB_URL,
        SUPABASE_JWT_SECRET: env.SUPABASE_JWT_SECRET,
        STRIPE_SECRET_KEY: 'sk_test_local',
        STRIPE_API_BASE: stripeApi.url,
        TOLLGATE_CHECKOUT_CENTS_PER_CREDIT: '7',
        TOLLGATE_USAGE_PAGE_URL: 'http://127.0.0.1:54321/usage/',
      },
      logDir,
      denoDir: path.resolve('.tollgate/deno-cache'),
      watch: false,
    })
    checkout = fn!
  })

  afterAll(async () => {
    checkout?.child.kill('SIGTERM')
    await stripeApi?.close()
  })

  const buy = async (token: string, body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${checkout.port}/credits-checkout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return { status: res.status, body: await res.json() }
  }

  async function team() {
    const owner = await createUser('team-owner')
    const admin = await createUser('team-admin')
    const member = await createUser('team-member')
    const { rows } = await primaryDb.query<{ id: string }>(`insert into public.orgs (name) values ($1) returning id`, [`team-${randomUUID().slice(0, 6)}`])
    const orgId = rows[0]!.id
    for (const [user, role] of [[owner, 'owner'], [admin, 'admin'], [member, 'member']] as const) {
      await primaryDb.query('insert into public.org_members (org_id, user_id, role) values ($1, $2, $3)', [orgId, user.id, role])
    }
    return { owner, admin, member, orgId }
  }

  it('owners and admins get a session for their org, priced from the environment, with org_id and credits as metadata', async () => {
    const { owner, admin, orgId } = await team()
    const before = stripeApi.requests.length
    for (const user of [owner, admin]) {
      // A price in the body is not ours to take.
      const { status, body } = await buy(user.jwt, { org_id: orgId, credits: 250, unit_amount: 1 })
      expect(status).toBe(200)
      expect(body).toMatchObject({ id: expect.stringMatching(/^cs_test_/), url: expect.stringContaining('/pay/'), org_id: orgId, credits: 250, amount: 1750, currency: 'usd' })
    }
    const sent = stripeApi.requests.slice(before).map((r) => ({ path: r.path, form: Object.fromEntries(new URLSearchParams(r.body)) }))
    expect(sent).toHaveLength(2)
    for (const { path, form } of sent) {
      expect(path).toBe('/v1/checkout/sessions')
      expect(form).toMatchObject({
        mode: 'payment',
        'metadata[org_id]': orgId,
        'metadata[credits]': '250',
        'line_items[0][quantity]': '250',
        'line_items[0][price_data][unit_amount]': '7',
        'line_items[0][price_data][currency]': 'usd',
        success_url: `http://127.0.0.1:54321/usage/?checkout=success&org=${orgId}`,
      })
    }
  })

  it('plain members, strangers, anonymous callers and forged org ids get nothing from Stripe', async () => {
    const { member, orgId } = await team()
    const stranger = await createUser('checkout-stranger')
    const before = stripeApi.requests.length
    expect(await buy(member.jwt, { org_id: orgId, credits: 250 })).toMatchObject({ status: 403, body: { error: 'forbidden' } })
    expect(await buy(stranger.jwt, { org_id: orgId, credits: 250 })).toMatchObject({ status: 403, body: { error: 'not_a_member' } })
    expect(await buy(member.jwt, { org_id: stranger.personalOrgId, credits: 250 })).toMatchObject({ status: 403, body: { error: 'not_a_member' } })
    expect(await buy(env.SUPABASE_ANON_KEY, { org_id: orgId, credits: 250 })).toMatchObject({ status: 401, body: { error: 'unauthorized' } })
    expect(await buy(stranger.jwt, { credits: 10 })).toMatchObject({ status: 400, body: { error: 'invalid_credits', min: 100 } })
    expect(stripeApi.requests.length).toBe(before)
    // The stranger's own personal org is theirs to buy for.
    expect(await buy(stranger.jwt, { credits: 100 })).toMatchObject({ status: 200, body: { org_id: stranger.personalOrgId } })
  })
})
