import { createClient, type SupabaseClient, type SupabaseClientOptions } from '@supabase/supabase-js'
import ws from 'ws'
import { userJwt } from '@tollgate/local-stack'
import { env } from './env.ts'
import { primaryDb } from './db.ts'

/**
 * supabase-js ≥ 2.11x builds its realtime client eagerly and needs a WebSocket constructor.
 * Node 22+ has a native one; on Node 20 we hand it `ws` as the transport — the documented
 * option, and the same advice the README gives users of the client package.
 */
export function supabaseOptions(accessToken?: string): SupabaseClientOptions<'public'> {
  return {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: globalThis.WebSocket ? {} : { transport: ws as unknown as typeof WebSocket },
    global: accessToken ? { headers: { Authorization: `Bearer ${accessToken}` } } : {},
  }
}

export const anonClient = (): SupabaseClient => createClient(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, supabaseOptions())

export const serviceClient = (): SupabaseClient =>
  createClient(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY, supabaseOptions(env.SUPABASE_SERVICE_ROLE_KEY))

export interface TestUser {
  id: string
  email: string
  jwt: string
  personalOrgId: string
  client: SupabaseClient
}

/**
 * A fresh signed-up user (random id, so test files can run in parallel): inserted into
 * auth.users as GoTrue would, personal org checked, with a client carrying their JWT.
 */
export async function createUser(label = 'user'): Promise<TestUser> {
  const id = crypto.randomUUID()
  const email = `${label}-${id.slice(0, 8)}@example.test`
  await primaryDb.query(
    `insert into auth.users (id, aud, role, email, raw_user_meta_data) values ($1, 'authenticated', 'authenticated', $2, '{}')`,
    [id, email],
  )
  const { rows } = await primaryDb.query<{ id: string }>('select id from public.orgs where personal_user_id = $1', [id])
  if (rows.length !== 1) throw new Error(`setup: user ${id} has no personal org`)
  const jwt = await userJwt(id, env.SUPABASE_JWT_SECRET, { email })
  const client = createClient(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, supabaseOptions(jwt))
  return { id, email, jwt, personalOrgId: rows[0]!.id, client }
}
