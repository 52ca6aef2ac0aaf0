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
      // stopped allowing self-assignment.
      const result = await sql`
        insert into public.channel_devices (app_id, device_id, org_id, channel_id)
        select c.app_id, ${deviceId}, c.org_id, c.id
        from public.channels c
        where c.app_id = ${appId} and c.name = ${channel} and c.allow_device_self_set
        on conflict (app_id, device_id) do update set channel_id = excluded.channel_id, updated_at = now()`
      return result.count === 1
    },
    async clearDeviceChannel(appId, deviceId) {
      const result = await sql`delete from public.channel_devices where app_id = ${appId} and device_id = ${deviceId}`
      return result.count > 0
    },
    close: () => sql.end({ timeout: 5 }),
  }
  return unavailableAs('primary_unavailable', primary)
}
