import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateTypes, repoRoot, typesFile } from '../packages/client/scripts/gen-types.ts'
import { env } from './support/env.ts'

/** The first line where two texts differ, for a failure message a person can act on. */
function firstDifference(committed: string, generated: string): string {
  const a = committed.split('\n')
  const b = generated.split('\n')
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `line ${i + 1}:\n  committed: ${JSON.stringify(a[i] ?? '<end of file>')}\n  generated: ${JSON.stringify(b[i] ?? '<end of file>')}`
  }
  return 'no line differs'
}

// packages/client/src/database.types.ts is committed exactly as `supabase gen types` prints it
// (unformatted), so "current?" is a plain comparison with a fresh run against the test stack.
describe('@tollgate/client generated types', () => {
  it('match what `supabase gen types` prints for the migrations under test', { timeout: 120_000 }, async () => {
    const generated = await generateTypes(env.SUPABASE_DB_URL)
    const scratch = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-gen-types-')), 'database.types.ts')
    fs.writeFileSync(scratch, generated)
    try {
      const committed = fs.readFileSync(typesFile, 'utf8')
      const regenerated = fs.readFileSync(scratch, 'utf8')
      if (committed !== regenerated) {
        expect.fail(`${path.relative(repoRoot, typesFile)} is stale: run \`npm run gen:types\` against a stack with the current migrations.\nFirst difference at ${firstDifference(committed, regenerated)}`)
      }
      // The RPCs and tables the client calls are in the schema the stack serves.
      for (const name of ['consume_credits', 'get_credit_balance', 'get_usage_stats', 'list_my_orgs', 'grant_credits', 'reserve_credits', 'capture_credits', 'release_credits', 'refund_credits', '"credit_ledger"', '"credit_grants"']) {
        expect(regenerated).toContain(name)
      }
    } finally {
      fs.rmSync(path.dirname(scratch), { recursive: true, force: true })
    }
  })
})
