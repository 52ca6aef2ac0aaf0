// The primary database for server-side functions (meter, payments, alerts): SUPABASE_DB_URL,
// injected by Supabase. One small pool per function process.
import postgres from 'postgres'
import { unavailableAs } from './db-errors.ts'
import { requireEnv } from './env.ts'

let pool: postgres.Sql | undefined

export function serviceDb(): postgres.Sql {
  pool ??= postgres(requireEnv('SUPABASE_DB_URL'), {
    max: 8,
    idle_timeout: 60,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: 'tollgate-functions' },
  })
  return pool
}

export { unavailableAs }
