import type { SupabaseClient } from '@supabase/supabase-js'
import { createTollgateClient } from '@tollgate/client'

// More patient than the defaults (3 retries, 100 ms .. 2 s), and every retry logged.
export function patientClient(supabase: SupabaseClient, log: (line: string) => void = console.warn) {
  return createTollgateClient(supabase, {
    retries: 5,
    baseDelayMs: 200,
    maxDelayMs: 5000,
    onRetry: ({ call, attempt, delayMs, error }) => log(`${call}: retry ${attempt} in ${delayMs} ms (${error.key}, HTTP ${error.status})`),
  })
}
