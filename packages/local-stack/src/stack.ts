import type { ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import type http from 'node:http'
import path from 'node:path'
import { supabaseBinary } from './binaries.ts'
import { discoverFunctions } from './config.ts'
import { startFunctions, type RunningFunction } from './functions.ts'
import { gatewayPort, startGateway } from './gateway.ts'
import { apiKey, defaultJwtSecret, userJwt } from './jwt.ts'
import { log } from './log.ts'
import { baselineSql, extensionScriptsDir, repoRoot, stateRoot } from './paths.ts'
import { Cluster, localPassword, runSql } from './postgres.ts'
import { startPostgrest } from './postgrest.ts'
import { freePort, runChecked, stopChild } from './process.ts'
import {
  dropStaleReplicaSlots,
  type ReplicaKind,
  standbyConnInfo,
  standbySlotName,
  subscriptionName,
  syncReplica,
  waitForStandby,
} from './replica.ts'
import { ensureSystemPackages } from './system.ts'
import { createStripeStandin, type StripeStandin } from './stripe-standin.ts'
import { buildUsagePage, usagePageHandler, watchUsagePage } from '@tollgate/usage-page'

/**
 * The platform baseline is applied to a new cluster, and again only when the baseline file
 * changed: re-applying it on every start would re-grant Supabase's default privileges over what
 * the project's migrations revoked since.
 */
async function applyBaselineOnce(primary: Cluster, fresh: boolean): Promise<void> {
  const sql = fs.readFileSync(baselineSql, 'utf8')
  const digest = crypto.createHash('sha256').update(sql).digest('hex')
  const marker = path.join(primary.home, 'baseline.sha256')
  if (!fresh && fs.existsSync(marker) && fs.readFileSync(marker, 'utf8') === digest) return
  await runSql(primary.superuserUrl(), sql, 'applying the Supabase platform baseline')
  fs.writeFileSync(marker, digest)
}

/** The variables tests, functions and apps read; the same names work against `supabase start`. */
export interface StackEnv {
  SUPABASE_URL: string
  SUPABASE_ANON_KEY: string
  SUPABASE_SERVICE_ROLE_KEY: string
  SUPABASE_JWT_SECRET: string
  SUPABASE_DB_URL: string
  TOLLGATE_REPLICA_DB_URL: string
  /** Which kind of replica TOLLGATE_REPLICA_DB_URL is. */
  TOLLGATE_REPLICA_KIND: ReplicaKind
  /** The logical replica's subscription; a physical standby has none. */
  TOLLGATE_REPLICA_SUBSCRIPTION?: string
}

export interface StackOptions {
  /** Folder name under .tollgate/: "dev" for `npm start`, a unique name for test stacks. */
  name: string
  ports: { api: number; db: number; replica: number }
  /** Reload edge functions when their files change. */
  watch: boolean
  /** Apply supabase/seed.sql (demo data) with the migrations. */
  seed: boolean
  /** The read replica: a logical subscriber (default) or a physical hot standby. */
  replicaKind?: ReplicaKind
  jwtSecret?: string
}

/**
 * Extensions `postgres` may create although it is not a superuser: hosted Supabase's
 * `supautils.privileged_extensions` (supabase/postgres, ansible/files/postgresql_config/
 * supautils.conf.j2). pgextwlist creates them as the superuser; those not installed here fail
 * as unavailable, as anywhere.
 */
export const privilegedExtensions = [
  'address_standardizer', 'address_standardizer_data_us', 'autoinc', 'bloom', 'btree_gin', 'btree_gist', 'citext', 'cube',
  'dblink', 'dict_int', 'dict_xsyn', 'earthdistance', 'fuzzystrmatch', 'hstore', 'http', 'insert_username', 'intarray', 'isn',
  'ltree', 'moddatetime', 'pg_cron', 'pg_graphql', 'pg_hashids', 'pg_jsonschema', 'pg_net', 'pg_stat_monitor',
  'pg_stat_statements', 'pg_trgm', 'pg_walinspect', 'pgaudit', 'pgcrypto', 'pgjwt', 'pgroonga', 'pgroonga_database',
  'pgrouting', 'pgrowlocks', 'pgsodium', 'pgtap', 'plcoffee', 'pljava', 'plls', 'plpgsql', 'plpgsql_check', 'plv8', 'postgis',
  'postgis_raster', 'postgis_sfcgal', 'postgis_tiger_geocoder', 'postgis_topology', 'postgres_fdw', 'refint', 'rum', 'seg',
  'sslinfo', 'supabase_vault', 'supautils', 'tablefunc', 'tcn', 'timescaledb', 'tsm_system_rows', 'tsm_system_time',
  'unaccent', 'uuid-ossp', 'wrappers',
]

export interface RunningStack {
  env: StackEnv
  /**
   * The primary's superuser (`supabase_admin`), as `TOLLGATE_SUPERUSER_DB_URL`: only for what
   * needs it (the replica's setup, tests that break things on purpose). Never given to
   * functions; migrations, the seed and the tests' own connections use SUPABASE_DB_URL (`postgres`).
   */
  superuserDbUrl: string
  home: string
  /** The usage page, served by the gateway. */
  usagePageUrl: string
  primary: Cluster
  replica: Cluster
  replicaKind: ReplicaKind
  /**
   * The replica's superuser, as `TOLLGATE_REPLICA_SUPERUSER_DB_URL`: for tests that stall
   * replication on purpose. A logical subscriber's is its own `postgres`; a physical standby has
   * the primary's roles, so it is `supabase_admin` there too.
   */
  replicaSuperuserDbUrl: string
  /** Fault injection: stop PostgREST (clients get 502 from the gateway meanwhile) and start it again. */
  restartPostgrest(options?: { downMs?: number }): Promise<void>
  stop(options?: { destroy?: boolean }): Promise<void>
}

/**
 * Function secrets the local stack sets unless the environment has its own: Stripe test
 * values (the webhook secret is what tests sign their payloads with; Stripe's API is the
 * stack's own stand-in unless a real key is exported, see startStack).
 */
export const localFunctionSecrets: Record<string, string> = {
  STRIPE_SECRET_KEY: 'sk_test_tollgate_local',
  STRIPE_WEBHOOK_SECRET: 'whsec_tollgate_local',
  // Local development only: the outbound guard also allows http://127.0.0.1:<port> (the tests'
  // local receivers and backends). The database half is turned on by supabase/seed.sql.
  TOLLGATE_OUTBOUND_ALLOW_LOCAL_HTTP: 'true',
  // The usage page's "Buy credits": one credit for one cent.
  TOLLGATE_CHECKOUT_CENTS_PER_CREDIT: '1',
}

/** Demo user created by supabase/seed.sql. */
export const demoUser = { id: '5eed0000-0000-4000-8000-000000000001', email: 'demo@tollgate.local' }

export const defaultPorts = {
  api: Number(process.env.TOLLGATE_API_PORT ?? 54321),
  db: Number(process.env.TOLLGATE_DB_PORT ?? 54322),
  replica: Number(process.env.TOLLGATE_REPLICA_PORT ?? 54332),
}

export async function freePorts(): Promise<StackOptions['ports']> {
  return { api: await freePort(), db: await freePort(), replica: await freePort() }
}

export function stackHome(name: string): string {
  return path.join(stateRoot, name)
}

/** Removes a stopped stack's folder and its clusters (which may live elsewhere when we are root). */
export function removeStackHome(name: string): void {
  for (const cluster of ['primary', 'replica']) {
    const home = path.join(stackHome(name), cluster)
    if (fs.existsSync(home)) new Cluster({ name: cluster, home, port: 0, settings: {} }).destroy()
  }
  fs.rmSync(stackHome(name), { recursive: true, force: true })
}

/**
 * Brings up the whole stack: primary (pg_cron, logical WAL), platform baseline, migrations via
 * the Supabase CLI, logical replica of publication plugin_read, PostgREST, edge functions and
 * the gateway. Each step either succeeds or throws one StackError line; on failure everything
 * already started is stopped again.
 */
export async function startStack(options: StackOptions): Promise<RunningStack> {
  const started = Date.now()
  const jwtSecret = options.jwtSecret ?? process.env.SUPABASE_JWT_SECRET ?? defaultJwtSecret
  const home = stackHome(options.name)
  const logDir = path.join(home, 'logs')
  fs.mkdirSync(logDir, { recursive: true })

  await ensureSystemPackages()

  const replicaKind = options.replicaKind ?? 'logical'
  const primary = new Cluster({
    name: 'primary',
    home: path.join(home, 'primary'),
    port: options.ports.db,
    // As on hosted Supabase: the platform's superuser owns the cluster; `postgres` (created by
    // the baseline) is an ordinary role with hosted Supabase's attributes and grants.
    superuser: 'supabase_admin',
    extensionAllowList: { extensions: privilegedExtensions, scriptsDir: extensionScriptsDir },
    settings: {
      wal_level: 'logical',
      max_wal_senders: 10,
      max_replication_slots: 10,
      shared_preload_libraries: 'pg_cron',
      'cron.database_name': 'postgres',
      // Jobs run in background workers: no libpq login (and no password) needed by pg_cron.
      'cron.use_background_workers': 'on',
      'cron.max_running_jobs': 8,
      max_worker_processes: 32,
      max_connections: 200,
      timezone: 'UTC',
    },
  })
  const replica = replicaKind === 'logical'
    ? // A plain subscriber one runs oneself, not a Supabase project: its `postgres` stays its
      // superuser (PostgreSQL 15 creates subscriptions only as a superuser).
      new Cluster({
        name: 'replica',
        home: path.join(home, 'replica'),
        port: options.ports.replica,
        settings: { max_logical_replication_workers: 4, max_replication_slots: 10, max_connections: 100, timezone: 'UTC' },
      })
    : // A hot standby, as a Supabase Read Replica: a copy of the primary (its roles, so its
      // superuser is `supabase_admin` too) replaying its WAL. Where it streams from is rewritten
      // on every start, so it follows a primary that moved to another port.
      new Cluster({
        name: 'replica',
        home: path.join(home, 'replica'),
        port: options.ports.replica,
        superuser: 'supabase_admin',
        settings: {
          primary_conninfo: standbyConnInfo(options.ports.db, localPassword),
          primary_slot_name: standbySlotName,
          hot_standby: 'on',
          // A hot standby refuses to run with less of these than its primary has.
          max_connections: 200,
          max_worker_processes: 32,
          max_wal_senders: 10,
          timezone: 'UTC',
        },
      })

  const children: ChildProcess[] = []
  let functions: RunningFunction[] = []
  let gateway: http.Server | undefined
  let stripeStandin: StripeStandin | undefined
  let pageWatch: { stop(): Promise<void> } | undefined

  const stop = async ({ destroy = false } = {}) => {
    await new Promise<void>((resolve) => (gateway ? gateway.close(() => resolve()) : resolve()))
    gateway?.closeAllConnections()
    await Promise.all([...children, ...functions.map((f) => f.child)].map((child) => stopChild(child)))
    await pageWatch?.stop()
    await replica.stop().catch((error) => log(`replica: ${(error as Error).message}`))
    await primary.stop().catch((error) => log(`primary: ${(error as Error).message}`))
    if (destroy) {
      primary.destroy()
      replica.destroy()
      fs.rmSync(home, { recursive: true, force: true })
    }
  }

  try {
    const fresh = await primary.init()
    log(`${fresh ? 'created' : 'reusing'} primary cluster in ${primary.dataDir}`)
    await primary.start()
    await applyBaselineOnce(primary, fresh)

    log('applying migrations with `supabase db push`')
    await pushMigrations(primary.url(), options.seed)

    await keepOrReplaceReplica(replica, replicaKind, primary, fresh)
    const markKind = () => fs.writeFileSync(replicaKindFile(replica), `${replicaKind}\n`)
    if (replicaKind === 'logical') {
      await replica.init()
      markKind()
      await replica.start()
      // The subscription connects to the primary as `postgres`, which hosted Supabase lets feed a
      // logical subscriber (REPLICATION, owner of the published tables).
      await syncReplica(
        primary.url(),
        replica.url(),
        `host=127.0.0.1 port=${primary.port} user=postgres password=${localPassword} dbname=postgres application_name=${subscriptionName}`,
      )
      log(`logical replica on :${replica.port} subscribed to publication plugin_read`)
    } else {
      // The base backup and the stream connect as `postgres` (REPLICATION, as on hosted Supabase).
      if (await replica.initStandby(standbyConnInfo(primary.port, localPassword), standbySlotName)) {
        log(`physical replica: base backup of the primary in ${replica.dataDir}`)
      }
      markKind()
      await replica.start()
      await waitForStandby(primary.url(), replica.superuserUrl())
      log(`physical replica on :${replica.port} streaming from the primary (slot ${standbySlotName})`)
    }

    const postgrestOptions = { dbUrl: primary.url('authenticator'), jwtSecret, port: await freePort(), adminPort: await freePort(), logDir }
    const postgrestPort = postgrestOptions.port
    children.push(await startPostgrest(postgrestOptions))
    const restartPostgrest = async ({ downMs = 0 } = {}) => {
      const index = children.findIndex((child) => child.spawnargs[0]?.endsWith('postgrest'))
      await stopChild(children[index])
      if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs))
      children[index] = await startPostgrest(postgrestOptions)
    }

    const apiUrl = `http://127.0.0.1:${options.ports.api}`
    const env: StackEnv = {
      SUPABASE_URL: apiUrl,
      SUPABASE_ANON_KEY: await apiKey('anon', jwtSecret),
      SUPABASE_SERVICE_ROLE_KEY: await apiKey('service_role', jwtSecret),
      SUPABASE_JWT_SECRET: jwtSecret,
      SUPABASE_DB_URL: primary.url(),
      TOLLGATE_REPLICA_DB_URL: replica.url(),
      TOLLGATE_REPLICA_KIND: replicaKind,
      ...(replicaKind === 'logical' ? { TOLLGATE_REPLICA_SUBSCRIPTION: subscriptionName } : {}),
    }
    const superuserDbUrl = primary.superuserUrl()
    const replicaSuperuserDbUrl = replica.superuserUrl()

    const denoDir = path.join(stateRoot, 'deno-cache')
    const usagePageUrl = `${apiUrl}/usage/`
    // Function secrets (TOLLGATE_*, STRIPE_*) pass through from our environment, as `supabase
    // secrets set` provides them on hosted Supabase; Stripe gets local test values by default,
    // and, unless a real key is given, a local stand-in for its API: nothing leaves this machine.
    const secrets: Record<string, string> = {
      ...localFunctionSecrets,
      TOLLGATE_USAGE_PAGE_URL: usagePageUrl,
      ...(Object.fromEntries(
        Object.entries(process.env).filter(([key, value]) => /^(TOLLGATE|STRIPE)_/.test(key) && value !== undefined),
      ) as Record<string, string>),
    }
    const realStripeKey = process.env.STRIPE_SECRET_KEY !== undefined && process.env.STRIPE_SECRET_KEY !== localFunctionSecrets.STRIPE_SECRET_KEY
    if (!realStripeKey && !process.env.STRIPE_API_BASE) {
      // Served by the gateway below (its own port: no second listener to race for one).
      stripeStandin = createStripeStandin({ baseUrl: apiUrl, webhookUrl: `${apiUrl}/functions/v1/stripe-webhook`, webhookSecret: secrets.STRIPE_WEBHOOK_SECRET! })
      secrets.STRIPE_API_BASE = apiUrl
    }
    functions = await startFunctions(discoverFunctions(), { env: { ...secrets, ...env }, logDir, denoDir, watch: options.watch })

    // The usage page, built into this stack's folder and served by the gateway under /usage/.
    const pageDir = path.join(home, 'usage-page')
    if (options.watch) pageWatch = await watchUsagePage(pageDir, (message) => log(message))
    else await buildUsagePage(pageDir)
    const pageConfig = {
      supabaseUrl: apiUrl,
      anonKey: env.SUPABASE_ANON_KEY,
      auth: 'local' as const,
      ...(options.seed ? { demoToken: await demoUserJwt(env), demoEmail: demoUser.email } : {}),
      pollSeconds: 5,
    }
    gateway = await startGateway(
      {
        postgrestPort,
        functions: new Map(functions.map((f) => [f.name, { port: f.port, verifyJwt: f.verifyJwt }])),
        jwtSecret,
        pages: new Map([
          ['/usage', usagePageHandler(pageDir, pageConfig)],
          ...(stripeStandin ? ([['/v1', stripeStandin.api], ['/stripe-checkout', stripeStandin.pages]] as const) : []),
        ]),
      },
      options.ports.api,
    ).catch((error: NodeJS.ErrnoException) => {
      throw error.code === 'EADDRINUSE'
        ? new Error(`port ${options.ports.api} (API gateway) is taken by another process: stop it, or set TOLLGATE_API_PORT`)
        : error
    })
    log(`gateway on ${apiUrl}: /rest/v1 → PostgREST, /functions/v1/{${functions.map((f) => f.name).join(',')}}, /usage/ → the usage page`)
    fs.writeFileSync(
      path.join(home, '.env'),
      formatEnv({ ...env, TOLLGATE_SUPERUSER_DB_URL: superuserDbUrl, TOLLGATE_REPLICA_SUPERUSER_DB_URL: replicaSuperuserDbUrl }),
    )
    log(`stack "${options.name}" up in ${((Date.now() - started) / 1000).toFixed(1)} s; logs in ${logDir}`)
    return { env, superuserDbUrl, home, usagePageUrl, primary, replica, replicaKind, replicaSuperuserDbUrl, restartPostgrest, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/** Records which kind of replica a replica folder holds (folders made before this: logical). */
function replicaKindFile(replica: Cluster): string {
  return path.join(replica.home, 'kind')
}

/**
 * A replica holds nothing of its own: everything in it comes from the primary. So a replica
 * folder of the other kind than asked for (a stack switched with TOLLGATE_REPLICA_KIND), or one
 * made from a primary that has since been recreated, is stopped and removed, and the slots our
 * replicas held on the primary go with it (a slot nobody reads keeps WAL forever).
 */
async function keepOrReplaceReplica(replica: Cluster, kind: ReplicaKind, primary: Cluster, primaryFresh: boolean): Promise<void> {
  if (replica.initialized) {
    const file = replicaKindFile(replica)
    const existing = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : 'logical'
    if (existing === kind && !primaryFresh) return
    log(`replacing the ${existing} replica in ${replica.dataDir}: ${existing === kind ? 'the primary is new' : `this stack now runs a ${kind} replica`}`)
    await replica.stop()
    replica.destroy()
  }
  const dropped = await dropStaleReplicaSlots(primary.url())
  if (dropped.length > 0) log(`dropped the primary's unused replication slot(s) ${dropped.join(', ')}`)
}

/** Applies supabase/migrations (and optionally the seed) exactly as a deploy does: as `postgres`. */
async function pushMigrations(dbUrl: string, seed: boolean): Promise<void> {
  const { stdout, stderr } = await runChecked(
    'supabase db push',
    supabaseBinary(),
    ['db', 'push', `--remote=${dbUrl}?sslmode=disable`, '--yes', ...(seed ? ['--include-seed'] : []), '--workdir', repoRoot],
    { env: { ...process.env, DO_NOT_TRACK: '1', SUPABASE_TELEMETRY_DISABLED: '1' } },
  )
  for (const line of `${stdout}\n${stderr}`.split('\n')) {
    if (/^(Applying|Seeding)/.test(line.trim())) log(`  ${line.trim()}`)
  }
}

export function formatEnv(env: object): string {
  return Object.entries(env as Record<string, string>).map(([key, value]) => `${key}="${value}"`).join('\n') + '\n'
}

/** A ready-to-use access token for the demo user (seeded by supabase/seed.sql). */
export function demoUserJwt(env: StackEnv): Promise<string> {
  return userJwt(demoUser.id, env.SUPABASE_JWT_SECRET, { email: demoUser.email, expiresInSeconds: 7 * 24 * 3600 })
}
