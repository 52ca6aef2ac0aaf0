// What the usage page needs to know about the project it talks to. Served as config.json next
// to the bundle: the local stack serves it from its env; on hosted Supabase you deploy your own.

export interface PageConfig {
  /** The project URL (https://<ref>.supabase.co, or the local gateway). */
  supabaseUrl: string
  /** The anon (publishable) key. */
  anonKey: string
  /**
   * 'supabase': sign in with Supabase Auth (email + password or a magic link).
   * 'local': the docker-free stack has no GoTrue; sign in with an access token the stack mints
   * (a "demo user" button when `demoToken` is set).
   */
  auth: 'supabase' | 'local'
  /** Local only: an access token for the seeded demo user. */
  demoToken?: string
  demoEmail?: string
  /** Seconds between balance polls (default 5). */
  pollSeconds?: number
  /**
   * Subscribe to the org's balance row with Supabase Realtime (postgres_changes) and poll only
   * as a fallback. Needs `credit_balances` in the `supabase_realtime` publication; off by default.
   */
  realtime?: boolean
}
