import { createClient, type SupabaseClient } from '@supabase/supabase-js'
import ws from 'ws'

// supabase-js builds its realtime client eagerly and needs a WebSocket constructor, which Node
// has only from version 22. On Node 20 hand it the `ws` package; Deno and browsers need nothing.
export function createNodeSupabaseClient(url: string, key: string, accessToken?: string): SupabaseClient {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: globalThis.WebSocket ? {} : { transport: ws as unknown as typeof WebSocket },
    // A signed-in app's client carries the session itself; a server acting for a user passes
    // the user's access token.
    global: accessToken ? { headers: { Authorization: `Bearer ${accessToken}` } } : {},
  })
}
