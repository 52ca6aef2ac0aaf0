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
const open: ChannelInfo = { name: 'beta', is_default: false, allow_device_self_set: true }
const locked: ChannelInfo = { name: 'production', is_default: true, allow_device_self_set: false }

/** A replica that answers from fixed values and counts the reads besides the lag measurement. */
function fakeReplica(gate: GateRow | undefined, target?: UpdateTarget, channel?: ChannelInfo, staleness: () => Promise<number | null> = () => Promise.resolve(3)): PluginReplica & { reads: string[] } {
  const reads: string[] = []
  const read = <T>(name: string, value: T) => (reads.push(name), Promise.resolve(value))
  return {
    reads,
    gateRow: () => read('gateRow', gate),
    updateTarget: () => read('updateTarget', target),
    gatedUpdateTarget: () => read('gatedUpdateTarget', { gate, target: gate ? target : undefined }),
    channel: () => read('channel', channel),
    deviceChannel: () => read('deviceChannel', undefined),
    selfAssignableChannels: () => read('selfAssignableChannels', []),
    stalenessMs: staleness,
    close: () => Promise.resolve(),
  }
}

/** A primary that records writes; `pinned` makes the device's override the owner's. */
function recordingPrimary(options: { pinned?: boolean; fail?: Error } = {}): PluginPrimary & { writes: string[] } {
  const writes: string[] = []
  const write = <T>(what: string, value: T) => {
    writes.push(what)
    return options.fail ? Promise.reject(options.fail) : Promise.resolve(value)
  }
  return {
    writes,
    insertEvents: (events) => write(`events:${events.length}`, events.length),
    setDeviceChannel: (_a, _d, channel) => write(`set:${channel}`, options.pinned ? 'pinned' : 'set'),
    clearDeviceChannel: () => write('clear', options.pinned ? 'pinned' : 'removed'),
    close: () => Promise.resolve(),
  }
}

const post = (body: unknown, method = 'POST') => new Request('http://fn/x', { method, body: JSON.stringify(body) })

async function answer(res: Response): Promise<[number, string | undefined, string | null]> {
  const text = await res.text()
  const body = text ? JSON.parse(text) : {}
  return [res.status, Array.isArray(body) ? undefined : body.error, res.headers.get('x-replication-lag-ms')]
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
  assertEquals(await answer(await createUpdatesHandler(fakeReplica(unpaid, target), { gate: 'off', driftPolicy: 'deny' })(post(device))), [200, undefined, '3'])
  assertEquals(await answer(await createUpdatesHandler(fakeReplica(unpaid, target), on)(post(device))), [429, 'no_usage_credits', '3'])
})

Deno.test('/stats writes to the primary only after the gate passes', async () => {
  const primary = recordingPrimary()
  const event = { ...device, action: 'app_ready' }
  assertEquals(await answer(await createStatsHandler(fakeReplica(unpaid), primary, on)(post([event, event]))), [429, 'no_usage_credits', '3'])
  assertEquals(await answer(await createStatsHandler(fakeReplica(undefined), primary, on)(post(event))), [404, 'unknown_app', '3'])
  assertEquals(await answer(await createStatsHandler(fakeReplica(paid), primary, on)(post([event, { ...event, app_id: 'com.other.app' }]))), [400, 'invalid_request', '3'])
  assertEquals(primary.writes, [])
  assertEquals(await answer(await createStatsHandler(fakeReplica(paid), primary, on)(post([event, event]))), [200, undefined, '3'])
  assertEquals(primary.writes, ['events:2'])
})

Deno.test('/channel_self refuses channels that forbid self-assignment with 403', async () => {
  const primary = recordingPrimary()
  const handler = createChannelSelfHandler(fakeReplica(paid, undefined, locked), primary, on)
  assertEquals(await answer(await handler(post({ ...device, channel: 'production' }))), [403, 'channel_self_set_not_allowed', '3'])
  assertEquals(await answer(await createChannelSelfHandler(fakeReplica(paid), primary, on)(post({ ...device, channel: 'nope' }))), [404, 'unknown_channel', '3'])
  assertEquals(primary.writes, [])
  assertEquals(await answer(await createChannelSelfHandler(fakeReplica(paid, undefined, open), primary, on)(post({ ...device, channel: 'beta' }))), [200, undefined, '3'])
  assertEquals(primary.writes, ['set:beta'])
})

