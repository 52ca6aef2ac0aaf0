import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { pgBin } from './binaries.ts'
import { log, StackError } from './log.ts'
import { isPortFree, run, runChecked, waitFor } from './process.ts'
import { isRoot } from './system.ts'

/** Local password of every login role (`supabase_admin`, `postgres`, `authenticator`), as in `supabase start`. */
export const localPassword = 'postgres'

export interface ClusterOptions {
  /** Human name used in messages and log files: "primary", "replica". */
  name: string
  /** Folder that holds the data directory and log (created when missing). */
  home: string
  port: number
  /** postgresql.conf settings written on every start (ports may change between starts). */
  settings: Record<string, string | number | boolean>
  /**
   * The bootstrap superuser `initdb` creates (default `postgres`). The primary uses
   * `supabase_admin`, as hosted Supabase does, so that `postgres` can be an ordinary role.
   */
  superuser?: string
  /**
   * Extensions a non-superuser may create, run as the bootstrap superuser by pgextwlist (the
   * local stand-in for supautils' privileged extensions), and a folder of custom scripts
   * (`<extension>/after-create.sql`) run as the superuser right after such a `create extension`.
   */
  extensionAllowList?: { extensions: string[]; scriptsDir: string }
}

/**
 * A PostgreSQL 15 cluster run with pg_ctl. Postgres refuses to run as root, so when we are root
 * every server-side command runs as the Debian `postgres` user and the cluster's folder is owned
 * by it; as a normal user the cluster simply belongs to that user.
 */
export class Cluster {
  readonly name: string
  readonly home: string
  readonly dataDir: string
  readonly logFile: string
  readonly port: number
  readonly superuser: string
  private readonly settings: ClusterOptions['settings']
  private readonly extensionAllowList: ClusterOptions['extensionAllowList']

  constructor(options: ClusterOptions) {
    this.name = options.name
    this.home = clusterHome(options.home)
    this.dataDir = path.join(this.home, 'data')
    this.logFile = path.join(this.home, 'postgres.log')
    this.port = options.port
    this.superuser = options.superuser ?? 'postgres'
    this.settings = options.settings
    this.extensionAllowList = options.extensionAllowList
  }

  url(user = 'postgres', password = localPassword, database = 'postgres'): string {
    return `postgresql://${user}:${password}@127.0.0.1:${this.port}/${database}`
  }

  /** The bootstrap superuser's URL: for the platform's own setup, never for the project's code. */
  superuserUrl(database = 'postgres'): string {
    return this.url(this.superuser, localPassword, database)
  }

  /** Records which role initdb made the superuser (clusters made before this was recorded: `postgres`). */
  private get superuserFile(): string {
    return path.join(this.home, 'superuser')
  }

  get initialized(): boolean {
    return fs.existsSync(path.join(this.dataDir, 'PG_VERSION'))
  }

  /** Creates the cluster (its bootstrap superuser, password auth on TCP) unless it exists. */
  async init(): Promise<boolean> {
    if (this.initialized) {
      this.assertSuperuser()
      return false
    }
    fs.mkdirSync(this.home, { recursive: true })
    chownToServer(this.home)
    const pwfile = path.join(this.home, '.pwfile')
    fs.writeFileSync(pwfile, `${localPassword}\n`, { mode: 0o600 })
    chownToServer(pwfile)
    try {
      await runChecked(`initdb of the ${this.name} cluster`, ...asServer(pgBin('initdb'), [
        '-D', this.dataDir, '-U', this.superuser, '--pwfile', pwfile,
        '--auth-host=scram-sha-256', '--auth-local=peer', '--encoding=UTF8', '--locale=C.UTF-8',
      ]))
    } finally {
      fs.rmSync(pwfile, { force: true })
    }
    fs.appendFileSync(path.join(this.dataDir, 'postgresql.conf'), "\ninclude_if_exists = 'tollgate.conf'\n")
    fs.writeFileSync(this.superuserFile, `${this.superuser}\n`)
    return true
  }

