import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from './support/clients.ts'
import { eventually, primaryDb, replicaDb } from './support/db.ts'
import { callPlugin, createApp, deviceBody, percentile, type TestApp } from './support/plugin.ts'
import { replicaKind, stallReplica } from './support/replica.ts'

// Plugin endpoints against the real read replica, of either kind (logical subscriber or
// physical standby; `npm test` runs this file on both): the gate follows orgs.has_usage_credits
// as replicated, within the replication lag.

const service = serviceClient()
let owner: TestUser
let app: TestApp
let price: string

async function grant(amount: number, extra: Record<string, unknown> = {}) {
  const { data, error } = await service.rpc('grant_credits', { p_org_id: app.orgId, p_amount: amount, p_source: 'promotion', ...extra })
  if (error) throw new Error(`grant: ${error.message}`)
  return data
}

async function consume(quantity: number) {
  const requestId = randomUUID()
  const { error } = await owner.client.rpc('consume_credits', { p_operation: price, p_request_id: requestId, p_quantity: quantity })
  if (error) throw new Error(`consume: ${error.message}`)
  return requestId
}

/** Milliseconds from now until /updates answers `status` for this app (polling every 5 ms). */
async function timeUntil(status: number, timeoutMs = 10_000): Promise<number> {
  const started = performance.now()
  const body = deviceBody(app.appId)
  for (;;) {
    const res = await callPlugin('updates', body)
    if (res.status === status) return performance.now() - started
    if (performance.now() - started > timeoutMs) throw new Error(`/updates still ${res.status} (${JSON.stringify(res.body)}) after ${timeoutMs} ms, wanted ${status}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function eventCount(): Promise<number> {
  const { rows } = await primaryDb.query<{ n: number }>('select count(*)::int as n from public.device_events where app_id = $1', [app.appId])
  return rows[0]!.n
}

beforeAll(async () => {
  owner = await createUser('plugin')
  app = await createApp(owner)
  price = `plugin_op_${randomUUID().slice(0, 8)}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 1)', [price])
})

afterAll(async () => {
  const { data, error } = await service.rpc('reconcile_credits')
  expect(error).toBeNull()
  expect(data).toBe(0)
})

describe('the credits gate through the replica', () => {
  it('follows the flag: new org 429, grant 200, consumed to zero 429, refund 200, expiry 429', async () => {
    const first = await callPlugin('updates', deviceBody(app.appId))
    expect(first).toMatchObject({ status: 429, body: { error: 'no_usage_credits' } })

    await grant(2)
    await timeUntil(200)
    const ok = await callPlugin('updates', deviceBody(app.appId))
    expect(ok.body).toMatchObject({ version: '1.1.0', channel: 'production', url: 'https://example.com/1.1.0.zip' })
    expect(Number(ok.headers.get('x-replication-lag-ms'))).toBeGreaterThanOrEqual(0)

    const spent = await consume(2)
    await timeUntil(429)

    const refund = await service.rpc('refund_credits', { p_org_id: app.orgId, p_request_id: spent, p_reason: 'backend failed' })
    expect(refund.error).toBeNull()
    await timeUntil(200)

    // Spend the refunded credits, then let a short grant expire through the cron function.
    await consume(2)
    await grant(5, { p_expires_at: new Date(Date.now() + 1500).toISOString() })
    await timeUntil(200)
    await new Promise((resolve) => setTimeout(resolve, 1600))
    const expired = await service.rpc('expire_credit_grants')
    expect(expired.error).toBeNull()
    expect(expired.data).toBeGreaterThanOrEqual(1)
    await timeUntil(429)
  })

  it('measures replica freshness: commit on the primary → first matching answer on the replica', async () => {
    const samples: number[] = []
    for (let i = 0; i < 15; i++) {
      await grant(1)
      samples.push(await timeUntil(200))
      await consume(1)
      samples.push(await timeUntil(429))
    }
    const p50 = percentile(samples, 50)
    const p99 = percentile(samples, 99)
    console.log(`replica freshness over ${samples.length} flips: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`)
    expect(samples).toHaveLength(30)
  })
})

