// `npm run bench`: an ephemeral stack, bench data, every scenario side by side, a report in
// bench/results/ (latest.json, latest.md, latest.svg), teardown. Targets live in the report only.
//
//   BENCH_SECONDS=10   seconds per measurement of one variant at one client count
//   BENCH_QUICK=1      smoke run: 2 s per measurement, smaller data
//   BENCH_ONLY=1,4     run only these scenarios (development aid; the report says so)
//   BENCH_RTT_MS=0.5   client↔database round trip the delay proxy adds in scenario 3b
import os from 'node:os'
import pg from 'pg'
import { freePorts, startStack, type RunningStack } from '@tollgate/local-stack'
import { runScenario, type Context } from './lib/context.ts'
import { lifecycle } from './lib/lifecycle.ts'
import { log } from './lib/log.ts'
import { describeMachine } from './lib/machine.ts'
import { removeTmpDir } from './lib/paths.ts'
import { pgTarget } from './lib/pgbench.ts'
import { writeReport } from './lib/report.ts'
import type { ScenarioResult } from './lib/result.ts'
import { settings } from './lib/settings.ts'
import { prepare } from './prepare.ts'
import { distinctOrgs, hotOrg } from './scenarios/charges.ts'
import { hotOrgOverNetwork } from './scenarios/network.ts'
import { meterPath } from './scenarios/meter.ts'
import { sideEffects } from './scenarios/side-effects.ts'
import { gateQuery } from './scenarios/gate.ts'
import { balanceVsLedger } from './scenarios/balance.ts'
import { maintenance } from './scenarios/maintenance.ts'
import { httpConsume, pluginGate, stopPluginProcesses } from './scenarios/http.ts'
import { usageStats } from './scenarios/usage.ts'
import { batchCharges } from './scenarios/batch.ts'
import type { ScenarioOutput } from './lib/context.ts'

interface Scenario {
  id: string
  title: string
  run(ctx: Context): Promise<ScenarioOutput>
}

// Order matters: the charge scenarios (1-3, 3b, 10, 11) run before the 10M-row ledger and the
// maintenance data exist, so ours and its floors work on tables of comparable size; 3b follows
// 3, whose loopback figures it shows beside its own; scenario 7 follows 1-2, whose SQL-layer
// figures it compares with, and scenario 12 (batch charges over HTTP) beside it; scenario 6 changes the most data and runs last.
const scenarios: Scenario[] = [
  { id: '1', title: 'consume_credits on distinct orgs vs floor', run: distinctOrgs },
  { id: '2-3', title: 'consume_credits on one hot org vs floor and the client-side locking pattern', run: hotOrg },
  { id: '3b', title: 'one hot org over a client↔database round trip (delay proxy) vs the client-side locking pattern', run: hotOrgOverNetwork },
  { id: '10', title: 'reserve + capture, the meter gateway\'s path, on distinct orgs vs floor', run: meterPath },
  { id: '11', title: 'consume_credits with auto top-up and alerts configured vs without', run: sideEffects },
  { id: '7', title: 'consume_credits through PostgREST vs SQL layer', run: httpConsume },
  { id: '12', title: 'consume_credits_batch (100 items per call) vs consume_credits per item, through PostgREST', run: batchCharges },
  { id: '8', title: 'POST /functions/v1/updates gated vs ungated', run: pluginGate },
  { id: '4', title: 'plugin gate query vs Capgo v2 balances view', run: gateQuery },
  { id: '5', title: 'get_credit_balance, 1k vs big ledger', run: balanceVsLedger },
  { id: '9', title: 'get_usage_stats(30), 1k vs 10M calls', run: usageStats },
  { id: '6', title: 'flag refresh and grant expiry over many orgs', run: maintenance },
]

const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean)
const selected = only ? scenarios.filter((s) => s.id.split('-').some((part) => only.includes(part))) : scenarios

async function main(): Promise<number> {
  const started = performance.now()
  log(`${settings.quick ? 'QUICK smoke run' : 'full run'}: ${settings.seconds} s per measurement; load ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`)
  let stackStarting: Promise<RunningStack> | undefined
  let db: pg.Client | undefined
  let admin: pg.Client | undefined
  let replica: pg.Client | undefined
  let failed = false
  let interrupted = false
  const interrupt = () => {
    interrupted = true
    lifecycle.closing = true
    log('interrupted: tearing the stack down')
    void cleanup().finally(() => process.exit(130))
  }
  const cleanup = async () => {
    process.off('SIGINT', interrupt)
    process.off('SIGTERM', interrupt)
    await stopPluginProcesses()
    await Promise.allSettled([db?.end(), admin?.end(), replica?.end()])
    // Interrupted while the stack was still starting: let it come up, then take it down.
    const stack = await stackStarting?.catch(() => undefined)
    await stack?.stop({ destroy: true })
    removeTmpDir()
  }
  process.once('SIGINT', interrupt)
  process.once('SIGTERM', interrupt)
  try {
    stackStarting = startStack({ name: `bench-${process.pid}`, ports: await freePorts(), watch: false, seed: false })
    const stack = await stackStarting
    if (interrupted) return 130
    // Errors reach us through the failed query; an idle connection dropped at teardown must not
    // crash the process before the teardown is done.
    db = new pg.Client({ connectionString: stack.env.SUPABASE_DB_URL, application_name: 'bench-setup' })
    db.on('error', () => {})
    await db.connect()
    admin = new pg.Client({ connectionString: stack.superuserDbUrl, application_name: 'bench-setup' })
    admin.on('error', () => {})
    await admin.connect()
    replica = new pg.Client({ connectionString: stack.env.TOLLGATE_REPLICA_DB_URL, application_name: 'bench-setup' })
    replica.on('error', () => {})
    await replica.connect()
    const machine = await describeMachine(db)
    const setupStarted = performance.now()
    const prepared = await prepare(db, admin, replica)
    const setupSeconds = Math.round(performance.now() - setupStarted) / 1000
    const results: ScenarioResult[] = []
    const ctx: Context = { stack, db, admin, replica, primary: pgTarget(stack.env.SUPABASE_DB_URL), prepared, results }
    for (const scenario of selected) {
      if (interrupted) return 130
      try {
        results.push(await runScenario(scenario.id, scenario.title, () => scenario.run(ctx)))
      } catch (error) {
        if (interrupted) return 130
        failed = true
        log(`scenario ${scenario.id} failed: ${(error as Error).stack ?? error}`)
        results.push({
          id: scenario.id,
          title: scenario.title,
          rows: [{ scenario: `${scenario.id}. ${scenario.title}`, target: '-', ratio: null, measured: '-', status: 'ERROR', absolute: (error as Error).message.split('\n')[0]! }],
          measurements: [],
          seconds: 0,
          load_before: [],
          load_after: [],
        })
      }
    }
    const totalSeconds = Math.round(performance.now() - started) / 1000
    const files = writeReport({ machine, settings, results, setupSeconds, totalSeconds, prepared, only: only ?? null })
    log(`report: ${files.join(', ')}`)
    log(`total ${totalSeconds} s`)
  } catch (error) {
    if (interrupted) return 130
    failed = true
    log(`bench failed: ${(error as Error).stack ?? error}`)
  } finally {
    if (!interrupted) await cleanup()
  }
  return failed ? 1 : 0
}

process.exitCode = await main()
