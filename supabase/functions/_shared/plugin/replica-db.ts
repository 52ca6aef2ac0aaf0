// The read-replica side of the plugin path. Only published tables (see README "Replica data
// contract"); every session is read-only.
import postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { GateRow } from './gate.ts'
import { gateColumnsSql, gateSql } from './gate.ts'
import type { ChannelInfo, PluginReplica, UpdateTarget } from './ports.ts'

/**
 * The channel a device gets: its override, else the requested default channel if that channel
 * allows self-assignment, else the app's default. $1 app id, $2 device id, $3 requested channel.
 */
const targetSql = `
  with override as (
    select cd.channel_id from public.channel_devices cd where cd.app_id = $1 and cd.device_id = $2
  ),
  target as (
    select c.name as channel, v.name as version, v.bundle_url, v.checksum,
           case when c.id = (select channel_id from override) then 'override'
                when c.name = $3 then 'requested'
                else 'default' end as source
    from public.channels c
    left join public.app_versions v on v.id = c.version_id
    where c.app_id = $1
      and (c.id = (select channel_id from override)
           or (c.name = $3 and c.allow_device_self_set)
           or c.is_default)
    order by case when c.id = (select channel_id from override) then 0
                  when c.name = $3 then 1
                  else 2 end
    limit 1
  )`

export function replicaFromUrl(url: string): PluginReplica {
  const sql = postgres(url, {
    max: 8,
    idle_timeout: 60,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { default_transaction_read_only: true, application_name: 'tollgate-plugin-read' },
  })

  const replica: PluginReplica = {
    async gateRow(appId) {
      const rows = await sql.unsafe<GateRow[]>(gateSql, [appId], { prepare: true })
      return rows[0]
    },
    async updateTarget(appId, deviceId, requestedChannel) {
      const rows = await sql.unsafe<UpdateTarget[]>(`${targetSql} select * from target`, [appId, deviceId, requestedChannel], { prepare: true })
      return rows[0]
    },
    async gatedUpdateTarget(appId, deviceId, requestedChannel) {
      const rows = await sql.unsafe<Array<GateRow & Partial<UpdateTarget>>>(
        `${targetSql}
         select ${gateColumnsSql}, t.channel, t.version, t.bundle_url, t.checksum, t.source
         from public.apps a
         left join public.orgs o on o.id = a.org_id
         left join target t on true
         where a.app_id = $1`,
        [appId, deviceId, requestedChannel],
        { prepare: true },
      )
      const row = rows[0]
      if (!row) return {}
      const gate = { org_id: row.org_id, has_usage_credits: row.has_usage_credits, flag_present: row.flag_present }
      return row.channel ? { gate, target: row as UpdateTarget } : { gate }
    },
    async channel(appId, name) {
      const rows = await sql<ChannelInfo[]>`
        select c.name, c.is_default, c.allow_device_self_set from public.channels c where c.app_id = ${appId} and c.name = ${name}`
      return rows[0]
    },
    async deviceChannel(appId, deviceId) {
      const rows = await sql<{ channel: string; status: 'override' | 'default' }[]>`
        select c.name as channel, case when cd.channel_id is not null then 'override' else 'default' end as status
        from public.channels c
        left join public.channel_devices cd on cd.channel_id = c.id and cd.app_id = c.app_id and cd.device_id = ${deviceId}
        where c.app_id = ${appId} and (cd.channel_id is not null or c.is_default)
        order by cd.channel_id is null
        limit 1`
      return rows[0]
    },
    async selfAssignableChannels(appId) {
      return await sql<ChannelInfo[]>`
        select c.name, c.is_default, c.allow_device_self_set from public.channels c
        where c.app_id = ${appId} and c.allow_device_self_set
        order by c.name`
    },
    async stalenessMs() {
      // clock_timestamp(), not now(): on a standby a query can wait behind WAL replay (a lock
      // conflict), and now() would be the time it started waiting, not the time it read the row.
      const rows = await sql<{ lag_ms: string | null }[]>`
        select (extract(epoch from (pg_catalog.clock_timestamp() - h.beat_at)) * 1000)::bigint as lag_ms from public.replica_heartbeat h`
      const value = rows[0]?.lag_ms
      return value == null ? null : Number(value)
    },
    close: () => sql.end({ timeout: 5 }),
  }
  return unavailableAs('replica_unavailable', replica)
}
