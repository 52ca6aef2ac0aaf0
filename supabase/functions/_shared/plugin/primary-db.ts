// The primary side of the plugin path: device events and channel overrides. Used by /stats and
// /channel_self only, after the gate passed on the replica.
import postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { PluginPrimary } from './ports.ts'

export function primaryFromUrl(url: string): PluginPrimary {
  const sql = postgres(url, { max: 4, idle_timeout: 60, connect_timeout: 5, onnotice: () => {}, connection: { application_name: 'tollgate-plugin-write' } })
  const primary: PluginPrimary = {
    async insertEvents(events) {
      const rows = events.map((e) => ({
        app_id: e.app_id,
        device_id: e.device_id,
        action: e.action,
        version_name: e.version_name,
        version_build: e.version_build,
        platform: e.platform,
        plugin_version: e.plugin_version,
        is_emulator: e.is_emulator,
        is_prod: e.is_prod,
      }))
      const result = await sql`insert into public.device_events ${sql(rows)}`
      return result.count
    },
    async setDeviceChannel(appId, deviceId, channel) {
      // Re-checked here, on the primary: the replica may lag behind a channel that just
      // stopped allowing self-assignment, or an owner's pin that just arrived. An owner's pin
      // is never overwritten (the conflict update applies to device rows only).
      const [row] = await sql<{ written: number; allowed: boolean | null }[]>`
        with ch as (
          select c.id, c.app_id, c.org_id, c.allow_device_self_set
          from public.channels c
          where c.app_id = ${appId} and c.name = ${channel}
        ),
        written as (
          insert into public.channel_devices as d (app_id, device_id, org_id, channel_id, set_by)
          select ch.app_id, ${deviceId}, ch.org_id, ch.id, 'device' from ch where ch.allow_device_self_set
          on conflict (app_id, device_id) do update
          set channel_id = excluded.channel_id, updated_at = now()
          where d.set_by = 'device'
          returning 1
        )
        select (select count(*)::int from written) as written, (select ch.allow_device_self_set from ch) as allowed`
      if (row!.written === 1) return 'set'
      if (row!.allowed === null) return 'unknown_channel'
      return row!.allowed ? 'pinned' : 'not_allowed'
    },
    async clearDeviceChannel(appId, deviceId) {
      // Only the device's own choice is removed; an owner's pin stays.
      const [row] = await sql<{ removed: number; set_by: string | null }[]>`
        with existing as (
          select d.set_by from public.channel_devices d where d.app_id = ${appId} and d.device_id = ${deviceId}
        ),
        removed as (
          delete from public.channel_devices d
          where d.app_id = ${appId} and d.device_id = ${deviceId} and d.set_by = 'device'
          returning 1
        )
        select (select count(*)::int from removed) as removed, (select existing.set_by from existing) as set_by`
      if (row!.removed > 0) return 'removed'
      return row!.set_by === 'owner' ? 'pinned' : 'none'
    },
    close: () => sql.end({ timeout: 5 }),
  }
  return unavailableAs('primary_unavailable', primary)
}
