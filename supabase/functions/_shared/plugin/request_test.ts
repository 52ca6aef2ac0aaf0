import { HttpError } from '../http.ts'
import { assertEquals } from '../testing.ts'
import { maxBodyBytes, parseChannelRequest, parseDeviceInfo, parseEvents, readJsonBody } from './request.ts'

const device = {
  app_id: 'com.example.app',
  device_id: '9f0c2a1e-0000-4000-8000-000000000001',
  version_name: '1.0.0',
  version_build: '10',
  platform: 'ios',
  plugin_version: '6.1.0',
  is_emulator: false,
  is_prod: true,
}

function issuesOf(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn()
  } catch (error) {
    if (error instanceof HttpError && error.key === 'invalid_request' && error.status === 400) {
      return error.extra.issues as Array<{ path: string; message: string }>
    }
    throw error
  }
  throw new Error('expected invalid_request')
}

async function bodyIssues(body: BodyInit, headers: HeadersInit = {}): Promise<string[]> {
  try {
    await readJsonBody(new Request('http://fn/updates', { method: 'POST', body, headers }))
  } catch (error) {
    if (error instanceof HttpError && error.status === 400) return (error.extra.issues as Array<{ message: string }>).map((i) => i.message)
    throw error
  }
  throw new Error('expected invalid_request')
}

Deno.test('a complete device body parses, with an optional defaultChannel', () => {
  assertEquals(parseDeviceInfo(device), device)
  assertEquals(parseDeviceInfo({ ...device, defaultChannel: 'beta' }).defaultChannel, 'beta')
})

Deno.test('missing fields and wrong types are each reported', () => {
  const { app_id: _, ...withoutApp } = device
  assertEquals(issuesOf(() => parseDeviceInfo(withoutApp)), [{ path: 'app_id', message: 'is required' }])
  const issues = issuesOf(() => parseDeviceInfo({ ...device, is_prod: 'yes', platform: 'windows', version_build: 7 }))
  assertEquals(issues.map((i) => i.path).sort(), ['is_prod', 'platform', 'version_build'])
  assertEquals(issuesOf(() => parseDeviceInfo([device]))[0]!.message, 'must be a JSON object')
})

Deno.test('oversized and malformed strings are refused', () => {
  assertEquals(issuesOf(() => parseDeviceInfo({ ...device, device_id: 'x'.repeat(129) }))[0]!.message, 'at most 128 characters')
  assertEquals(issuesOf(() => parseDeviceInfo({ ...device, app_id: 'not a domain' }))[0]!.path, 'app_id')
  assertEquals(issuesOf(() => parseDeviceInfo({ ...device, app_id: "com.x'; drop table apps;--" }))[0]!.path, 'app_id')
})

Deno.test('bodies that are not JSON, not UTF-8, empty or over the size cap are refused', async () => {
  assertEquals(await bodyIssues('not json'), ['body is not valid UTF-8 JSON'])
  assertEquals(await bodyIssues(new Uint8Array([0x7b, 0xff, 0x7d])), ['body is not valid UTF-8 JSON'])
  assertEquals(await bodyIssues(''), ['body is not valid UTF-8 JSON'])
  const big = JSON.stringify({ ...device, padding: 'x'.repeat(1024 * 1024) })
  assertEquals(await bodyIssues(big), [`body larger than ${maxBodyBytes} bytes`])
  // A lying content-length does not get a large body through either.
  const stream = new ReadableStream({
    start(controller) {
      for (let i = 0; i < 20; i++) controller.enqueue(new Uint8Array(8192).fill(0x20))
      controller.close()
    },
  })
  assertEquals(await bodyIssues(stream), [`body larger than ${maxBodyBytes} bytes`])
})

Deno.test('a stats batch must be 1..100 events of one app', () => {
  const event = { ...device, action: 'app_ready' }
  assertEquals(parseEvents(event).length, 1)
  assertEquals(parseEvents([event, { ...event, action: 'download_complete' }]).length, 2)
  assertEquals(issuesOf(() => parseEvents([event, { ...event, app_id: 'com.other.app' }])), [
    { path: 'app_id', message: 'all events of a batch must be for the same app' },
  ])
  assertEquals(issuesOf(() => parseEvents([])).length, 1)
  assertEquals(issuesOf(() => parseEvents(Array(101).fill(event))).length, 1)
  assertEquals(issuesOf(() => parseEvents([event, { ...event, action: 'Bad Action' }]))[0]!.path, '1.action')
})

Deno.test('channel requests need a valid channel name', () => {
  assertEquals(parseChannelRequest({ ...device, channel: 'beta' }).channel, 'beta')
  assertEquals(issuesOf(() => parseChannelRequest(device)), [{ path: 'channel', message: 'is required' }])
})
