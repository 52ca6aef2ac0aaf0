// The page's settings (see src/page-config.ts), fetched from config.json beside the bundle.
import type { PageConfig } from '../src/page-config.ts'

export type { PageConfig }

export async function loadConfig(): Promise<PageConfig> {
  const res = await fetch(new URL('config.json', document.baseURI), { cache: 'no-store' })
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`)
  const config = (await res.json()) as PageConfig
  if (!config.supabaseUrl || !config.anonKey) throw new Error('config.json needs supabaseUrl and anonKey')
  return config
}
