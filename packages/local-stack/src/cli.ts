import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { supabaseBinary } from './binaries.ts'
import { log, StackError } from './log.ts'
import { repoRoot } from './paths.ts'
import { runFaultTests, runTests } from './run-tests.ts'
import { defaultPorts, demoUser, demoUserJwt, formatEnv, freePorts, stackHome, startStack, type RunningStack } from './stack.ts'
import { Cluster } from './postgres.ts'
import { replicaKindFrom } from './replica.ts'

const usage = `usage: tsx packages/local-stack/src/cli.ts <command>
  start   bring the local stack up with demo data and print its env (Ctrl-C stops it)
          --name NAME: a separate stack in .tollgate/NAME on free ports (works with stop/reset/status too)
          TOLLGATE_REPLICA_KIND=physical: the read replica is a hot standby (default logical: a subscriber)
  stop    stop a running local stack
  reset   stop, wipe the local database, and start again with migrations and seed re-applied
  status  print the running stack's env
  test    run every test suite (on an ephemeral stack unless SUPABASE_URL etc. point at one),
          and the plugin and replica suites on a second stack with the other kind of replica
  test:faults  the fault and abuse tests at full scale (crash, restarts, fuzzing, retry storm)
  supabase <args>  the Supabase CLI shipped in node_modules (e.g. \`npm run supabase -- migration new x\`)`

const [command, ...rest] = process.argv.slice(2)
// `supabase` passes everything after it to the CLI untouched; the other commands take --name.
function flagsOf(args: string[]): { name?: string } {
  try {
    return parseArgs({ args, options: { name: { type: 'string' } } }).values
  } catch (error) {
    process.stderr.write(`tollgate: ${(error as Error).message}\n${usage}\n`)
    process.exit(2)
  }
}
const flags = command === 'supabase' ? {} : flagsOf(rest)
if (flags.name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(flags.name)) {
  process.stderr.write(`tollgate: --name takes letters, digits, '.', '_' and '-' (got ${JSON.stringify(flags.name)})\n`)
  process.exit(2)
}
// `--name NAME` runs a separate stack (own folder under .tollgate/, free ports unless the
// TOLLGATE_*_PORT variables say otherwise), e.g. one per parallel worktree or agent.
const devStack = flags.name ?? 'dev'
const stateFile = path.join(stackHome(devStack), 'stack.json')

async function main(command: string | undefined): Promise<number> {
  switch (command) {
    case 'start':
      return start()
    case 'stop':
      await stop()
      return 0
    case 'reset':
      await stop()
      log(`wiping ${stackHome(devStack)}`)
      wipeDevStack()
      return start()
    case 'status':
      return status()
    case 'test':
      return runTests()
    case 'test:faults':
      return runFaultTests()
    case 'supabase':
      return passThrough(supabaseBinary(), process.argv.slice(3))
    default:
      process.stderr.write(`${usage}\n`)
      return command ? 2 : 0
  }
}

async function start(): Promise<number> {
  const replicaKind = replicaKindFrom(process.env.TOLLGATE_REPLICA_KIND)
  const running = runningPid()
  if (running) throw new StackError(`the local stack is already running (pid ${running}): \`npm run stop\` first`)
  // Claimed before starting, so a second `npm start` or an `npm run stop` sees us while we boot.
  fs.mkdirSync(path.dirname(stateFile), { recursive: true })
  fs.writeFileSync(stateFile, JSON.stringify({ pid: process.pid }))
  const ports = devStack === 'dev' ? defaultPorts : { ...(await freePorts()), ...definedPorts() }
  const stack = await startStack({ name: devStack, ports, watch: true, seed: true, replicaKind }).catch((error: unknown) => {
    fs.rmSync(stateFile, { force: true })
    throw error
  })
  await printEnv(stack)
  log('stack running; Ctrl-C (or `npm run stop`) stops it')
  let stopping = false
  const shutdown = async (signal: string) => {
    if (stopping) return
    stopping = true
    log(`${signal}: stopping the local stack`)
    await stack.stop()
    fs.rmSync(stateFile, { force: true })
    log('stopped')
    process.exit(0)
  }
  process.on('SIGINT', () => void shutdown('SIGINT'))
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  return new Promise(() => undefined) // the gateway keeps us alive until a signal arrives
}

