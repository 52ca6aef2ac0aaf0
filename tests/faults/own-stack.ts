import { createClient, type SupabaseClient } from '@supabase/supabase-js'
import pg from 'pg'
import { freePorts, startStack, userJwt, type RunningStack } from '@tollgate/local-stack'
import { supabaseOptions } from '../support/clients.ts'

/** How hard the fault tests push: `short` inside `npm test`, `full` for `npm run test:faults`. */
export const scale = process.env.FAULTS_SCALE === 'full' ? 'full' : 'short'

export interface OwnStack {
  stack: RunningStack
  db: pg.Pool
  service: SupabaseClient
  /** A user with a personal org funded with `credits`, and a client carrying their JWT. */
  fundedUser(credits: number): Promise<{ id: string; orgId: string; client: SupabaseClient }>
  close(): Promise<void>
}

/**
 * A stack of its own for tests that crash or restart parts of it (the shared test stack must
 * stay healthy for everyone else). Same engines, same migrations, free ports.
 */
export async function ownStack(label: string): Promise<OwnStack> {
  const stack = await startStack({ name: `faults-${label}-${process.pid}`, ports: await freePorts(), watch: false, seed: false })
  const db = new pg.Pool({ connectionString: stack.env.SUPABASE_DB_URL, max: 4 })
  // A crashed primary kills pooled connections; the pool must not crash the test process.
  db.on('error', () => {})
  const service = createClient(stack.env.SUPABASE_URL, stack.env.SUPABASE_SERVICE_ROLE_KEY, supabaseOptions(stack.env.SUPABASE_SERVICE_ROLE_KEY))
  return {
    stack,
    db,
    service,
    async fundedUser(credits) {
      const id = crypto.randomUUID()
      await db.query(`insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)`, [id, `${id}@example.test`])
      const { rows } = await db.query<{ id: string }>('select id from public.orgs where personal_user_id = $1', [id])
      const orgId = rows[0]!.id
      if (credits > 0) await db.query(`select public.grant_credits($1, $2, 'promotion')`, [orgId, credits])
      const client = createClient(stack.env.SUPABASE_URL, stack.env.SUPABASE_ANON_KEY, supabaseOptions(await userJwt(id, stack.env.SUPABASE_JWT_SECRET)))
      return { id, orgId, client }
    },
    async close() {
      await db.end().catch(() => {})
      await stack.stop({ destroy: true })
    },
  }
}

/** Runs `worker` on `concurrency` lanes until `until()` says stop. */
export async function drive(concurrency: number, until: () => boolean, worker: (lane: number) => Promise<void>): Promise<void> {
  await Promise.all(
    Array.from({ length: concurrency }, async (_, lane) => {
      while (!until()) await worker(lane)
    }),
  )
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