describe('/updates', () => {
  it('answers no_new_version_available when the device runs the channel version', async () => {
    await grant(1)
    await timeUntil(200)
    const res = await callPlugin('updates', deviceBody(app.appId, { version_name: '1.1.0' }))
    expect(res).toMatchObject({ status: 200, body: { error: 'no_new_version_available' } })
  })

  it('answers 404 unknown_app for an app nobody owns, distinct from an unpaid app (429)', async () => {
    const res = await callPlugin('updates', deviceBody('com.nobody.owns.this'))
    expect(res).toMatchObject({ status: 404, body: { error: 'unknown_app' } })
  })

  it('refuses bad bodies with 400 invalid_request', async () => {
    const cases: unknown[] = [
      '{not json',
      '',
      [],
      { ...deviceBody(app.appId), platform: 'windows' },
      { ...deviceBody(app.appId), is_emulator: 'no' },
      { ...deviceBody(app.appId), device_id: 'x'.repeat(129) },
      { ...deviceBody(app.appId), app_id: undefined },
      JSON.stringify({ ...deviceBody(app.appId), padding: 'x'.repeat(1024 * 1024) }),
    ]
    for (const body of cases) {
      const res = await callPlugin('updates', body)
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400)
      expect(res.body.error).toBe('invalid_request')
    }
  })
})

describe('/stats', () => {
  it('writes a batch of events after the gate, and nothing for invalid, mixed or unpaid batches', async () => {
    await grant(1)
    await timeUntil(200)
    const before = await eventCount()
    const event = deviceBody(app.appId, { action: 'app_ready' })
    const ok = await callPlugin('stats', [event, { ...event, action: 'download_complete' }, { ...event, action: 'set' }])
    expect(ok).toMatchObject({ status: 200, body: { status: 'ok', inserted: 3 } })
    expect(await eventCount()).toBe(before + 3)

    const mixed = await callPlugin('stats', [event, { ...event, app_id: 'com.other.app' }])
    expect(mixed).toMatchObject({ status: 400, body: { error: 'invalid_request' } })
    const bad = await callPlugin('stats', [event, { ...event, action: 'Not An Action' }])
    expect(bad.status).toBe(400)
    expect(await eventCount()).toBe(before + 3)
  })
})

describe('/channel_self', () => {
  it('lets a device pick a self-assignable channel, refuses others with 403, and clears the override', async () => {
    await grant(1)
    await timeUntil(200)
    const device = deviceBody(app.appId)

    const forbidden = await callPlugin('channel_self', { ...device, channel: 'production' })
    expect(forbidden).toMatchObject({ status: 403, body: { error: 'channel_self_set_not_allowed' } })
    const unknown = await callPlugin('channel_self', { ...device, channel: 'nightly' })
    expect(unknown).toMatchObject({ status: 404, body: { error: 'unknown_channel' } })

    const set = await callPlugin('channel_self', { ...device, channel: 'beta' })
    expect(set).toMatchObject({ status: 200, body: { status: 'ok', channel: 'beta' } })
    const { rows } = await primaryDb.query('select c.name from public.channel_devices d join public.channels c on c.id = d.channel_id where d.app_id = $1 and d.device_id = $2', [app.appId, device.device_id])
    expect(rows).toEqual([{ name: 'beta' }])

    // The override reaches the replica, and /updates then serves the beta channel's version.
    const deadline = Date.now() + 5000
    let current = await callPlugin('channel_self', device, 'PUT')
    while (current.body.status !== 'override' && Date.now() < deadline) current = await callPlugin('channel_self', device, 'PUT')
    expect(current.body).toEqual({ channel: 'beta', status: 'override' })
    const update = await callPlugin('updates', { ...device, version_name: '0.9.0' })
    expect(update.body).toMatchObject({ version: '1.0.0', channel: 'beta' })

    const list = await fetch(`${process.env.SUPABASE_URL}/functions/v1/channel_self?app_id=${app.appId}`)
    expect(await list.json()).toEqual([{ name: 'beta', is_default: false }])

    const cleared = await callPlugin('channel_self', device, 'DELETE')
    expect(cleared).toMatchObject({ status: 200, body: { removed: true } })
  })
})

