// Regenerates packages/client/src/database.types.ts from a running stack with the real Supabase
// CLI (`supabase gen types --lang typescript --schema public --remote <db url>`), through the
// repo's `npm run supabase --` wrapper. The file is committed exactly as the CLI prints it (the
// CLI output is unformatted; formatting it would make tests/client-types.test.ts need the
// formatter too), so "is it current?" is a plain string comparison.
//
//   SUPABASE_DB_URL=postgresql://... npm run gen:types

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
export const typesFile = path.join(repoRoot, 'packages/client/src/database.types.ts')

/** The local stack's Postgres speaks no TLS; hosted URLs keep whatever sslmode they carry. */
function withSslDisabled(dbUrl: string): string {
  if (/[?&]sslmode=/.test(dbUrl)) return dbUrl
  return `${dbUrl}${dbUrl.includes('?') ? '&' : '?'}sslmode=disable`
}

/** What the CLI prints for the `public` schema of the database at `dbUrl`. */
export function generateTypes(dbUrl: string): Promise<string> {
  const args = ['run', '--silent', 'supabase', '--', 'gen', 'types', '--lang', 'typescript', '--schema', 'public', '--remote', withSslDisabled(dbUrl)]
  return new Promise((resolve, reject) => {
    const child = spawn('npm', args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8')
      if (code !== 0 || !stdout.includes('export type Database')) {
        reject(new Error(`supabase gen types failed (exit ${code}):\n${Buffer.concat(err).toString('utf8').trim()}`))
        return
      }
      resolve(stdout)
    })
  })
}

async function main(): Promise<void> {
  const dbUrl = process.env.SUPABASE_DB_URL
  if (!dbUrl) {
    process.stderr.write('gen:types needs SUPABASE_DB_URL: `set -a; . .tollgate/dev/.env; set +a` (or `npm run status`) first\n')
    process.exit(2)
  }
  const types = await generateTypes(dbUrl)
  // Written only after a successful run, via a rename: a failed run never leaves half a file.
  const temporary = `${typesFile}.${process.pid}.tmp`
  fs.writeFileSync(temporary, types)
  fs.renameSync(temporary, typesFile)
  process.stdout.write(`wrote ${path.relative(repoRoot, typesFile)} (${types.length} chars)\n`)
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  })
}
