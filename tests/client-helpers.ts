// Helpers for the @tollgate/client suites (tests/client-*.test.ts): supabase-js clients whose
// fetch we control, to put network failures exactly where a test wants them.

import { createClient, type SupabaseClient } from '@supabase/supabase-js'
import { env } from './support/env.ts'
import { supabaseOptions } from './support/clients.ts'

export interface SentRequest {
  url: string
  method: string
  body: unknown
}

/**
 * What to do with one request (by its order among requests matching `path`):
 * - `pass`: forward it;
 * - `drop-before`: throw like a refused connection, nothing reaches the server;
 * - `drop-after`: forward it, let the server finish, then throw as if the answer was lost;
 * - a number: forward it, then answer that HTTP status from "the gateway" instead.
 */
export type Fault = 'pass' | 'drop-before' | 'drop-after' | number

export interface FaultyFetch {
  fetch: typeof fetch
  /** Every request whose URL contains the path, as sent (bodies parsed). */
  sent: SentRequest[]
}

/** A fetch that applies `faults[i]` to the i-th request whose URL contains `path` (then passes). */
export function faultyFetch(path: string, faults: Fault[]): FaultyFetch {
  const sent: SentRequest[] = []
  const wrapped: typeof fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
    if (!url.includes(path)) return fetch(input, init)
    const body = typeof init?.body === 'string' && init.body !== '' ? (JSON.parse(init.body) as unknown) : null
    const fault = faults[sent.length] ?? 'pass'
    sent.push({ url, method: init?.method ?? 'GET', body })
    if (fault === 'drop-before') throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })
    const response = await fetch(input, init)
    if (fault === 'pass') return response
    await response.text() // the server has answered: the transaction is committed
    if (fault === 'drop-after') throw new TypeError('fetch failed', { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) })
    return new Response(JSON.stringify({ message: `upstream unavailable` }), { status: fault, headers: { 'content-type': 'application/json' } })
  }
  return { fetch: wrapped, sent }
}

/** A supabase-js client with a user's JWT (or the service key) and the given fetch. */
export function clientWithFetch(accessToken: string, fetchImpl: typeof fetch, apiKey = env.SUPABASE_ANON_KEY): SupabaseClient {
  const options = supabaseOptions(accessToken)
  return createClient(env.SUPABASE_URL, apiKey, { ...options, global: { ...options.global, fetch: fetchImpl } })
}

/** Fast retries for tests (the defaults are 100 ms .. 2 s). */
export const fastRetries = { retries: 3, baseDelayMs: 5, maxDelayMs: 20 }
