// Who is signed in, and a supabase-js client that carries their token.
//
// Hosted Supabase: Supabase Auth (email + password, or a magic link); supabase-js keeps and
// refreshes the session. The local stack has no GoTrue: the page takes an access token the
// stack minted (the demo user's from config.json, or any token pasted in), keeps it in
// sessionStorage, and hands it to supabase-js through its `accessToken` option.
import { createClient, type SupabaseClient } from '@supabase/supabase-js'
import type { PageConfig } from './config.ts'

export interface SignedIn {
  supabase: SupabaseClient
  userId: string
  email: string | null
  signOut(): Promise<void>
}

const tokenKey = 'tollgate.usage.token'

function claimsOf(token: string): { sub?: string; email?: string; exp?: number; role?: string } {
  try {
    const part = token.split('.')[1] ?? ''
    return JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/')))
  } catch {
    return {}
  }
}

/** Local mode: a valid-looking, unexpired user token, or an error message. */
export function checkToken(token: string): string | null {
  const claims = claimsOf(token.trim())
  if (!claims.sub || claims.role !== 'authenticated') return 'that is not a user access token'
  if (claims.exp !== undefined && claims.exp * 1000 < Date.now()) return 'that token has expired'
  return null
}

function localSession(config: PageConfig, token: string): SignedIn {
  const claims = claimsOf(token)
  const supabase = createClient(config.supabaseUrl, config.anonKey, { accessToken: async () => token })
  return {
    supabase,
    userId: claims.sub!,
    email: claims.email ?? null,
    signOut: async () => sessionStorage.removeItem(tokenKey),
  }
}

let hostedClient: SupabaseClient | undefined
const hosted = (config: PageConfig): SupabaseClient =>
  (hostedClient ??= createClient(config.supabaseUrl, config.anonKey, { auth: { persistSession: true, autoRefreshToken: true, detectSessionInUrl: true } }))

/** The current session, if any (after a magic link, supabase-js reads it from the URL). */
export async function currentSession(config: PageConfig): Promise<SignedIn | null> {
  if (config.auth === 'local') {
    const token = sessionStorage.getItem(tokenKey)
    return token && checkToken(token) === null ? localSession(config, token) : null
  }
  const supabase = hosted(config)
  const { data } = await supabase.auth.getSession()
  const user = data.session?.user
  return user ? { supabase, userId: user.id, email: user.email ?? null, signOut: async () => void (await supabase.auth.signOut()) } : null
}

export function signInWithToken(config: PageConfig, token: string): SignedIn {
  const trimmed = token.trim()
  const problem = checkToken(trimmed)
  if (problem) throw new Error(problem)
  sessionStorage.setItem(tokenKey, trimmed)
  return localSession(config, trimmed)
}

export async function signInWithPassword(config: PageConfig, email: string, password: string): Promise<SignedIn> {
  const { error } = await hosted(config).auth.signInWithPassword({ email, password })
  if (error) throw error
  const session = await currentSession(config)
  if (!session) throw new Error('signed in, but no session came back')
  return session
}

export async function sendMagicLink(config: PageConfig, email: string): Promise<void> {
  const { error } = await hosted(config).auth.signInWithOtp({ email, options: { emailRedirectTo: location.href.split('?')[0] } })
  if (error) throw error
}

/** Hosted mode: calls `listener` when Supabase Auth signs someone in or out (other tabs, refresh). */
export function onAuthChange(config: PageConfig, listener: () => void): void {
  if (config.auth === 'supabase') hosted(config).auth.onAuthStateChange(() => listener())
}
