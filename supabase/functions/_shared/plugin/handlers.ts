// /updates, /stats and /channel_self: method allow-list → validate → gate on the replica → do
// the work. Every answer, errors included, carries x-replication-lag-ms (see pluginEndpoint).
import { handle } from '../entry.ts'
import { HttpError, json } from '../http.ts'
import { decideGate, type DriftPolicy } from './gate.ts'
import { LagMeter, type LagMeterOptions } from './lag.ts'
import type { PluginPrimary, PluginReplica } from './ports.ts'
import { appIdRule, invalid, parseChannelRequest, parseDeviceInfo, parseEvents, readJsonBody } from './request.ts'

export interface PluginOptions {
  /** 'off' skips the credits gate (benchmarks comparing gated vs ungated only). */
  gate: 'on' | 'off'
  driftPolicy: DriftPolicy
  /** Lag measurement cadence (tests shorten it). */
  lag?: LagMeterOptions
}

export const lagHeader = 'x-replication-lag-ms'

function withLag(res: Response, lag: number | null): Response {
  if (lag !== null) res.headers.set(lagHeader, String(lag))
  res.headers.set('access-control-expose-headers', lagHeader)
  return res
}

/**
 * A plugin endpoint through the shared entry (entry.ts): OPTIONS answers CORS only, a method
 * outside `methods` is 405 before the body is read or a database is touched, devices need no
 * token (the app id names the owner). `work` runs while the lag is measured alongside (at most
 * once a second), and every answer carries it: 2xx, 4xx, and 5xx whenever the replica could be
 * measured; a 405 carries the last figure this process measured, without a query.
 */
function pluginEndpoint(fn: string, meter: LagMeter, methods: string[], work: (req: Request) => Promise<Response>) {
  return handle(fn, {
    methods,
    access: 'public',
    decorate: async (res, refused) => withLag(res, refused ? meter.last() : await meter.current()),
  }, (req) => {
    meter.refresh()
    return work(req)
  })
}

function lagMeter(replica: PluginReplica, options: PluginOptions): LagMeter {
  const meter = new LagMeter(() => replica.stalenessMs(), options.lag)
  // Measured once at start, so that even a first answer that must not touch the database
  // (405) has a figure to report.
  meter.refresh()
  return meter
}

async function gate(replica: PluginReplica, options: PluginOptions, appId: string): Promise<void> {
  if (options.gate === 'off') return
  decideGate(appId, await replica.gateRow(appId), options.driftPolicy)
}

/** POST /updates: the bundle the device should run, or no_new_version_available. */
export function createUpdatesHandler(replica: PluginReplica, options: PluginOptions) {
  return pluginEndpoint('updates', lagMeter(replica, options), ['POST'], async (req) => {
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
    if (!target || !target.version) {
      return json(200, { error: 'no_channel', message: 'no channel with a version for this device' })
    }
    if (target.version === device.version_name) {
      return json(200, { error: 'no_new_version_available', message: 'the device runs the channel version' })
    }
    return json(200, { version: target.version, url: target.bundle_url, checksum: target.checksum, channel: target.channel })
  })
}

/** POST /stats: one event or a batch for one app, written to the primary after the gate. */
export function createStatsHandler(replica: PluginReplica, primary: PluginPrimary, options: PluginOptions) {
  return pluginEndpoint('stats', lagMeter(replica, options), ['POST'], async (req) => {
    const events = parseEvents(await readJsonBody(req))
    await gate(replica, options, events[0]!.app_id)
    const inserted = await primary.insertEvents(events)
    return json(200, { status: 'ok', inserted })
  })
}

/**
 * /channel_self — POST: the device picks a channel that allows self-assignment; PUT: which
 * channel the device gets; DELETE: the device drops the override it chose; GET ?app_id=: the
 * channels devices may pick. An override the app owner pinned is the owner's: the device can
 * neither replace (POST) nor drop (DELETE) it.
 */
export function createChannelSelfHandler(replica: PluginReplica, primary: PluginPrimary, options: PluginOptions) {
  return pluginEndpoint('channel_self', lagMeter(replica, options), ['GET', 'POST', 'PUT', 'DELETE'], async (req) => {
    if (req.method === 'GET') {
      const appId = new URL(req.url).searchParams.get('app_id') ?? ''
      const problem = appIdRule(appId)
      if (problem) throw invalid([{ path: 'app_id', message: problem }])
      await gate(replica, options, appId)
      const channels = await replica.selfAssignableChannels(appId)
      return json(200, channels.map((c) => ({ name: c.name, is_default: c.is_default })))
    }
    const body = await readJsonBody(req)
    if (req.method === 'POST') {
      const request = parseChannelRequest(body)
      await gate(replica, options, request.app_id)
      const channel = await replica.channel(request.app_id, request.channel)
      const outcome = !channel
        ? 'unknown_channel'
        : !channel.allow_device_self_set
        ? 'not_allowed'
        : await primary.setDeviceChannel(request.app_id, request.device_id, request.channel)
      switch (outcome) {
        case 'set':
          return json(200, { status: 'ok', channel: request.channel })
        case 'unknown_channel':
          throw new HttpError(404, 'unknown_channel', `no channel ${request.channel} for this app`)
        case 'not_allowed':
          throw new HttpError(403, 'channel_self_set_not_allowed', `channel ${request.channel} does not allow devices to pick it`)
        case 'pinned':
          throw new HttpError(403, 'channel_override_not_replaceable', 'the app owner pinned this device to its channel')
      }
    }
    const device = parseDeviceInfo(body)
    await gate(replica, options, device.app_id)
    if (req.method === 'DELETE') {
      const outcome = await primary.clearDeviceChannel(device.app_id, device.device_id)
      if (outcome === 'pinned') throw new HttpError(403, 'channel_override_not_removable', 'the app owner pinned this device to its channel')
      return json(200, { status: 'ok', removed: outcome === 'removed' })
    }
    const current = await replica.deviceChannel(device.app_id, device.device_id)
    if (!current) return json(200, { error: 'no_channel', message: 'no channel for this device' })
    return json(200, current)
  })
}
