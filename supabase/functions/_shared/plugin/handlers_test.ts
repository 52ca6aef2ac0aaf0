import { HttpError } from '../http.ts'
import { assertEquals } from '../testing.ts'
import type { GateRow } from './gate.ts'
import { decideGate } from './gate.ts'
import { createChannelSelfHandler, createStatsHandler, createUpdatesHandler, type PluginOptions } from './handlers.ts'
import type { ChannelInfo, PluginPrimary, PluginReplica, UpdateTarget } from './ports.ts'

const device = {
  app_id: 'com.example.app',
  device_id: 'device-1',
  version_name: '1.0.0',
  version_build: '10',
  platform: 'android',
  plugin_version: '6.1.0',
  is_emulator: false,
  is_prod: true,
}

const paid: GateRow = { org_id: 'org-1', has_usage_credits: true, flag_present: true }
const unpaid: GateRow = { ...paid, has_usage_credits: false }
const drifted: GateRow = { org_id: 'org-1', has_usage_credits: null, flag_present: false }
const on: PluginOptions = { gate: 'on', driftPolicy: 'deny' }

function fakeReplica(gate: GateRow | undefined, target?: UpdateTarget, channel?: ChannelInfo): PluginReplica {
  return {
    gateRow: () => Promise.resolve(gate),
    updateTarget: () => Promise.resolve(target),
    gatedUpdateTarget: () => Promise.resolve({ gate, target: gate ? target : undefined }),
    channel: () => Promise.resolve(channel),
    deviceChannel: () => Promise.resolve(undefined),
    selfAssignableChannels: () => Promise.resolve([]),
    lagMs: () => 3,
    close: () => Promise.resolve(),
  }
}

function recordingPrimary(): PluginPrimary & { writes: string[] } {
  const writes: string[] = []
  return {
    writes,
    insertEvents: (events) => (writes.push(`events:${events.length}`), Promise.resolve(events.length)),
    setDeviceChannel: (_a, _d, channel) => (writes.push(`set:${channel}`), Promise.resolve(true)),
    clearDeviceChannel: () => (writes.push('clear'), Promise.resolve(true)),
    close: () => Promise.resolve(),
  }
}

const post = (body: unknown, method = 'POST') => new Request('http://fn/x', { method, body: JSON.stringify(body) })

async function status(promise: Promise<Response>): Promise<[number, string | undefined]> {
  try {
    const res = await promise
    const body = await res.json()
    return [res.status, body.error]
  } catch (error) {
    if (error instanceof HttpError) return [error.status, error.key]
    throw error
  }
}

Deno.test('the gate: unknown app 404, no credits 429, credits pass', () => {
  const keyOf = (fn: () => unknown) => {
    try {
      fn()
      return 'pass'
    } catch (error) {
      return `${(error as HttpError).status} ${(error as HttpError).key}`
    }
  }
  assertEquals(keyOf(() => decideGate('a.b', undefined, 'deny')), '404 unknown_app')
  assertEquals(keyOf(() => decideGate('a.b', unpaid, 'deny')), '429 no_usage_credits')
  assertEquals(keyOf(() => decideGate('a.b', paid, 'deny')), 'pass')
})

Deno.test('schema drift follows the documented policy: deny by default, allow when set', () => {
  let denied = ''
  try {
    decideGate('a.b', drifted, 'deny')
  } catch (error) {
    denied = (error as HttpError).key
  }
  assertEquals(denied, 'no_usage_credits')
  assertEquals(decideGate('a.b', drifted, 'allow'), { org_id: 'org-1' })
})

Deno.test('/updates answers the channel version, or no_new_version_available, with the lag header', async () => {
  const target: UpdateTarget = { channel: 'production', version: '1.1.0', bundle_url: 'https://x/1.1.0.zip', checksum: 'c', source: 'default' }
  const res = await createUpdatesHandler(fakeReplica(paid, target), on)(post(device))
  assertEquals([res.status, res.headers.get('x-replication-lag-ms')], [200, '3'])
  assertEquals((await res.json()).version, '1.1.0')
  const same = await createUpdatesHandler(fakeReplica(paid, { ...target, version: '1.0.0' }), on)(post(device))
  assertEquals((await same.json()).error, 'no_new_version_available')
})

Deno.test('/updates with the gate off skips the credits check (benchmark mode)', async () => {
  const target: UpdateTarget = { channel: 'p', version: '2.0.0', bundle_url: 'u', checksum: 'c', source: 'default' }
  assertEquals(await status(createUpdatesHandler(fakeReplica(unpaid, target), { gate: 'off', driftPolicy: 'deny' })(post(device))), [200, undefined])
  assertEquals(await status(createUpdatesHandler(fakeReplica(unpaid, target), on)(post(device))), [429, 'no_usage_credits'])
})

Deno.test('/stats writes to the primary only after the gate passes', async () => {
  const primary = recordingPrimary()
  const event = { ...device, action: 'app_ready' }
  assertEquals(await status(createStatsHandler(fakeReplica(unpaid), primary, on)(post([event, event]))), [429, 'no_usage_credits'])
  assertEquals(await status(createStatsHandler(fakeReplica(undefined), primary, on)(post(event))), [404, 'unknown_app'])
  assertEquals(await status(createStatsHandler(fakeReplica(paid), primary, on)(post([event, { ...event, app_id: 'com.other.app' }]))), [400, 'invalid_request'])
  assertEquals(primary.writes, [])
  assertEquals(await status(createStatsHandler(fakeReplica(paid), primary, on)(post([event, event]))), [200, undefined])
  assertEquals(primary.writes, ['events:2'])
})

Deno.test('/channel_self refuses channels that forbid self-assignment with 403', async () => {
  const primary = recordingPrimary()
  const locked: ChannelInfo = { name: 'production', is_default: true, allow_device_self_set: false }
  const handler = createChannelSelfHandler(fakeReplica(paid, undefined, locked), primary, on)
  assertEquals(await status(handler(post({ ...device, channel: 'production' }))), [403, 'channel_self_set_not_allowed'])
  assertEquals(await status(createChannelSelfHandler(fakeReplica(paid), primary, on)(post({ ...device, channel: 'nope' }))), [404, 'unknown_channel'])
  assertEquals(primary.writes, [])
  const open: ChannelInfo = { name: 'beta', is_default: false, allow_device_self_set: true }
  assertEquals(await status(createChannelSelfHandler(fakeReplica(paid, undefined, open), primary, on)(post({ ...device, channel: 'beta' }))), [200, undefined])
  assertEquals(primary.writes, ['set:beta'])
})

Deno.test('plugin endpoints refuse other methods with 405', async () => {
  assertEquals(await status(createUpdatesHandler(fakeReplica(paid), on)(new Request('http://fn/x'))), [405, 'method_not_allowed'])
})