  /**
   * Creates the cluster as a physical copy of a running primary (`pg_basebackup`, WAL streamed
   * alongside, the replication slot `slot` created on the primary so it keeps the WAL the standby
   * has not received) and marks it a hot standby (`standby.signal`), unless it exists. Its roles
   * and passwords are the primary's, so its superuser must be the primary's too; where it
   * streams from (`primary_conninfo`, `primary_slot_name`) is a setting, written on every start.
   * `connInfo` names a role with REPLICATION on the primary.
   */
  async initStandby(connInfo: string, slot: string): Promise<boolean> {
    if (this.initialized) {
      this.assertSuperuser()
      return false
    }
    fs.mkdirSync(this.home, { recursive: true })
    chownToServer(this.home)
    fs.rmSync(this.dataDir, { recursive: true, force: true })
    await runChecked(`pg_basebackup of the ${this.name} cluster`, ...asServer(pgBin('pg_basebackup'), [
      '--pgdata', this.dataDir, '--dbname', connInfo, '--wal-method=stream', '--create-slot', '--slot', slot,
      '--checkpoint=fast', '--no-password',
    ]))
    const signal = path.join(this.dataDir, 'standby.signal')
    fs.writeFileSync(signal, '')
    chownToServer(signal)
    fs.writeFileSync(this.superuserFile, `${this.superuser}\n`)
    return true
  }

  /**
   * An existing cluster must have the superuser this stack expects: a primary created when
   * `postgres` was its superuser cannot be demoted in place (initdb's user stays a superuser).
   */
  private assertSuperuser(): void {
    const existing = fs.existsSync(this.superuserFile) ? fs.readFileSync(this.superuserFile, 'utf8').trim() : 'postgres'
    if (existing !== this.superuser) {
      throw new StackError(
        `the ${this.name} cluster in ${this.dataDir} was created with \`${existing}\` as its superuser; this stack needs \`${this.superuser}\` ` +
          '(as on hosted Supabase, `postgres` is not a superuser): `npm run reset` (with the same --name, if any) recreates it; its local data is lost',
      )
    }
  }

  /** True when this cluster's postmaster is running (pg_ctl status). */
  async isRunning(): Promise<boolean> {
    if (!this.initialized) return false
    const result = await run(...asServer(pgBin('pg_ctl'), ['status', '-D', this.dataDir]))
    return result.code === 0
  }

  async start(): Promise<void> {
    if (await this.isRunning()) {
      log(`${this.name} Postgres already running on :${this.port}`)
      return
    }
    if (!(await isPortFree(this.port))) {
      throw new StackError(`port ${this.port} (${this.name} Postgres) is taken by another process: stop it, or choose other ports (see .env.example)`)
    }
    const conf = Object.entries({
      listen_addresses: '127.0.0.1',
      port: this.port,
      // No Unix socket: every client (pg_prove, psql, PostgREST, pg_cron) uses TCP, and
      // long repository paths cannot overflow the 107-byte socket path limit.
      unix_socket_directories: '',
      ...this.settings,
      ...this.allowListSettings(),
    })
      .map(([key, value]) => `${key} = ${typeof value === 'string' ? `'${value.replaceAll("'", "''")}'` : value}`)
      .join('\n')
    const confFile = path.join(this.dataDir, 'tollgate.conf')
    fs.writeFileSync(confFile, `# written by packages/local-stack on every start\n${conf}\n`)
    chownToServer(confFile)
    fs.writeFileSync(this.logFile, '', { flag: 'a' })
    chownToServer(this.logFile)
    const result = await run(...asServer(pgBin('pg_ctl'), ['start', '-w', '-t', '60', '-D', this.dataDir, '-l', this.logFile]))
    if (result.code !== 0) {
      const tail = fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-5).join('\n')
      throw new StackError(`${this.name} Postgres failed to start on :${this.port}; see ${this.logFile}:\n${tail}`)
    }
    await waitFor(`${this.name} Postgres`, () => this.ping(), 30_000)
  }

