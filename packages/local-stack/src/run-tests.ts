import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { denoBinary, supabaseBinary } from './binaries.ts'
import { log } from './log.ts'
import { denoConfig, denoEnv } from './functions.ts'
import { functionsDir, repoRoot, stateRoot } from './paths.ts'
import { replicaKindFrom, type ReplicaKind } from './replica.ts'
import { freePorts, removeStackHome, startStack, type RunningStack, type StackEnv } from './stack.ts'
import { ensureChromium, ensureSystemPackages } from './system.ts'

interface SuiteResult {
  suite: string
  passed: number
  failed: number
}

const requiredEnv: Array<keyof StackEnv> = [
  'SUPABASE_URL',
  'SUPABASE_ANON_KEY',
  'SUPABASE_SERVICE_ROLE_KEY',
  'SUPABASE_JWT_SECRET',
  'SUPABASE_DB_URL',
  'TOLLGATE_REPLICA_DB_URL',
]

/**
 * What the suites get besides the stack's own variables: the superuser URL (only where the
 * stack has one to give) and whether this run started the stack itself, so tests that assert
 * on how the stack is built (e.g. `postgres` is not a superuser) know what they may expect.
 */
interface TestEnv extends StackEnv {
  TOLLGATE_SUPERUSER_DB_URL: string
  /** The replica's superuser, for tests that stall replication (pausing WAL replay needs one). */
  TOLLGATE_REPLICA_SUPERUSER_DB_URL: string
  /** "1" when `npm test` started the stack under test; "" when it tests one from the environment. */
  TOLLGATE_TESTS_OWN_STACK: string
}

/**
 * What runs again on a second stack with the other kind of read replica: everything that reads
 * the replica (the plugin endpoints, the replica's own tests, health, the plugin path's queries and the
 * drift setting). The rest does not depend on the replica's kind.
 */
const otherReplicaVitest = ['tests/plugin.test.ts', 'tests/replica.test.ts', 'tests/health.test.ts']
const otherReplicaDeno = ['supabase/functions/_shared/plugin/replica_contract_test.ts', 'supabase/functions/_shared/plugin/replica_drift_test.ts']

type Suite = 'pgtap' | 'main' | 'faults' | 'deno' | 'lint' | 'advisors' | 'other-replica'

/** `npm run test:faults`: only the fault suite, at full scale, on an ephemeral stack. */
export async function runFaultTests(): Promise<number> {
  process.env.FAULTS_SCALE = 'full'
  return runTests(['faults'])
}

/**
 * `npm test`: pgTAP (pg_prove), vitest and Deno tests, then `supabase db lint` and `supabase db
 * advisors`, against one stack — the running one the environment names, or an ephemeral one of
 * our own (own folder, free ports) torn down after. On our own stack the replica is of the kind
 * TOLLGATE_REPLICA_KIND names (logical by default), and a second ephemeral stack with the other
 * kind runs the suites that read the replica again. Ends with the line `N passed, N failed`;
 * the exit code is non-zero on any failure.
 */
export async function runTests(
  suites: Suite[] = ['pgtap', 'main', 'faults', 'deno', 'lint', 'advisors', 'other-replica'],
): Promise<number> {
  await ensureSystemPackages()
  // The usage page's browser tests (in the main vitest suite) drive Debian's Chromium.
  if (suites.includes('main')) await ensureChromium()
  const given = requiredEnv.filter((key) => process.env[key])
  let stack: RunningStack | undefined
  let other: { kind: ReplicaKind; stack: Promise<RunningStack> } | undefined
  let env: TestEnv
  const kind = replicaKindFrom(process.env.TOLLGATE_REPLICA_KIND)
  if (given.length === requiredEnv.length) {
    env = {
      ...(Object.fromEntries(requiredEnv.map((key) => [key, process.env[key]!])) as unknown as StackEnv),
      // As the environment says, or unsaid: the tests ask the replica which kind it is.
      TOLLGATE_REPLICA_KIND: (process.env.TOLLGATE_REPLICA_KIND ?? '') as ReplicaKind,
      TOLLGATE_REPLICA_SUBSCRIPTION: process.env.TOLLGATE_REPLICA_SUBSCRIPTION ?? 'plugin_read_sub',
      TOLLGATE_SUPERUSER_DB_URL: process.env.TOLLGATE_SUPERUSER_DB_URL ?? '',
      TOLLGATE_REPLICA_SUPERUSER_DB_URL: process.env.TOLLGATE_REPLICA_SUPERUSER_DB_URL ?? '',
      TOLLGATE_TESTS_OWN_STACK: '',
    }
    log(`testing the stack at ${env.SUPABASE_URL} (from the environment; only its own kind of replica)`)
  } else {
    if (given.length > 0) log(`ignoring a partial stack environment (missing ${requiredEnv.filter((k) => !process.env[k]).join(', ')})`)
    stack = await startEphemeralStack(`test-${process.pid}`, kind)
    env = ownStackEnv(stack)
    if (suites.includes('other-replica')) {
      // Started now, while pgTAP runs, and left idle until its suites run: by then its heartbeat
      // beats (pg_cron starts it at the first minute after the primary starts), and its start
      // costs no time of its own. Not together with the main stack: each takes free ports some
      // seconds before it binds them, and two starts at once can pick the same one.
      const otherKind = kind === 'logical' ? 'physical' : 'logical'
      other = { kind: otherKind, stack: startEphemeralStack(`test-${process.pid}-${otherKind}`, otherKind) }
    }
  }

  const results: SuiteResult[] = []
  try {
    if (suites.includes('pgtap')) results.push(await pgTap(env))
    if (suites.includes('main')) results.push(await vitest(env))
    if (suites.includes('faults')) results.push(await vitest(env, 'faults'))
    if (suites.includes('deno')) results.push(await denoTests(env))
    if (suites.includes('lint')) results.push(await lint(env))
    if (suites.includes('advisors')) results.push(await advisors(env))
  } catch (error) {
    await other?.stack.then((s) => s.stop({ destroy: true }), () => undefined)
    throw error
  } finally {
    if (stack) {
      log('tearing the ephemeral stack down')
      await stack.stop({ destroy: true })
    }
  }
  if (other) results.push(...(await otherReplicaKind(other.kind, other.stack)))

  for (const r of results) log(`${r.suite}: ${r.passed} passed, ${r.failed} failed`)
  const passed = results.reduce((sum, r) => sum + r.passed, 0)
  const failed = results.reduce((sum, r) => sum + r.failed, 0)
  process.stdout.write(`${passed} passed, ${failed} failed\n`)
  return failed === 0 && passed > 0 ? 0 : 1
}