function passThrough(binary: string, args: string[]): number {
  return spawnSync(binary, args, { stdio: 'inherit', cwd: repoRoot }).status ?? 1
}

function definedPorts(): Partial<typeof defaultPorts> {
  const pick = (name: string) => (process.env[name] ? Number(process.env[name]) : undefined)
  return Object.fromEntries(
    Object.entries({ api: pick('TOLLGATE_API_PORT'), db: pick('TOLLGATE_DB_PORT'), replica: pick('TOLLGATE_REPLICA_PORT') }).filter(([, v]) => v),
  )
}

async function printEnv(stack: RunningStack): Promise<void> {
  const { env } = stack
  process.stdout.write(
    formatEnv({
      API_URL: env.SUPABASE_URL,
      REST_URL: `${env.SUPABASE_URL}/rest/v1`,
      FUNCTIONS_URL: `${env.SUPABASE_URL}/functions/v1`,
      DB_URL: env.SUPABASE_DB_URL,
      REPLICA_DB_URL: env.TOLLGATE_REPLICA_DB_URL,
      REPLICA_KIND: env.TOLLGATE_REPLICA_KIND,
      ANON_KEY: env.SUPABASE_ANON_KEY,
      SERVICE_ROLE_KEY: env.SUPABASE_SERVICE_ROLE_KEY,
      JWT_SECRET: env.SUPABASE_JWT_SECRET,
      DEMO_USER_ID: demoUser.id,
      DEMO_USER_EMAIL: demoUser.email,
      DEMO_USER_JWT: await demoUserJwt(env),
      USAGE_PAGE_URL: stack.usagePageUrl,
    }),
  )
  log(`usage page: ${stack.usagePageUrl} (sign in as the demo user there)`)
  log(`the same values under the names tests and functions read: ${path.join(stack.home, '.env')}`)
}

function runningPid(): number | undefined {
  if (!fs.existsSync(stateFile)) return undefined
  const { pid } = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as { pid: number }
  try {
    process.kill(pid, 0)
    return pid
  } catch {
    fs.rmSync(stateFile, { force: true })
    return undefined
  }
}

async function stop(): Promise<void> {
  const pid = runningPid()
  if (pid) {
    log(`stopping the local stack (pid ${pid})`)
    process.kill(pid, 'SIGTERM')
    const deadline = Date.now() + 90_000
    while (runningPid() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    if (runningPid()) throw new StackError(`the local stack (pid ${pid}) did not stop within 90 s: kill it and run \`npm run stop\` again`)
  }
  // A supervisor that died without cleaning up leaves pg_ctl-managed clusters behind.
  for (const name of ['primary', 'replica']) {
    await devCluster(name)?.stop()
  }
}

/** The dev stack's cluster when it exists (port is irrelevant for stop/destroy). */
function devCluster(name: string): Cluster | undefined {
  const home = path.join(stackHome(devStack), name)
  return fs.existsSync(home) ? new Cluster({ name, home, port: 0, settings: {} }) : undefined
}

function wipeDevStack(): void {
  devCluster('primary')?.destroy()
  devCluster('replica')?.destroy()
  fs.rmSync(stackHome(devStack), { recursive: true, force: true })
}

function status(): number {
  const pid = runningPid()
  if (!pid) {
    process.stderr.write('the local stack is not running: `npm start`\n')
    return 1
  }
  process.stdout.write(fs.readFileSync(path.join(stackHome(devStack), '.env'), 'utf8'))
  return 0
}

main(command).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`tollgate: ${error instanceof StackError || error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  },
)
