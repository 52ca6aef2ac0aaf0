// Integration: a replica whose `orgs` has no has_usage_credits column. The gate must still
// parse and answer the documented default (deny → 429), or let devices through when the setting
// says allow. How such a replica comes about depends on its kind:
// - logical (TOLLGATE_REPLICA_DB_URL is a subscriber): a second subscriber whose tables are as
//   an older replica had them, while the primary has the column (a replica not yet altered
//   after the migration);
// - physical (a hot standby): the standby's schema is the primary's, replayed from WAL, so it
//   lacks the column only where the primary does (functions deployed before the migration, or a
//   standby that has not yet replayed it). The drifted tables are made in a database of their
//   own on the primary and read on the standby, which received them by WAL.
import postgres from 'postgres'
import { requireEnv } from '../env.ts'
import { assertEquals } from '../testing.ts'
import { createUpdatesHandler } from './handlers.ts'
import { replicaFromUrl } from './replica-db.ts'

const quiet = { onnotice: () => {}, max: 1 }

function databaseUrl(url: string, database: string): string {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const deviceBody = (appId: string) =>
  JSON.stringify({
    app_id: appId, device_id: 'd-1', version_name: '1.0.0', version_build: '1', platform: 'ios', plugin_version: '6.0.0', is_emulator: false, is_prod: true,
  })

/** /updates on `replicaUrl` under each drift setting: "status version-or-error". */
async function gateAnswers(replicaUrl: string, appId: string): Promise<Record<'deny' | 'allow', string>> {
  const replica = replicaFromUrl(replicaUrl)
  try {
    const call = async (driftPolicy: 'deny' | 'allow') => {
      const res = await createUpdatesHandler(replica, { gate: 'on', driftPolicy })(new Request('http://fn/updates', { method: 'POST', body: deviceBody(appId) }))
      const answer = await res.json()
      return `${res.status} ${answer.version ?? answer.error}`
    }
    return { deny: await call('deny'), allow: await call('allow') }
  } finally {
    await replica.close()
  }
}

/** The published tables as a replica without the flag column has them. */
const driftedTables = `
  create table public.orgs (id uuid primary key);
  create table public.apps (app_id text primary key, org_id uuid);
  create table public.app_versions (id bigint primary key, app_id text, name text, bundle_url text, checksum text);
  create table public.channels (id bigint primary key, app_id text, name text, version_id bigint, is_default boolean, allow_device_self_set boolean);
  create table public.channel_devices (app_id text, device_id text, channel_id bigint, primary key (app_id, device_id));`

async function isStandby(url: string): Promise<boolean> {
  const db = postgres(url, quiet)
  try {
    const [row] = await db<{ standby: boolean }[]>`select pg_is_in_recovery() as standby`
    return row!.standby
  } finally {
    await db.end()
  }
}

Deno.test('gate on a replica whose orgs lacks has_usage_credits: deny by default, allow when configured', async () => {
  const primaryUrl = requireEnv('SUPABASE_DB_URL')
  const replicaUrl = requireEnv('TOLLGATE_REPLICA_DB_URL')
  if (await isStandby(replicaUrl)) return await driftOnStandby(primaryUrl, replicaUrl)
  const suffix = crypto.randomUUID().replaceAll('-', '').slice(0, 12)
  const name = `tollgate_drift_${suffix}`
  const appId = `com.drift${suffix}.app`
  const primary = postgres(primaryUrl, quiet)
  const replicaAdmin = postgres(replicaUrl, quiet)
  let drift: postgres.Sql | undefined

  try {
    // The app on the primary: an org that HAS credits, so only the missing column can deny.
    const [org] = await primary<{ id: string }[]>`insert into public.orgs (name) values ('drift') returning id`
    await primary`select public.grant_credits(${org!.id}::uuid, 10::bigint, 'promotion')`
    await primary`insert into public.apps (app_id, org_id, name) values (${appId}, ${org!.id}, 'drift')`
    const [version] = await primary<{ id: string }[]>`
      insert into public.app_versions (app_id, org_id, name, bundle_url, checksum)
      values (${appId}, ${org!.id}, '2.0.0', 'https://example.com/2.0.0.zip', ${'a'.repeat(64)}) returning id`
    await primary`
      insert into public.channels (app_id, org_id, name, version_id, is_default)
      values (${appId}, ${org!.id}, 'production', ${version!.id}, true)`
    await primary.unsafe(`create publication ${name} for table
      public.orgs (id), public.apps (app_id, org_id), public.app_versions (id, app_id, name, bundle_url, checksum),
      public.channels (id, app_id, name, version_id, is_default, allow_device_self_set), public.channel_devices (app_id, device_id, channel_id)`)

    // The second subscriber: the published tables as an older replica had them.
    await replicaAdmin.unsafe(`create database ${name}`)
    drift = postgres(databaseUrl(replicaUrl, name), quiet)
    await drift.unsafe(driftedTables)
    await drift.unsafe(`create subscription ${name} connection '${primaryUrl}' publication ${name}`)
    await waitFor('the second subscriber to copy the app', async () => (await drift!`select 1 from public.apps where app_id = ${appId}`).length === 1)
    await waitFor('its org row', async () => (await drift!`select 1 from public.orgs where id = ${org!.id}`).length === 1)

    assertEquals(await gateAnswers(databaseUrl(replicaUrl, name), appId), { deny: '429 no_usage_credits', allow: '200 2.0.0' })
  } finally {
    if (drift) {
      await drift.unsafe(`drop subscription if exists ${name}`).catch(() => {})
      await drift.end()
    }
    await replicaAdmin.unsafe(`drop database if exists ${name} with (force)`).catch(() => {})
    await primary.unsafe(`drop publication if exists ${name}`).catch(() => {})
    await Promise.all([primary.end(), replicaAdmin.end()])
  }
})

/**
 * Physical: the drifted tables in a database of their own on the primary, with an app whose
 * owner would have credits; the standby replays them, and the gate reads them there. The same
 * org on the real `orgs` (which has the column, on the standby as on the primary) passes under
 * either setting: there the setting changes nothing.
 */
async function driftOnStandby(primaryUrl: string, standbyUrl: string): Promise<void> {
  const suffix = crypto.randomUUID().replaceAll('-', '').slice(0, 12)
  const name = `tollgate_drift_${suffix}`
  const appId = `com.drift${suffix}.app`
  const primary = postgres(primaryUrl, quiet)
  let drift: postgres.Sql | undefined
  let created = false
  try {
    const [org] = await primary<{ id: string }[]>`insert into public.orgs (name) values ('drift') returning id`
    await primary`select public.grant_credits(${org!.id}::uuid, 10::bigint, 'promotion')`
    await primary`insert into public.apps (app_id, org_id, name) values (${appId}, ${org!.id}, 'drift')`
    const [version] = await primary<{ id: string }[]>`
      insert into public.app_versions (app_id, org_id, name, bundle_url, checksum)
      values (${appId}, ${org!.id}, '2.0.0', 'https://example.com/2.0.0.zip', ${'a'.repeat(64)}) returning id`
    await primary`
      insert into public.channels (app_id, org_id, name, version_id, is_default)
      values (${appId}, ${org!.id}, 'production', ${version!.id}, true)`

    // `postgres` may create databases (CREATEDB), as on hosted Supabase.
    await primary.unsafe(`create database ${name}`)
    created = true
    drift = postgres(databaseUrl(primaryUrl, name), quiet)
    await drift.unsafe(driftedTables)
    await drift`insert into public.orgs (id) values (${org!.id})`
    await drift`insert into public.apps (app_id, org_id) values (${appId}, ${org!.id})`
    await drift`insert into public.app_versions (id, app_id, name, bundle_url, checksum) values (${version!.id}, ${appId}, '2.0.0', 'https://example.com/2.0.0.zip', ${'a'.repeat(64)})`
    await drift`insert into public.channels (id, app_id, name, version_id, is_default, allow_device_self_set) values (1, ${appId}, 'production', ${version!.id}, true, false)`

    const standbyDrift = postgres(databaseUrl(standbyUrl, name), quiet)
    try {
      await waitFor('the standby to replay the drifted database', async () => {
        try {
          return (await standbyDrift`select 1 from public.channels where app_id = ${appId}`).length === 1
        } catch {
          return false // the database or its tables not replayed yet
        }
      })
    } finally {
      await standbyDrift.end()
    }
    assertEquals(await gateAnswers(databaseUrl(standbyUrl, name), appId), { deny: '429 no_usage_credits', allow: '200 2.0.0' }, 'drifted standby')

    const standby = postgres(standbyUrl, quiet)
    try {
      await waitFor('the app on the standby', async () => (await standby`select 1 from public.channels where app_id = ${appId}`).length === 1)
    } finally {
      await standby.end()
    }
    assertEquals(await gateAnswers(standbyUrl, appId), { deny: '200 2.0.0', allow: '200 2.0.0' }, 'standby of the real schema')
  } finally {
    await drift?.end()
    if (created) await primary.unsafe(`drop database if exists ${name} with (force)`).catch(() => {})
    await primary.end()
  }
}
