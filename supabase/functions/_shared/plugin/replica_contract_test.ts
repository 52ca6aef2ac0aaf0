// Integration: the plugin path's replica queries (replica-db.ts, every PluginReplica method)
// read only the tables of the replica data contract — publication plugin_read — on either kind
// of replica. A logical subscriber holds nothing else, so there it could not do otherwise; a
// physical standby holds the whole primary (every table, view and function), so there only the
// queries themselves keep to the contract. The queries run as a role that may read the
// contract's tables and nothing else: a query that touched any other table or view, or called
// one of our functions, would fail with 42501 (or 42P01 / 42883 on a logical subscriber).
import postgres from 'postgres'
import { requireEnv } from '../env.ts'
import { assertEquals } from '../testing.ts'
import { replicaFromUrl } from './replica-db.ts'

const quiet = { onnotice: () => {}, max: 1 }

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function asRole(url: string, role: string, password: string): string {
  const u = new URL(url)
  u.username = role
  u.password = password
  return u.toString()
}

/** The SQLSTATE `query` fails with, or 'ok'. */
async function sqlstate(db: postgres.Sql, query: string): Promise<string> {
  try {
    await db.unsafe(query)
    return 'ok'
  } catch (error) {
    return (error as { code?: string }).code ?? String(error)
  }
}

Deno.test('the plugin path reads only the replica data contract\'s tables, on either kind of replica', async () => {
  const primaryUrl = requireEnv('SUPABASE_DB_URL')
  const replicaUrl = requireEnv('TOLLGATE_REPLICA_DB_URL')
  const primary = postgres(primaryUrl, quiet)
  const replica = postgres(replicaUrl, quiet)
  const suffix = crypto.randomUUID().replaceAll('-', '').slice(0, 12)
  const role = `tollgate_contract_${suffix}`
  const password = crypto.randomUUID()
  const appId = `com.contract${suffix}.app`
  let roleAdmin: postgres.Sql | undefined
  let probe: postgres.Sql | undefined
  let plugin: ReturnType<typeof replicaFromUrl> | undefined

  try {
    const [{ standby }] = await replica<{ standby: boolean }[]>`select pg_is_in_recovery() as standby`
    const contract = await primary<{ schema: string; table: string }[]>`
      select schemaname as schema, tablename as table from pg_publication_tables where pubname = 'plugin_read' order by 1, 2`
    assertEquals(contract.length > 0, true, 'publication plugin_read lists the contract')

    // The role is made where roles are written: a standby has the primary's (by WAL), a
    // subscriber its own. BYPASSRLS: the primary's tables have RLS, whose policies would call our
    // functions as the role; PostgreSQL 15 lets only a superuser grant it.
    roleAdmin = postgres(
      standby ? requireEnv('TOLLGATE_SUPERUSER_DB_URL') : (Deno.env.get('TOLLGATE_REPLICA_SUPERUSER_DB_URL') || replicaUrl),
      quiet,
    )
    const ident = (name: string) => `"${name.replaceAll('"', '""')}"`
    const tables = contract.map((t) => `${ident(t.schema)}.${ident(t.table)}`).join(', ')
    await roleAdmin.begin(async (tx) => {
      await tx.unsafe(`create role ${role} login bypassrls password '${password}'`)
      await tx.unsafe(`grant usage on schema public to ${role}`)
      await tx.unsafe(`grant select on ${tables} to ${role}`)
    })

    // An app with an owner who has credits, two channels (one self-assignable) and a device
    // override, so every query has rows to find.
    const [org] = await primary<{ id: string }[]>`insert into public.orgs (name) values ('contract') returning id`
    await primary`select public.grant_credits(${org!.id}::uuid, 10::bigint, 'promotion')`
    await primary`insert into public.apps (app_id, org_id, name) values (${appId}, ${org!.id}, 'contract')`
    const [v1, v2] = await primary<{ id: string }[]>`
      insert into public.app_versions (app_id, org_id, name, bundle_url, checksum)
      values (${appId}, ${org!.id}, '1.0.0', 'https://example.com/1.0.0.zip', ${'a'.repeat(64)}),
             (${appId}, ${org!.id}, '2.0.0', 'https://example.com/2.0.0.zip', ${'b'.repeat(64)})
      returning id`
    const [, beta] = await primary<{ id: string }[]>`
      insert into public.channels (app_id, org_id, name, version_id, is_default, allow_device_self_set)
      values (${appId}, ${org!.id}, 'production', ${v2!.id}, true, false),
             (${appId}, ${org!.id}, 'beta', ${v1!.id}, false, true)
      returning id`
    await primary`
      insert into public.channel_devices (app_id, device_id, org_id, channel_id, set_by)
      values (${appId}, 'd-override', ${org!.id}, ${beta!.id}, 'device')`

    const probeUrl = asRole(replicaUrl, role, password)
    await waitFor('the role and the app on the replica', async () => {
      const db = postgres(probeUrl, { ...quiet, connect_timeout: 2 })
      try {
        return (await db`select 1 from public.channel_devices where app_id = ${appId}`).length === 1 &&
          (await db`select 1 from public.orgs where id = ${org!.id} and has_usage_credits`).length === 1
      } finally {
        await db.end()
      }
    })

    // The role is confined: the rest of the replica is closed to it.
    probe = postgres(probeUrl, quiet)
    const refused = standby ? '42501' : '42P01' // not allowed; not there at all
    assertEquals(await sqlstate(probe, 'select 1 from public.credit_balances limit 1'), refused, 'a table outside the contract')
    assertEquals(await sqlstate(probe, 'select private.readable_org_ids()'), standby ? '42501' : '3F000', 'one of our functions')

    // Every query of the plugin path, as the role: each answers, none is refused.
    plugin = replicaFromUrl(probeUrl)
    assertEquals(await plugin.gateRow(appId), { org_id: org!.id, has_usage_credits: true, flag_present: true }, 'gateRow')
    assertEquals(await plugin.updateTarget(appId, 'd-new', null), {
      channel: 'production', version: '2.0.0', bundle_url: 'https://example.com/2.0.0.zip', checksum: 'b'.repeat(64), source: 'default',
    }, 'updateTarget')
    const gated = await plugin.gatedUpdateTarget(appId, 'd-override', null)
    assertEquals([gated.gate?.has_usage_credits, gated.target?.channel, gated.target?.source], [true, 'beta', 'override'], 'gatedUpdateTarget')
    assertEquals(await plugin.channel(appId, 'beta'), { name: 'beta', is_default: false, allow_device_self_set: true }, 'channel')
    assertEquals(await plugin.deviceChannel(appId, 'd-override'), { channel: 'beta', status: 'override' }, 'deviceChannel')
    assertEquals((await plugin.selfAssignableChannels(appId)).map((c) => c.name), ['beta'], 'selfAssignableChannels')
    const staleness = await plugin.stalenessMs()
    assertEquals(typeof staleness === 'number' && staleness >= 0, true, `stalenessMs (${staleness})`)
  } finally {
    await plugin?.close()
    await probe?.end()
    if (roleAdmin) {
      await roleAdmin.unsafe(`drop owned by ${role}`).catch(() => {})
      await roleAdmin.unsafe(`drop role if exists ${role}`).catch(() => {})
      await roleAdmin.end()
    }
    await Promise.all([primary.end(), replica.end()])
  }
})
