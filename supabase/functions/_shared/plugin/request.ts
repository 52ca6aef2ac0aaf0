// Device request bodies: read with a size cap, validated field by field. Pure functions (no
// database), so they are unit-tested without a server.
import { readCapped } from '../body.ts'
import { HttpError } from '../http.ts'

export const maxBodyBytes = 64 * 1024

export type Platform = 'android' | 'ios' | 'electron'

export interface DeviceInfo {
  app_id: string
  device_id: string
  version_name: string
  version_build: string
  platform: Platform
  plugin_version: string
  is_emulator: boolean
  is_prod: boolean
  defaultChannel?: string
}

export interface Issue {
  path: string
  message: string
}

export const invalid = (issues: Issue[]): HttpError =>
  new HttpError(400, 'invalid_request', 'the request body is not valid', { issues })

/** Reads a JSON body of at most maxBodyBytes; anything else is a 400 invalid_request. */
export async function readJsonBody(req: Request): Promise<unknown> {
  if (!req.body) throw invalid([{ path: '', message: 'a JSON body is required' }])
  const bytes = await readCapped(req.body, maxBodyBytes, req.headers.get('content-length'))
  if (!bytes) throw invalid([{ path: '', message: `body larger than ${maxBodyBytes} bytes` }])
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw invalid([{ path: '', message: 'body is not valid UTF-8 JSON' }])
  }
}

type Rule = (value: unknown) => string | undefined

const text = (pattern: RegExp, max: number): Rule => (value) =>
  typeof value !== 'string' ? 'must be a string' : value.length > max ? `at most ${max} characters` : pattern.test(value) ? undefined : `must match ${pattern.source}`
const bool: Rule = (value) => (typeof value === 'boolean' ? undefined : 'must be a boolean')
const oneOf = (...options: string[]): Rule => (value) => (typeof value === 'string' && options.includes(value) ? undefined : `must be one of ${options.join(', ')}`)

export const appIdRule = text(/^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$/, 128)
export const channelRule = text(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 64)

const deviceRules: Record<keyof DeviceInfo, { rule: Rule; optional?: boolean }> = {
  app_id: { rule: appIdRule },
  device_id: { rule: text(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/, 128) },
  version_name: { rule: text(/^[0-9A-Za-z][0-9A-Za-z.+_-]*$/, 64) },
  version_build: { rule: text(/^[0-9A-Za-z][0-9A-Za-z.+_-]*$/, 64) },
  platform: { rule: oneOf('android', 'ios', 'electron') },
  plugin_version: { rule: text(/^[0-9A-Za-z][0-9A-Za-z.+_-]*$/, 32) },
  is_emulator: { rule: bool },
  is_prod: { rule: bool },
  defaultChannel: { rule: channelRule, optional: true },
}

/** Checks `body` against `rules`; returns the typed object or the list of issues. */
function check<T>(body: unknown, rules: Record<string, { rule: Rule; optional?: boolean }>, prefix = ''): { value?: T; issues: Issue[] } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { issues: [{ path: prefix, message: 'must be a JSON object' }] }
  }
  const record = body as Record<string, unknown>
  const issues: Issue[] = []
  const value: Record<string, unknown> = {}
  for (const [key, { rule, optional }] of Object.entries(rules)) {
    const field = record[key]
    if (field === undefined || field === null) {
      if (!optional) issues.push({ path: `${prefix}${key}`, message: 'is required' })
      continue
    }
    const problem = rule(field)
    if (problem) issues.push({ path: `${prefix}${key}`, message: problem })
    else value[key] = field
  }
  return issues.length ? { issues } : { value: value as T, issues }
}

export function parseDeviceInfo(body: unknown): DeviceInfo {
  const { value, issues } = check<DeviceInfo>(body, deviceRules)
  if (!value) throw invalid(issues)
  return value
}

export interface DeviceEvent extends DeviceInfo {
  action: string
}

const eventRules = { ...deviceRules, action: { rule: text(/^[a-z][a-z0-9_]*$/, 64) } }

export const maxEventsPerBatch = 100

/** /stats: one event or a batch of 1..100, all for the same app. */
export function parseEvents(body: unknown): DeviceEvent[] {
  const list = Array.isArray(body) ? body : [body]
  if (list.length === 0 || list.length > maxEventsPerBatch) {
    throw invalid([{ path: '', message: `send 1 to ${maxEventsPerBatch} events` }])
  }
  const events: DeviceEvent[] = []
  const issues: Issue[] = []
  list.forEach((item, index) => {
    const result = check<DeviceEvent>(item, eventRules, Array.isArray(body) ? `${index}.` : '')
    if (result.value) events.push(result.value)
    issues.push(...result.issues)
  })
  if (issues.length) throw invalid(issues)
  const apps = new Set(events.map((e) => e.app_id))
  if (apps.size > 1) throw invalid([{ path: 'app_id', message: 'all events of a batch must be for the same app' }])
  return events
}

export interface ChannelRequest extends DeviceInfo {
  channel: string
}

export function parseChannelRequest(body: unknown): ChannelRequest {
  const { value, issues } = check<ChannelRequest>(body, { ...deviceRules, channel: { rule: channelRule } })
  if (!value) throw invalid(issues)
  return value
}
