import { randomUUID } from 'node:crypto'
import { env } from './env.ts'
import type { TestUser } from './clients.ts'

export interface TestApp {
  appId: string
  orgId: string
  versions: Record<string, number>
}

/**
 * An app owned by the user's personal org, created by the user through PostgREST (owners
 * and admins manage their apps under RLS): versions 1.0.0 and 1.1.0, a default channel `production`
 * on 1.1.0 and a self-assignable `beta` on 1.0.0.
 */
export async function createApp(owner: TestUser): Promise<TestApp> {
  const appId = `com.test${randomUUID().replaceAll('-', '').slice(0, 12)}.app`
  const orgId = owner.personalOrgId
  const db = owner.client
  const app = await db.from('apps').insert({ app_id: appId, org_id: orgId, name: 'test app' })
  if (app.error) throw new Error(`setup: app: ${app.error.message}`)
  const versions = await db
    .from('app_versions')
    .insert(['1.0.0', '1.1.0'].map((name) => ({ app_id: appId, org_id: orgId, name, bundle_url: `https://example.com/${name}.zip`, checksum: 'c'.repeat(64) })))
    .select('id, name')
  if (versions.error) throw new Error(`setup: versions: ${versions.error.message}`)
  const ids = Object.fromEntries(versions.data.map((v: { id: number; name: string }) => [v.name, v.id]))
  const channels = await db.from('channels').insert([
    { app_id: appId, org_id: orgId, name: 'production', version_id: ids['1.1.0'], is_default: true, allow_device_self_set: false },
    { app_id: appId, org_id: orgId, name: 'beta', version_id: ids['1.0.0'], is_default: false, allow_device_self_set: true },
  ])
  if (channels.error) throw new Error(`setup: channels: ${channels.error.message}`)
  return { appId, orgId, versions: ids }
}

export function deviceBody(appId: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    app_id: appId,
    device_id: `device-${randomUUID()}`,
    version_name: '1.0.0',
    version_build: '100',
    platform: 'android',
    plugin_version: '6.1.0',
    is_emulator: false,
    is_prod: true,
    ...overrides,
  }
}

/** Calls a plugin endpoint as a device does: no user JWT, a JSON body. */
export async function callPlugin(fn: 'updates' | 'stats' | 'channel_self', body: unknown, method = 'POST'): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/${fn}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // keep the raw text: the assertion will show it
  }
  return { status: res.status, body: parsed, headers: res.headers }
}

export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}
