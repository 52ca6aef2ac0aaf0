import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { denoBinary } from '../packages/local-stack/src/binaries.ts'
import { createUser } from './support/clients.ts'
import { env } from './support/env.ts'
import { createPrice, expectBooksBalanced, expectReconciled, ledgerOfRequest } from './support/credits.ts'

const clientDir = path.resolve(import.meta.dirname, '../packages/client')
const librarySources = ['index.ts', 'server.ts', 'errors.ts', 'retry.ts', 'types.ts', 'internal.ts', 'user-error.ts', 'database.types.ts']

// The library must run in Node, Deno and browsers: web-standard APIs only (fetch through
// supabase-js, crypto.randomUUID, performance.now, setTimeout), no Node modules.
describe('@tollgate/client portability', () => {
  it('the library imports nothing but its own files and the types of supabase-js', () => {
    expect(fs.readdirSync(path.join(clientDir, 'src')).sort()).toEqual([...librarySources].sort())
    for (const file of librarySources) {
      const source = fs.readFileSync(path.join(clientDir, 'src', file), 'utf8')
      const imports = [...source.matchAll(/^(import|export)\s+(type\s+)?[^'"]*from\s+'([^']+)'/gm)].map((m) => ({ type: Boolean(m[2]), from: m[3]! }))
      for (const { type, from } of imports) {
        const ok = from.startsWith('./') || (from === '@supabase/supabase-js' && type)
        expect({ file, from, ok }).toEqual({ file, from, ok: true })
      }
      // Inline `import('...')` types and Node globals would break Deno or a browser bundle.
      expect({ file, nodeGlobals: source.match(/\b(process\.|Buffer\b|require\(|__dirname|node:)/g) ?? [] }).toEqual({ file, nodeGlobals: [] })
    }
  })

  it('runs under Deno: type-checks, charges once across a lost answer, maps errors, settles holds', { timeout: 120_000 }, async () => {
    const user = await createUser('deno')
    const org = user.personalOrgId
    const operation = await createPrice(3, 'cdeno')
    const denoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-client-deno-'))
    const denoEnv = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      DENO_DIR: denoDir,
      DENO_NO_UPDATE_CHECK: '1',
      NO_COLOR: '1',
      SUPABASE_URL: env.SUPABASE_URL,
      SUPABASE_ANON_KEY: env.SUPABASE_ANON_KEY,
      SUPABASE_SERVICE_ROLE_KEY: env.SUPABASE_SERVICE_ROLE_KEY,
      SMOKE_JWT: user.jwt,
      SMOKE_ORG_ID: org,
      SMOKE_OPERATION: operation,
    }
    // The repo's node_modules serve `@supabase/supabase-js` (no download: --cached-only).
    const flags = ['--node-modules-dir=manual', '--cached-only', '--no-lock']
    try {
      const run = (args: string[]) => spawnSync(denoBinary(), args, { cwd: clientDir, env: denoEnv, encoding: 'utf8', timeout: 90_000 })
      const check = run(['check', ...flags, 'deno/smoke.ts'])
      expect({ status: check.status, stderr: check.status === 0 ? '' : check.stderr }).toEqual({ status: 0, stderr: '' })
      const smoke = run(['run', ...flags, '--allow-net', '--allow-env', '--allow-read', 'deno/smoke.ts'])
      expect({ status: smoke.status, stderr: smoke.status === 0 ? '' : smoke.stderr }).toEqual({ status: 0, stderr: '' })
      const out = JSON.parse(smoke.stdout.trim().split('\n').pop()!)
      expect(out).toEqual({
        runtime: expect.stringMatching(/^deno 2\./),
        grant: 20,
        charge: { requestId: expect.any(String), charged: 6, replayed: true, attempts: 2 },
        insufficient: { required: 3000, available: 14 },
        metered: { result: 'done', charged: 3 },
        userFault: 'bad_input',
        balance: 8,
        ledgerKinds: ['capture', 'hold'],
      })
      expect(await ledgerOfRequest(org, out.charge.requestId)).toEqual([['charge', -6, 0]])
      expect(await expectBooksBalanced(org)).toEqual({ available: 8, held: 0 })
      await expectReconciled([org])
    } finally {
      fs.rmSync(denoDir, { recursive: true, force: true })
    }
  })
})
