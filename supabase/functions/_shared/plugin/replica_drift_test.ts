// Integration: a second logical subscriber whose `orgs` has no has_usage_credits column (a
// replica not yet altered after the migration). The gate must still parse and answer the
// documented default (deny → 429), or let devices through when the setting says allow.
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

Deno.test('gate on a replica whose orgs lacks has_usage_credits: deny by default, allow when configured', async () => {
  const primaryUrl = requireEnv('SUPABASE_DB_URL')
  const replicaUrl = requireEnv('TOLLGATE_REPLICA_DB_URL')
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
    await drift.unsafe(`
      create table public.orgs (id uuid primary key);
      create table public.apps (app_id text primary key, org_id uuid);
      create table public.app_versions (id bigint primary key, app_id text, name text, bundle_url text, checksum text);
      create table public.channels (id bigint primary key, app_id text, name text, version_id bigint, is_default boolean, allow_device_self_set boolean);
      create table public.channel_devices (app_id text, device_id text, channel_id bigint, primary key (app_id, device_id));`)
    await drift.unsafe(`create subscription ${name} connection '${primaryUrl}' publication ${name}`)
    await waitFor('the second subscriber to copy the app', async () => (await drift!`select 1 from public.apps where app_id = ${appId}`).length === 1)
    await waitFor('its org row', async () => (await drift!`select 1 from public.orgs where id = ${org!.id}`).length === 1)

    const body = JSON.stringify({
      app_id: appId, device_id: 'd-1', version_name: '1.0.0', version_build: '1', platform: 'ios', plugin_version: '6.0.0', is_emulator: false, is_prod: true,
    })
    const replica = replicaFromUrl(databaseUrl(replicaUrl, name))
    try {
      const call = async (driftPolicy: 'deny' | 'allow') => {
        const res = await createUpdatesHandler(replica, { gate: 'on', driftPolicy })(new Request('http://fn/updates', { method: 'POST', body }))
        const answer = await res.json()
        return `${res.status} ${answer.version ?? answer.error}`
      }
      assertEquals(await call('deny'), '429 no_usage_credits', 'default (deny)')
      assertEquals(await call('allow'), '200 2.0.0', 'allow')
    } finally {
      await replica.close()
    }
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