function ownStackEnv(stack: RunningStack): TestEnv {
  return {
    ...stack.env,
    TOLLGATE_SUPERUSER_DB_URL: stack.superuserDbUrl,
    TOLLGATE_REPLICA_SUPERUSER_DB_URL: stack.replicaSuperuserDbUrl,
    TOLLGATE_TESTS_OWN_STACK: '1',
  }
}

/**
 * The suites that read the replica, on the second ephemeral stack, whose replica is of `kind`
 * (the one the main stack did not have); it runs them after the main stack is down, so the two
 * never compete for the machine while tests run.
 */
async function otherReplicaKind(kind: ReplicaKind, starting: Promise<RunningStack>): Promise<SuiteResult[]> {
  const started = Date.now()
  log(`the plugin and replica suites again, on the stack with a ${kind} replica`)
  let stack: RunningStack
  try {
    stack = await starting
  } catch (error) {
    log(`the ${kind}-replica stack did not start: ${(error as Error).message}`)
    return [{ suite: `${kind}-replica stack`, passed: 0, failed: 1 }]
  }
  try {
    const env = ownStackEnv(stack)
    return [await vitest(env, 'main', otherReplicaVitest, `vitest (${kind} replica)`), await denoTests(env, otherReplicaDeno, `deno (${kind} replica)`)]
  } finally {
    log(`tearing the ${kind}-replica stack down`)
    await stack.stop({ destroy: true })
    log(`the ${kind}-replica suites took ${((Date.now() - started) / 1000).toFixed(1)} s`)
  }
}

/** Ephemeral stacks (started, or still starting) that must go down however the run ends. */
const ephemeralStacks = new Set<Promise<RunningStack>>()
let abortHandlersInstalled = false

/**
 * An ephemeral stack on free ports, torn down with the run however it ends (Ctrl-C, a kill, an
 * error nothing caught), even while it is still starting: its clusters must not outlive the
 * runner. A start that fails is the caller's to report (the promise is marked handled here, so
 * it is not an unhandled rejection while the caller is busy elsewhere).
 */
function startEphemeralStack(name: string, replicaKind: ReplicaKind): Promise<RunningStack> {
  installAbortHandlers()
  const starting = freePorts().then((ports) => startStack({ name, ports, watch: false, seed: true, replicaKind }))
  const tracked = starting.then((stack) => {
    const stop = stack.stop
    stack.stop = async (options) => {
      ephemeralStacks.delete(tracked)
      await stop(options)
    }
    return stack
  })
  ephemeralStacks.add(tracked)
  // A start that fails has stopped what it started; its folder goes too.
  tracked.catch(() => {
    ephemeralStacks.delete(tracked)
    removeStackHome(name)
  })
  return tracked
}

function installAbortHandlers(): void {
  if (abortHandlersInstalled) return
  abortHandlersInstalled = true
  let stopping: Promise<void> | undefined
  const abort = (why: string, code: number) => {
    stopping ??= (async () => {
      log(`${why}: tearing the ephemeral stack${ephemeralStacks.size === 1 ? '' : 's'} down`)
      await Promise.all(
        [...ephemeralStacks].map((starting) =>
          starting.then((s) => s.stop({ destroy: true })).catch((error: unknown) => log(`teardown: ${(error as Error).message}`))),
      )
      process.stdout.write('0 passed, 1 failed\n')
      process.exit(code)
    })()
  }
  process.once('SIGINT', () => abort('interrupted', 130))
  process.once('SIGTERM', () => abort('terminated', 143))
  process.once('uncaughtException', (error) => abort(`unexpected error: ${error.message}`, 1))
  process.once('unhandledRejection', (reason) => abort(`unexpected error: ${(reason as Error)?.message ?? String(reason)}`, 1))
}

