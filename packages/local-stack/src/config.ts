import fs from 'node:fs'
import path from 'node:path'
import { parse } from 'smol-toml'
import { functionsDir, supabaseDir } from './paths.ts'

interface SupabaseConfig {
  api?: { schemas?: string[]; extra_search_path?: string[]; max_rows?: number }
  functions?: Record<string, { verify_jwt?: boolean; enabled?: boolean }>
}

/** supabase/config.toml: the same settings `supabase start` reads, applied to our engines. */
export function readSupabaseConfig(): SupabaseConfig {
  return parse(fs.readFileSync(path.join(supabaseDir, 'config.toml'), 'utf8')) as SupabaseConfig
}

export interface EdgeFunction {
  name: string
  entrypoint: string
  /** As on Supabase: true unless config.toml says `[functions.<name>] verify_jwt = false`. */
  verifyJwt: boolean
}

/** Every folder of supabase/functions with an index.ts, except shared code (`_shared`, `_*`). */
export function discoverFunctions(config = readSupabaseConfig()): EdgeFunction[] {
  if (!fs.existsSync(functionsDir)) return []
  return fs
    .readdirSync(functionsDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('_') && !entry.name.startsWith('.'))
    .filter((entry) => fs.existsSync(path.join(functionsDir, entry.name, 'index.ts')))
    .filter((entry) => config.functions?.[entry.name]?.enabled !== false)
    .map((entry) => ({
      name: entry.name,
      entrypoint: path.join(functionsDir, entry.name, 'index.ts'),
      verifyJwt: config.functions?.[entry.name]?.verify_jwt ?? true,
    }))
}