Deno.test('/channel_self: a device can neither drop nor replace an override the owner pinned', async () => {
  const pinned = recordingPrimary({ pinned: true })
  const handler = createChannelSelfHandler(fakeReplica(paid, undefined, open), pinned, on)
  assertEquals(await answer(await handler(post(device, 'DELETE'))), [403, 'channel_override_not_removable', '3'])
  assertEquals(await answer(await handler(post({ ...device, channel: 'beta' }))), [403, 'channel_override_not_replaceable', '3'])

  const own = createChannelSelfHandler(fakeReplica(paid, undefined, open), recordingPrimary(), on)
  const removed = await own(post(device, 'DELETE'))
  assertEquals([removed.status, await removed.json()], [200, { status: 'ok', removed: true }])
  const none: PluginPrimary = { ...recordingPrimary(), clearDeviceChannel: () => Promise.resolve('none') }
  const nothing = await createChannelSelfHandler(fakeReplica(paid), none, on)(post(device, 'DELETE'))
  assertEquals([nothing.status, await nothing.json()], [200, { status: 'ok', removed: false }])
})

Deno.test('every answer carries the lag header: 400, 405, 503 and an unexpected 500 included', async () => {
  const down = recordingPrimary({ fail: new HttpError(503, 'primary_unavailable', 'the database is unavailable, retry shortly') })
  const stats = createStatsHandler(fakeReplica(paid), down, on)
  assertEquals(await answer(await stats(post({ ...device, action: 'app_ready' }))), [503, 'primary_unavailable', '3'])
  assertEquals(await answer(await stats(new Request('http://fn/x', { method: 'POST', body: '{nope' }))), [400, 'invalid_request', '3'])
  assertEquals(await answer(await stats(new Request('http://fn/x', { method: 'PATCH', body: '{}' }))), [405, 'method_not_allowed', '3'])
  const broken = recordingPrimary({ fail: new Error('boom') })
  const originalError = console.error
  console.error = () => {}
  try {
    assertEquals(await answer(await createStatsHandler(fakeReplica(paid), broken, on)(post({ ...device, action: 'app_ready' }))), [500, 'internal_error', '3'])
  } finally {
    console.error = originalError
  }
})

Deno.test('no lag header when the replica cannot be measured (unreachable): the answer itself is unchanged', async () => {
  const unreachable = () => Promise.reject(new HttpError(503, 'replica_unavailable', 'down'))
  const replica = { ...fakeReplica(paid), gateRow: unreachable, stalenessMs: unreachable }
  assertEquals(await answer(await createStatsHandler(replica, recordingPrimary(), on)(post({ ...device, action: 'app_ready' }))), [503, 'replica_unavailable', null])
})

Deno.test('refused methods and OPTIONS do no work: no body read, no database', async () => {
  for (const make of [
    (r: PluginReplica, _p: PluginPrimary) => createUpdatesHandler(r, on),
    (r: PluginReplica, p: PluginPrimary) => createStatsHandler(r, p, on),
    (r: PluginReplica, p: PluginPrimary) => createChannelSelfHandler(r, p, on),
  ]) {
    const replica = fakeReplica(paid, undefined, open)
    const primary = recordingPrimary()
    const handler = make(replica, primary)
    const patch = new Request('http://fn/x', { method: 'PATCH', body: JSON.stringify(device) })
    const refused = await handler(patch)
    assertEquals([refused.status, (await refused.json()).error, refused.headers.get('allow') !== null], [405, 'method_not_allowed', true])
    const options = new Request('http://fn/x', { method: 'OPTIONS', body: JSON.stringify(device) })
    const preflight = await handler(options)
    assertEquals([preflight.status, await preflight.text()], [204, ''])
    assertEquals(preflight.headers.get('access-control-allow-origin'), '*')
    assertEquals(preflight.headers.get('access-control-allow-methods')?.includes('OPTIONS'), true)
    assertEquals([patch.bodyUsed, options.bodyUsed, replica.reads, primary.writes], [false, false, [], []])
  }
})

Deno.test('a GET to a POST-only endpoint is 405 with the allowed methods', async () => {
  const res = await createUpdatesHandler(fakeReplica(paid), on)(new Request('http://fn/x'))
  assertEquals([res.status, (await res.json()).error, res.headers.get('allow')], [405, 'method_not_allowed', 'POST'])
})