/** Runs a command with inherited output while also capturing stdout for counting. */
function runVisible(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd = repoRoot): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk
      process.stdout.write(chunk)
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, stdout }))
  })
}

async function pgTap(env: StackEnv): Promise<SuiteResult> {
  const dir = path.join(repoRoot, 'supabase/tests/database')
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort().map((f) => path.join(dir, f))
  log(`pgTAP: ${files.length} files`)
  const { code, stdout } = await runVisible('pg_prove', ['--verbose', '--dbname', env.SUPABASE_DB_URL, ...files], { ...process.env, PGOPTIONS: '--client-min-messages=warning' })
  const passed = stdout.match(/^ok \d+/gm)?.length ?? 0
  let failed = stdout.match(/^not ok \d+/gm)?.length ?? 0
  // A file that dies or misses its plan fails without a `not ok` line: count it once.
  if (code !== 0 && failed === 0) failed = 1
  return { suite: 'pgTAP', passed, failed }
}

/**
 * The vitest suites: `main` (tests/) or `faults` (tests/faults/: crashes, restarts, fuzzing,
 * retry storms; short here, full with `npm run test:faults`).
 */
async function vitest(env: TestEnv, suite: 'main' | 'faults' = 'main', files: string[] = [], label?: string): Promise<SuiteResult> {
  const report = path.join(stateRoot, `vitest-${suite}-${env.TOLLGATE_REPLICA_KIND}-${process.pid}.json`)
  fs.mkdirSync(stateRoot, { recursive: true })
  const config = suite === 'faults' ? ['--config', path.join(repoRoot, 'vitest.faults.config.ts')] : []
  const { code } = await runVisible(
    process.execPath,
    [path.join(repoRoot, 'node_modules/vitest/vitest.mjs'), 'run', ...config, ...files, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`],
    { ...process.env, FAULTS_SCALE: process.env.FAULTS_SCALE ?? 'short', ...env },
  )
  let passed = 0
  let failed = 0
  if (fs.existsSync(report)) {
    const json = JSON.parse(fs.readFileSync(report, 'utf8')) as { numPassedTests: number; numFailedTests: number; numFailedTestSuites: number }
    passed = json.numPassedTests
    failed = json.numFailedTests + (json.numFailedTests === 0 ? json.numFailedTestSuites : 0)
    fs.rmSync(report)
  }
  if (code !== 0 && failed === 0) failed = 1
  return { suite: label ?? (suite === 'faults' ? 'vitest (faults)' : 'vitest'), passed, failed }
}

async function denoTests(env: TestEnv, files: string[] = [functionsDir], label = 'deno'): Promise<SuiteResult> {
  const { code, stdout } = await runVisible(
    denoBinary(),
    ['test', '--no-prompt', '--allow-net', '--allow-env', '--allow-read', '--allow-sys', `--config=${denoConfig}`, ...files.map((f) => path.resolve(repoRoot, f))],
    { ...process.env, ...env, ...denoEnv(path.join(stateRoot, 'deno-cache')) },
  )
  const summary = /(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(stdout)
  const passed = summary ? Number(summary[1]) : 0
  let failed = summary ? Number(summary[2]) : 0
  if (code !== 0 && failed === 0) failed = 1
  return { suite: label, passed, failed }
}

/** The primary as `supabase db` commands take it: `--remote=<url>` over plain TCP. */
function cliDbUrl(env: StackEnv): string {
  return `${env.SUPABASE_DB_URL}${env.SUPABASE_DB_URL.includes('?') ? '&' : '?'}sslmode=disable`
}

/**
 * `supabase db lint` (plpgsql_check over every PL/pgSQL function of the project's schemas) must
 * report nothing at error level. It runs as `postgres`, which creates plpgsql_check through the
 * extension allow-list inside a transaction the CLI rolls back.
 */
async function lint(env: StackEnv): Promise<SuiteResult> {
  log('supabase db lint')
  const { code, stdout } = await runVisible(
    supabaseBinary(),
    ['db', 'lint', `--remote=${cliDbUrl(env)}`, '--level', 'error', '--fail-on', 'error', '--workdir', repoRoot],
    { ...process.env, DO_NOT_TRACK: '1' },
  )
  const clean = code === 0 && stdout.trim() === ''
  return { suite: 'db lint', passed: clean ? 1 : 0, failed: clean ? 0 : 1 }
}

/** `supabase db advisors` (security and performance lints) must report nothing at warn or above. */
async function advisors(env: StackEnv): Promise<SuiteResult> {
  const url = cliDbUrl(env)
  log('supabase db advisors')
  const { code } = await runVisible(
    supabaseBinary(),
    ['db', 'advisors', `--remote=${url}`, '--type', 'all', '--level', 'warn', '--fail-on', 'warn', '--workdir', repoRoot],
    { ...process.env, DO_NOT_TRACK: '1' },
  )
  const clean = code === 0
  return { suite: 'advisors', passed: clean ? 1 : 0, failed: clean ? 0 : 1 }
}
