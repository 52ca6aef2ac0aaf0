import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { postgrestBinary } from './binaries.ts'
import { readSupabaseConfig } from './config.ts'
import { spawnService, waitFor } from './process.ts'

export interface PostgrestOptions {
  dbUrl: string
  jwtSecret: string
  port: number
  adminPort: number
  logDir: string
}

/** Starts PostgREST 12 configured like Supabase's API (schemas, search path, roles, max rows). */
export async function startPostgrest(options: PostgrestOptions): Promise<ChildProcess> {
  const api = readSupabaseConfig().api ?? {}
  const logFile = path.join(options.logDir, 'postgrest.log')
  const child = spawnService(postgrestBinary(), [], {
    logFile,
    env: {
      PATH: process.env.PATH,
      PGRST_DB_URI: options.dbUrl,
      PGRST_DB_SCHEMAS: (api.schemas ?? ['public', 'graphql_public']).join(','),
      PGRST_DB_EXTRA_SEARCH_PATH: (api.extra_search_path ?? ['public', 'extensions']).join(','),
      PGRST_DB_MAX_ROWS: String(api.max_rows ?? 1000),
      PGRST_DB_ANON_ROLE: 'anon',
      PGRST_DB_USE_LEGACY_GUCS: 'false',
      PGRST_DB_POOL: '20',
      PGRST_JWT_SECRET: options.jwtSecret,
      PGRST_SERVER_HOST: '127.0.0.1',
      PGRST_SERVER_PORT: String(options.port),
      PGRST_ADMIN_SERVER_PORT: String(options.adminPort),
      PGRST_LOG_LEVEL: 'warn',
    },
  })
  await waitFor(
    'PostgREST',
    async () => {
      if (child.exitCode !== null) throw new Error('exited')
      return (await fetch(`http://127.0.0.1:${options.adminPort}/ready`)).ok
    },
    30_000,
    `see ${logFile}`,
  )
  return child
}
