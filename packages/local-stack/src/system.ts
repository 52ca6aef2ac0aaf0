import fs from 'node:fs'
import { log, StackError } from './log.ts'
import { runChecked } from './process.ts'
import { pgBinDir } from './binaries.ts'

/** Debian packages the stack needs beyond PostgreSQL 15 itself, with the file that proves each. */
const requiredPackages: Array<{ name: string; present: () => boolean }> = [
  { name: 'postgresql-15-cron', present: () => fs.existsSync('/usr/share/postgresql/15/extension/pg_cron.control') },
  { name: 'postgresql-15-pgtap', present: () => fs.existsSync('/usr/share/postgresql/15/extension/pgtap.control') },
  { name: 'libtap-parser-sourcehandler-pgtap-perl', present: () => fs.existsSync('/usr/bin/pg_prove') },
  // Lets the non-superuser `postgres` create allow-listed extensions, as supautils does on hosted Supabase.
  { name: 'postgresql-15-pgextwlist', present: () => fs.existsSync('/usr/lib/postgresql/15/lib/plugins/pgextwlist.so') },
  // plpgsql_check, which `supabase db lint` runs.
  { name: 'postgresql-15-plpgsql-check', present: () => fs.existsSync('/usr/share/postgresql/15/extension/plpgsql_check.control') },
]

export const isRoot = (): boolean => process.getuid?.() === 0

/**
 * Installs missing Debian packages when we are root; otherwise stops with the exact command.
 * PostgreSQL 15 itself is a prerequisite of the machine, not something we install.
 */
export async function ensureSystemPackages(): Promise<void> {
  if (!fs.existsSync(`${pgBinDir}/postgres`)) {
    throw new StackError(`PostgreSQL 15 server not found in ${pgBinDir}: install the Debian package postgresql-15 (or set TOLLGATE_PG_BINDIR)`)
  }
  const missing = requiredPackages.filter((p) => !p.present()).map((p) => p.name)
  if (missing.length === 0) return
  if (!isRoot()) {
    throw new StackError(`missing Debian packages: ${missing.join(' ')}. Install them with: sudo apt-get install -y ${missing.join(' ')}`)
  }
  log(`installing Debian packages: ${missing.join(' ')}`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  await runChecked('apt-get update', 'apt-get', ['update', '-q'], { env })
  await runChecked(`apt-get install ${missing.join(' ')}`, 'apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env })
}

/** Debian's Chromium, which the browser tests drive (nothing downloads a browser). */
export const chromiumPath = process.env.TOLLGATE_CHROMIUM ?? '/usr/bin/chromium'

/**
 * The browser tests need Debian's `chromium` package: installed with apt when we are root,
 * otherwise a stop with the exact command (TOLLGATE_CHROMIUM names another Chromium binary).
 */
export async function ensureChromium(): Promise<string> {
  if (fs.existsSync(chromiumPath)) return chromiumPath
  if (process.env.TOLLGATE_CHROMIUM || !isRoot()) {
    throw new StackError(`Chromium not found at ${chromiumPath}: install it with: sudo apt-get install -y chromium (or set TOLLGATE_CHROMIUM to a Chromium binary)`)
  }
  log('installing Debian package: chromium (for the browser tests)')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  await runChecked('apt-get update', 'apt-get', ['update', '-q'], { env })
  await runChecked('apt-get install chromium', 'apt-get', ['install', '-y', '-q', '--no-install-recommends', 'chromium'], { env })
  return chromiumPath
}