  /**
   * pgextwlist settings, with its custom scripts copied into the cluster's folder (the server
   * user must be able to read them; the checkout may not be reachable by it when we are root).
   */
  private allowListSettings(): Record<string, string> {
    if (!this.extensionAllowList) return {}
    const scripts = path.join(this.home, 'extension-scripts')
    fs.rmSync(scripts, { recursive: true, force: true })
    fs.cpSync(this.extensionAllowList.scriptsDir, scripts, { recursive: true })
    for (const file of [scripts, ...fs.readdirSync(scripts, { recursive: true, encoding: 'utf8' }).map((f) => path.join(scripts, f))]) {
      chownToServer(file)
    }
    return {
      // Loaded from $libdir/plugins into every client backend, as a non-superuser may request.
      local_preload_libraries: 'pgextwlist',
      'extwlist.extensions': this.extensionAllowList.extensions.join(','),
      'extwlist.custom_path': scripts,
    }
  }

  async stop(): Promise<void> {
    if (!(await this.isRunning())) return
    await runChecked(`stopping the ${this.name} Postgres`, ...asServer(pgBin('pg_ctl'), ['stop', '-m', 'fast', '-w', '-t', '60', '-D', this.dataDir]))
  }

  /**
   * Fault injection: SIGKILL the postmaster, as a power cut would (its children die with it).
   * `start()` afterwards runs crash recovery.
   */
  async crash(): Promise<void> {
    const pidFile = path.join(this.dataDir, 'postmaster.pid')
    const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0])
    process.kill(pid, 'SIGKILL')
    await waitFor(`${this.name} postmaster to die`, async () => {
      try {
        process.kill(pid, 0)
        return false
      } catch {
        return true
      }
    }, 10_000)
    // Children exit when they notice the postmaster is gone; wait until the port is free.
    await waitFor(`${this.name} port to close`, () => isPortFree(this.port), 30_000)
  }

  /** Removes the cluster's folder (the cluster must be stopped). */
  destroy(): void {
    fs.rmSync(this.home, { recursive: true, force: true })
  }

  private async ping(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.superuserUrl() })
    try {
      await client.connect()
      await client.query('select 1')
      return true
    } finally {
      await client.end().catch(() => undefined)
    }
  }
}

/** Runs a SQL script (or statements) on `url`; throws with Postgres' message. */
export async function runSql(url: string, sql: string, what: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(sql)
  } catch (error) {
    throw new StackError(`${what} failed: ${(error as Error).message}`)
  } finally {
    await client.end()
  }
}

/** [cmd, args] to run a server binary as the `postgres` OS user when we are root. */
function asServer(cmd: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
}

function chownToServer(file: string): void {
  if (!isRoot()) return
  const { uid, gid } = serverUser()
  fs.chownSync(file, uid, gid)
}

let cachedServerUser: { uid: number; gid: number } | undefined
function serverUser(): { uid: number; gid: number } {
  if (cachedServerUser) return cachedServerUser
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))
  if (!line) throw new StackError('running as root needs the `postgres` OS user (created by the Debian postgresql-15 package)')
  const [, , uid, gid] = line.split(':')
  cachedServerUser = { uid: Number(uid), gid: Number(gid) }
  return cachedServerUser
}

/**
 * Where a cluster lives. Normally the requested folder inside the repository's .tollgate/. As
 * root, the `postgres` user must be able to reach that folder; a checkout under a private home
 * (e.g. /root, mode 700) is not reachable, so the cluster moves to /var/lib/tollgate/<hash>/
 * and a symlink in .tollgate/ points at it.
 */
function clusterHome(requested: string): string {
  if (!isRoot()) return requested
  if (fs.existsSync(requested)) return fs.realpathSync(requested)
  fs.mkdirSync(path.dirname(requested), { recursive: true })
  if (reachableByServer(path.dirname(requested))) return requested
  const hash = crypto.createHash('sha1').update(requested).digest('hex').slice(0, 12)
  const moved = path.join('/var/lib/tollgate', hash)
  fs.mkdirSync(moved, { recursive: true })
  fs.symlinkSync(moved, requested)
  log(`${requested} is not reachable by the postgres user; cluster kept in ${moved}`)
  return moved
}

function reachableByServer(dir: string): boolean {
  const { uid, gid } = serverUser()
  // Every ancestor must grant search (x) to the postgres user as owner, group or other.
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    const stat = fs.statSync(current)
    const mode = stat.mode
    const ok = stat.uid === uid ? mode & 0o100 : stat.gid === gid ? mode & 0o010 : mode & 0o001
    if (!ok) return false
    if (current === path.dirname(current)) return true
  }
}