describe('channel overrides: a device changes only what it chose', () => {
  async function overrideOf(deviceId: string) {
    const { rows } = await primaryDb.query(
      'select c.name from public.channel_devices d join public.channels c on c.id = d.channel_id where d.app_id = $1 and d.device_id = $2',
      [app.appId, deviceId],
    )
    return rows
  }

  it('an anonymous DELETE or POST cannot remove or replace a channel the app owner pinned', async () => {
    await grant(1)
    await timeUntil(200)
    const device = deviceBody(app.appId)
    // Owners pin through pin_device_channel (members cannot write overrides directly, so an
    // override's set_by cannot be forged).
    const { rows } = await primaryDb.query<{ id: string }>(`select id from public.channels where app_id = $1 and name = 'production'`, [app.appId])
    const direct = await owner.client
      .from('channel_devices')
      .insert({ app_id: app.appId, org_id: app.orgId, device_id: device.device_id, channel_id: rows[0]!.id, set_by: 'device' })
    expect(direct.error?.code).toBe('42501')
    const pinned = await owner.client.rpc('pin_device_channel', { p_app_id: app.appId, p_device_id: device.device_id, p_channel: 'production' })
    expect(pinned).toMatchObject({ error: null, data: { channel: 'production', set_by: 'owner' } })

    const removed = await callPlugin('channel_self', device, 'DELETE')
    expect(removed).toMatchObject({ status: 403, body: { error: 'channel_override_not_removable' } })
    const replaced = await callPlugin('channel_self', { ...device, channel: 'beta' })
    expect(replaced).toMatchObject({ status: 403, body: { error: 'channel_override_not_replaceable' } })
    expect(await overrideOf(device.device_id as string)).toEqual([{ name: 'production' }])

    // The pin reaches the replica: the device is served the pinned channel, and told so.
    const pinnedSeen = await eventually('the pin on the replica', async () => {
      const res = await callPlugin('channel_self', device, 'PUT')
      return res.body.status === 'override' ? res.body : undefined
    })
    expect(pinnedSeen).toEqual({ channel: 'production', status: 'override' })
    expect((await callPlugin('updates', device)).body).toMatchObject({ version: '1.1.0', channel: 'production' })

    // The owner removes their pin; the device is back on the default channel and free to choose.
    const unpinned = await owner.client.rpc('pin_device_channel', { p_app_id: app.appId, p_device_id: device.device_id, p_channel: null })
    expect(unpinned).toMatchObject({ error: null, data: { channel: null, removed: true } })
    expect(await callPlugin('channel_self', { ...device, channel: 'beta' })).toMatchObject({ status: 200, body: { channel: 'beta' } })
  })

  it('an owner pin replaces a device-chosen override; a stranger cannot pin', async () => {
    const device = deviceBody(app.appId)
    await grant(1)
    await timeUntil(200)
    expect(await callPlugin('channel_self', { ...device, channel: 'beta' })).toMatchObject({ status: 200 })
    const pinned = await owner.client.rpc('pin_device_channel', { p_app_id: app.appId, p_device_id: device.device_id, p_channel: 'production' })
    expect(pinned.error).toBeNull()
    expect(await overrideOf(device.device_id as string)).toEqual([{ name: 'production' }])
    expect(await callPlugin('channel_self', device, 'DELETE')).toMatchObject({ status: 403, body: { error: 'channel_override_not_removable' } })

    const stranger = await createUser('plugin-stranger')
    const refused = await stranger.client.rpc('pin_device_channel', { p_app_id: app.appId, p_device_id: device.device_id, p_channel: 'beta' })
    expect(refused.error).toMatchObject({ code: 'PT404', message: 'unknown_app' })
    expect(await overrideOf(device.device_id as string)).toEqual([{ name: 'production' }])
  })

  it('a device removes the override it chose itself', async () => {
    await grant(1)
    await timeUntil(200)
    const device = deviceBody(app.appId)
    expect(await callPlugin('channel_self', { ...device, channel: 'beta' })).toMatchObject({ status: 200, body: { channel: 'beta' } })
    expect(await callPlugin('channel_self', device, 'DELETE')).toMatchObject({ status: 200, body: { status: 'ok', removed: true } })
    expect(await overrideOf(device.device_id as string)).toEqual([])
    expect(await callPlugin('channel_self', device, 'DELETE')).toMatchObject({ status: 200, body: { status: 'ok', removed: false } })
  })
})

