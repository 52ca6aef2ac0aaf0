// /updates, /stats and /channel_self: validate → gate on the replica → do the work.
import { HttpError, json } from '../http.ts'
import { decideGate, type DriftPolicy } from './gate.ts'
import type { PluginPrimary, PluginReplica } from './ports.ts'
import { appIdRule, invalid, parseChannelRequest, parseDeviceInfo, parseEvents, readJsonBody } from './request.ts'

export interface PluginOptions {
  /** 'off' skips the credits gate (benchmarks comparing gated vs ungated only). */
  gate: 'on' | 'off'
  driftPolicy: DriftPolicy
}

function lagHeaders(replica: PluginReplica): HeadersInit {
  const lag = replica.lagMs()
  return lag === null ? {} : { 'x-replication-lag-ms': String(lag) }
}

async function gate(replica: PluginReplica, options: PluginOptions, appId: string): Promise<void> {
  if (options.gate === 'off') return
  decideGate(appId, await replica.gateRow(appId), options.driftPolicy)
}

function allowMethods(req: Request, ...methods: string[]): void {
  if (!methods.includes(req.method)) {
    throw new HttpError(405, 'method_not_allowed', `use ${methods.join(', ')}`)
  }
}

/** POST /updates: the bundle the device should run, or no_new_version_available. */
export function createUpdatesHandler(replica: PluginReplica, options: PluginOptions) {
  return async (req: Request): Promise<Response> => {
    allowMethods(req, 'POST')
    const device = parseDeviceInfo(await readJsonBody(req))
    const channel = device.defaultChannel ?? null
    let target
    if (options.gate === 'off') {
      target = await replica.updateTarget(device.app_id, device.device_id, channel)
    } else {
      // One replica round trip for the gate and the answer.
      const gated = await replica.gatedUpdateTarget(device.app_id, device.device_id, channel)
      decideGate(device.app_id, gated.gate, options.driftPolicy)
      target = gated.target
    }
    const headers = lagHeaders(replica)
    if (!target || !target.version) {
      return json(200, { error: 'no_channel', message: 'no channel with a version for this device' }, headers)
    }
    if (target.version === device.version_name) {
      return json(200, { error: 'no_new_version_available', message: 'the device runs the channel version' }, headers)
    }
    return json(200, { version: target.version, url: target.bundle_url, checksum: target.checksum, channel: target.channel }, headers)
  }
}

/** POST /stats: one event or a batch for one app, written to the primary after the gate. */
export function createStatsHandler(replica: PluginReplica, primary: PluginPrimary, options: PluginOptions) {
  return async (req: Request): Promise<Response> => {
    allowMethods(req, 'POST')
    const events = parseEvents(await readJsonBody(req))
    await gate(replica, options, events[0]!.app_id)
    const inserted = await primary.insertEvents(events)
    return json(200, { status: 'ok', inserted }, lagHeaders(replica))
  }
}

/**
 * /channel_self — POST: set the device's channel (only channels that allow self-assignment);
 * PUT: which channel the device gets; DELETE: drop the device's override;
 * GET ?app_id=: the channels devices may pick.
 */
export function createChannelSelfHandler(replica: PluginReplica, primary: PluginPrimary, options: PluginOptions) {
  return async (req: Request): Promise<Response> => {
    allowMethods(req, 'GET', 'POST', 'PUT', 'DELETE')
    if (req.method === 'GET') {
      const appId = new URL(req.url).searchParams.get('app_id') ?? ''
      const problem = appIdRule(appId)
      if (problem) throw invalid([{ path: 'app_id', message: problem }])
      await gate(replica, options, appId)
      const channels = await replica.selfAssignableChannels(appId)
      return json(200, channels.map((c) => ({ name: c.name, is_default: c.is_default })), lagHeaders(replica))
    }
    const body = await readJsonBody(req)
    if (req.method === 'POST') {
      const request = parseChannelRequest(body)
      await gate(replica, options, request.app_id)
      const channel = await replica.channel(request.app_id, request.channel)
      if (!channel) throw new HttpError(404, 'unknown_channel', `no channel ${request.channel} for this app`)
      if (!channel.allow_device_self_set || !(await primary.setDeviceChannel(request.app_id, request.device_id, request.channel))) {
        throw new HttpError(403, 'channel_self_set_not_allowed', `channel ${request.channel} does not allow devices to pick it`)
      }
      return json(200, { status: 'ok', channel: request.channel }, lagHeaders(replica))
    }
    const device = parseDeviceInfo(body)
    await gate(replica, options, device.app_id)
    if (req.method === 'DELETE') {
      const removed = await primary.clearDeviceChannel(device.app_id, device.device_id)
      return json(200, { status: 'ok', removed }, lagHeaders(replica))
    }
    const current = await replica.deviceChannel(device.app_id, device.device_id)
    if (!current) return json(200, { error: 'no_channel', message: 'no channel for this device' }, lagHeaders(replica))
    return json(200, current, lagHeaders(replica))
  }
}
