import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const clientDir = path.resolve(import.meta.dirname, '../packages/client')
const librarySources = ['index.ts', 'server.ts', 'errors.ts', 'retry.ts', 'types.ts', 'internal.ts', 'user-error.ts', 'database.types.ts']

// The library must run in Node, Deno and browsers: web-standard APIs only (fetch through
// supabase-js, crypto.randomUUID, performance.now, setTimeout), no Node modules. The packed
// package runs in all three in tests/client-package.test.ts.
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
})
