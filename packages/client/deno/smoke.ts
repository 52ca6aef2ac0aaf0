// Runs the client under Deno against a live stack, imported through `npm:` as a Deno app (or a
// Supabase Edge Function) imports it. tests/client-package.test.ts copies it into a project that
// installed the packed tarball, type-checks and runs it there (`deno check` / `deno run
// --node-modules-dir=manual`, so `npm:` resolves to that project's node_modules), and checks the
// printed JSON.
// Env: SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_SERVICE_ROLE_KEY, SMOKE_JWT (a user's token),
// SMOKE_ORG_ID (their personal org), SMOKE_OPERATION (a priced operation).

import { createClient } from 'npm:@supabase/supabase-js@^2'
import { createTollgateClient, InsufficientCreditsError } from 'npm:@tollgate/client'
import { createTollgateServer, UserError } from 'npm:@tollgate/client/server'

const env = (name: string): string => {
  const value = Deno.env.get(name)
  if (!value) throw new Error(`${name} is not set`)
  return value
}
const [url, anonKey, serviceKey, jwt, orgId, operation] = ['SUPABASE_URL', 'SUPABASE_ANON_KEY', 'SUPABASE_SERVICE_ROLE_KEY', 'SMOKE_JWT', 'SMOKE_ORG_ID', 'SMOKE_OPERATION'].map(env) as [string, string, string, string, string, string]

// The first consume is sent, then its answer is "lost": the client must retry with the same id.
let consumeCalls = 0
const flakyFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init)
  if (String(input instanceof Request ? input.url : input).includes('/rpc/consume_credits') && consumeCalls++ === 0) {
    await response.text()
    throw new TypeError('connection reset')
  }
  return response
}
const user = createClient(url, anonKey, { global: { headers: { Authorization: `Bearer ${jwt}` }, fetch: flakyFetch } })
const tollgate = createTollgateClient(user, { baseDelayMs: 5, maxDelayMs: 20 })
const server = createTollgateServer(createClient(url, serviceKey), { baseDelayMs: 5, maxDelayMs: 20 })

const grant = await server.grant({ orgId, amount: 20, source: 'purchase', externalRef: `deno-${crypto.randomUUID()}` })
const charge = await tollgate.consume({ operation, quantity: 2 })
const attempts = consumeCalls
let insufficient: { required: number; available: number } | null = null
try {
  await tollgate.consume({ operation, quantity: 1000 })
} catch (error) {
  if (error instanceof InsufficientCreditsError) insufficient = { required: error.required, available: error.available }
}
const metered = await server.withCredits({ orgId, operation }, () => 'done')
let userFault = ''
try {
  await server.withCredits({ orgId, operation }, () => {
    throw new UserError('bad input', { code: 'bad_input' })
  })
} catch (error) {
  userFault = error instanceof UserError ? error.code : 'other'
}
const balance = await tollgate.balance()
const ledger = await tollgate.ledger({ limit: 2 })

console.log(JSON.stringify({
  runtime: `deno ${Deno.version.deno}`,
  grant: grant.balanceAfter,
  charge: { requestId: charge.requestId, charged: charge.charged, replayed: charge.replayed, attempts },
  insufficient,
  metered: { result: metered.result, charged: metered.charge.charged },
  userFault,
  balance: balance.available,
  ledgerKinds: ledger.entries.map((e) => e.kind),
}))
