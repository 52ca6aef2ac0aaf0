import pg from 'pg'
import { afterAll } from 'vitest'
import { env } from './env.ts'

// Connections as `postgres` (not a superuser, as on hosted Supabase: BYPASSRLS, owner of the
// project's objects) for arranging data and checking outcomes — never for the code under test,
// which is always reached through PostgREST or the gateway.
export const primaryDb = new pg.Pool({ connectionString: env.SUPABASE_DB_URL, max: 4 })
export const replicaDb = new pg.Pool({ connectionString: env.TOLLGATE_REPLICA_DB_URL, max: 2 })

afterAll(async () => {
  await Promise.all([primaryDb.end(), replicaDb.end()])
})

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
