// Runs one README example by name and prints what it returns as one line of JSON.
// tests/client-examples.test.ts calls `runExample` in-process on the source;
// tests/client-package.test.ts compiles this file with examples/ in an empty project that
// installed the packed tarball, and runs it with plain `node` (no loader):
//
//   node scripts/run-example.js <name> '<JSON array of arguments>'

import process from 'node:process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createClient } from '@supabase/supabase-js'
import ws from 'ws'
import { errorsExample } from '../examples/errors.ts'
import { patientClient } from '../examples/retries.ts'
import { serverExample } from '../examples/server.ts'
import { userExample } from '../examples/user.ts'
import { withCreditsExample } from '../examples/with-credits.ts'

/**
 * retries.ts's client over a network that refuses the first get_credit_balance request and
 * answers the second with a gateway's 503; the third reaches the server.
 */
async function retriesExample(url: string, anonKey: string, accessToken: string) {
  let balanceCalls = 0
  const flakyFetch: typeof fetch = async (input, init) => {
    const target = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
    if (!target.includes('/rpc/get_credit_balance')) return fetch(input, init)
    balanceCalls++
    if (balanceCalls === 1) throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })
    const response = await fetch(input, init)
    if (balanceCalls > 2) return response
    await response.text()
    return new Response(JSON.stringify({ message: 'upstream unavailable' }), { status: 503, headers: { 'content-type': 'application/json' } })
  }
  const supabase = createClient(url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: globalThis.WebSocket ? {} : { transport: ws as unknown as typeof WebSocket },
    global: { headers: { Authorization: `Bearer ${accessToken}` }, fetch: flakyFetch },
  })
  const lines: string[] = []
  const balance = await patientClient(supabase, (line) => lines.push(line)).balance()
  return { balance, lines, balanceCalls }
}

export const examples = {
  user: userExample,
  server: serverExample,
  withCredits: withCreditsExample,
  errors: errorsExample,
  retries: retriesExample,
}

export type ExampleName = keyof typeof examples

export async function runExample(name: ExampleName, args: unknown[]): Promise<unknown> {
  const example = examples[name] as (...args: unknown[]) => Promise<unknown>
  if (!example) throw new Error(`no example named ${name}`)
  return example(...args)
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [name, args = '[]'] = process.argv.slice(2)
  runExample(name as ExampleName, JSON.parse(args) as unknown[]).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
      process.exitCode = 1
    },
  )
}