describe('x-replication-lag-ms', () => {
  const lagOf = (res: { headers: Headers }) => res.headers.get('x-replication-lag-ms')

  it('is on every answer: 200, 400, 403, 404, 405 and 429', async () => {
    const unpaidOwner = await createUser('plugin-unpaid')
    const unpaid = await createApp(unpaidOwner)
    await grant(1)
    await timeUntil(200)
    const answers = {
      ok: await callPlugin('updates', deviceBody(app.appId)),
      invalid: await callPlugin('updates', { ...deviceBody(app.appId), platform: 'windows' }),
      notAllowed: await callPlugin('channel_self', { ...deviceBody(app.appId), channel: 'production' }),
      unknownApp: await callPlugin('updates', deviceBody('com.nobody.owns.this')),
      unknownChannel: await callPlugin('channel_self', { ...deviceBody(app.appId), channel: 'nightly' }),
      method: await callPlugin('updates', undefined, 'GET'),
      noCredits: await eventually('the unpaid app on the replica', async () => {
        const res = await callPlugin('stats', deviceBody(unpaid.appId, { action: 'app_ready' }))
        return res.status === 429 ? res : undefined
      }),
    }
    expect(Object.fromEntries(Object.entries(answers).map(([name, res]) => [name, res.status]))).toEqual({
      ok: 200, invalid: 400, notAllowed: 403, unknownApp: 404, unknownChannel: 404, method: 405, noCredits: 429,
    })
    for (const [name, res] of Object.entries(answers)) {
      expect(lagOf(res), name).toMatch(/^\d+$/)
    }
  })

  it('grows while the replica stalls, and falls back once it catches up', async () => {
    await grant(1)
    await timeUntil(200)
    const probe = () => callPlugin('updates', deviceBody(app.appId))
    // Healthy first, so the growth below is the stall's: pg_cron starts the heartbeat at the
    // first minute after the primary starts, and the lag grows until then.
    const lagBelow = async (ms: number) => {
      const header = lagOf(await probe())
      return header !== null && Number(header) < ms ? Number(header) : undefined
    }
    const healthy = await eventually('a healthy lag before the stall', async () => {
      const lag = await lagBelow(3500)
      if (lag === undefined) await new Promise((resolve) => setTimeout(resolve, 250))
      return lag
    }, 70_000)
    expect(healthy).toBeGreaterThanOrEqual(0)
    // Logical: the subscription is disabled. Physical: WAL replay is paused (the heartbeat row
    // arrives by replay, so its stamp stops moving on the standby just the same).
    const resume = await stallReplica()
    const stalled: number[] = []
    try {
      const until = Date.now() + 5000
      while (Date.now() < until) {
        const res = await probe()
        expect(lagOf(res), 'header present while the replica stalls').toMatch(/^\d+$/)
        stalled.push(Number(lagOf(res)))
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
    } finally {
      await resume()
    }
    // Heartbeats stop arriving: the lag grows by about the stall's length (5 s), give or take
    // the heartbeat period and the one-second measurement cache.
    expect(stalled.at(-1)! - stalled[0]!).toBeGreaterThan(2500)
    expect(stalled.at(-1)!).toBeGreaterThan(4000)
    // Falls back to the healthy figure (a beat period of 2 s, plus what applying costs on a
    // loaded machine) once replication has resumed and caught up.
    const recovered = await eventually('the lag to fall back after the stall', () => lagBelow(3500), 30_000)
    expect(recovered).toBeLessThan(3500)
  }, 120_000)
})

describe('replica data contract', () => {
  const publicColumns = `select table_name as table, array_agg(column_name::text order by ordinal_position) as columns
       from information_schema.columns where table_schema = 'public' group by table_name order by 1`

  it('logical: the replica holds exactly the published tables and columns; physical: all of the primary\'s', async () => {
    const published = await primaryDb.query<{ table: string; columns: string[] }>(
      `select tablename as table, attnames::text[] as columns from pg_publication_tables where pubname = 'plugin_read' order by 1`,
    )
    const onReplica = await replicaDb.query<{ table: string; columns: string[] }>(publicColumns)
    const sortCols = (rows: { table: string; columns: string[] }[]) => rows.map((r) => ({ table: r.table, columns: [...r.columns].sort() }))
    if ((await replicaKind()) === 'logical') {
      expect(sortCols(onReplica.rows)).toEqual(sortCols(published.rows))
    } else {
      // A standby is the primary's copy: every table and column (views included, as
      // information_schema lists them). Only the plugin path's own queries keep to the contract:
      // replica_contract_test.ts runs them as a role that may read nothing else.
      const onPrimary = await primaryDb.query<{ table: string; columns: string[] }>(publicColumns)
      expect(sortCols(onReplica.rows)).toEqual(sortCols(onPrimary.rows))
      expect(onReplica.rows.length).toBeGreaterThan(published.rows.length)
    }
    // The contract as README "Replica data contract" writes it.
    expect(sortCols(published.rows)).toEqual(
      sortCols([
        { table: 'app_versions', columns: ['id', 'app_id', 'name', 'bundle_url', 'checksum'] },
        { table: 'apps', columns: ['app_id', 'org_id'] },
        { table: 'channel_devices', columns: ['app_id', 'device_id', 'channel_id'] },
        { table: 'channels', columns: ['id', 'app_id', 'name', 'version_id', 'is_default', 'allow_device_self_set'] },
        { table: 'orgs', columns: ['id', 'has_usage_credits'] },
        { table: 'replica_heartbeat', columns: ['id', 'beat_at'] },
      ]),
    )
  })
})
