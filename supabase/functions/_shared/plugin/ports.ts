// What the plugin handlers need from the databases, as interfaces: the SQL implementations
// live in replica-db.ts (read replica) and primary-db.ts (primary); tests can pass fakes.
import type { GateRow } from './gate.ts'
import type { DeviceEvent } from './request.ts'

export interface UpdateTarget {
  channel: string
  version: string | null
  bundle_url: string | null
  checksum: string | null
  source: 'override' | 'requested' | 'default'
}

export interface ChannelInfo {
  name: string
  is_default: boolean
  allow_device_self_set: boolean
}

/** Reads of the plugin path. Implementations must touch published tables only. */
export interface PluginReplica {
  gateRow(appId: string): Promise<GateRow | undefined>
  /** The device's override, else the requested default channel if it allows self-assignment, else the app's default. */
  updateTarget(appId: string, deviceId: string, requestedChannel: string | null): Promise<UpdateTarget | undefined>
  /** The gate row and the update target in one round trip (undefined gate: unknown app). */
  gatedUpdateTarget(appId: string, deviceId: string, requestedChannel: string | null): Promise<{ gate?: GateRow; target?: UpdateTarget }>
  channel(appId: string, name: string): Promise<ChannelInfo | undefined>
  deviceChannel(appId: string, deviceId: string): Promise<{ channel: string; status: 'override' | 'default' } | undefined>
  selfAssignableChannels(appId: string): Promise<ChannelInfo[]>
  /**
   * How old the replica's newest data may be, in ms: the replica's clock minus the replicated
   * heartbeat's stamp (null when the replica has no heartbeat row). One round trip.
   */
  stalenessMs(): Promise<number | null>
  close(): Promise<void>
}

/** Writes of the plugin path: always on the primary, always after the gate. */
export interface PluginPrimary {
  insertEvents(events: DeviceEvent[]): Promise<number>
  /**
   * The device picks a channel: set (override written, set_by device), unknown_channel or
   * not_allowed (checked again on the primary), or pinned (the owner pinned the device: untouched).
   */
  setDeviceChannel(appId: string, deviceId: string, channel: string): Promise<'set' | 'unknown_channel' | 'not_allowed' | 'pinned'>
  /** The device drops the override it chose: removed, none (there was none), or pinned (the owner's: untouched). */
  clearDeviceChannel(appId: string, deviceId: string): Promise<'removed' | 'none' | 'pinned'>
  close(): Promise<void>
}
