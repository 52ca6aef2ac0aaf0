// pgbench runs (-M prepared -n) whose per-transaction log gives the latency percentiles.
import fs from 'node:fs'
import path from 'node:path'
import { pgBin } from '../../packages/local-stack/src/binaries.ts'
import { run } from '../../packages/local-stack/src/process.ts'
import { assertRunning } from './lifecycle.ts'
import type { Sample } from './stats.ts'
import { tmpDir } from './paths.ts'

export interface PgTarget {
  host: string
  port: string
  user: string
  password: string
  database: string
}

export function pgTarget(url: string): PgTarget {
  const parsed = new URL(url)
  return {
    host: parsed.hostname,
    port: parsed.port || '5432',
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    database: parsed.pathname.replace(/^\//, '') || 'postgres',
  }
}

export interface PgbenchRun {
  /** File-name-safe label: names the script and log files. */
  name: string
  script: string
  clients: number
  /** Run for this long (-T) ... */
  seconds: number
  /** ... or, when set, for this many transactions per client (-t). */
  transactions?: number
  /** -D variables; in prepared mode each :var is sent as a bind parameter. */
  vars?: Record<string, string>
  /** Session settings for pgbench's connections (PGOPTIONS), e.g. "-c track_functions=all". */
  pgoptions?: string
}

let runCounter = 0

export async function pgbench(target: PgTarget, spec: PgbenchRun): Promise<Sample> {
  assertRunning()
  const dir = tmpDir()
  const scriptFile = path.join(dir, `${spec.name}.sql`)
  fs.writeFileSync(scriptFile, spec.script.trim() + '\n')
  const prefix = path.join(dir, `${spec.name}-${++runCounter}`)
  const args = [
    '-h', target.host, '-p', target.port, '-U', target.user,
    '-n', '-M', 'prepared',
    '-c', String(spec.clients), '-j', String(Math.min(2, spec.clients)),
    ...(spec.transactions ? ['-t', String(spec.transactions)] : ['-T', String(spec.seconds)]),
    '--log', `--log-prefix=${prefix}`,
    '-f', scriptFile,
    ...Object.entries(spec.vars ?? {}).flatMap(([key, value]) => ['-D', `${key}=${value}`]),
    target.database,
  ]
  const result = await run(pgBin('pgbench'), args, {
    env: { ...process.env, PGPASSWORD: target.password, PGAPPNAME: `bench-${spec.name}`, ...(spec.pgoptions ? { PGOPTIONS: spec.pgoptions } : {}) },
    cwd: dir,
  })
  const logs = fs.readdirSync(dir).filter((file) => file.startsWith(`${path.basename(prefix)}.`)).map((file) => path.join(dir, file))
  try {
    if (result.code !== 0 || /aborted|error/i.test(result.stderr)) {
      const tail = (result.stderr || result.stdout).trim().split('\n').slice(-6).join('\n')
      throw new Error(`pgbench ${spec.name} (${spec.clients} clients) failed (exit ${result.code}):\n${tail}`)
    }
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(result.stdout)?.[1])
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(result.stdout)?.[1])
    const failed = Number(/number of failed transactions: (\d+)/.exec(result.stdout)?.[1] ?? 0)
    if (!Number.isFinite(processed) || !Number.isFinite(tps) || tps <= 0) {
      throw new Error(`pgbench ${spec.name}: cannot read its summary:\n${result.stdout.slice(-800)}`)
    }
    if (spec.transactions) return { count: processed, seconds: processed / tps, latencies_ms: readLog(logs).latencies_ms, failed }
    return warmedUp(readLog(logs), spec.seconds, failed)
  } finally {
    for (const file of logs) fs.rmSync(file, { force: true })
  }
}

interface TransactionLog {
  /** Latency of each transaction, ms (third field of pgbench's per-transaction log). */
  latencies_ms: Float64Array
  /** When each transaction ended, seconds since the epoch (fifth and sixth fields). */
  ended_s: Float64Array
}

function readLog(files: string[]): TransactionLog {
  const latencies: number[] = []
  const ended: number[] = []
  for (const file of files) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const fields = line.split(' ')
      const micros = Number(fields[2])
      const endS = Number(fields[4]) + Number(fields[5]) / 1e6
      if (fields.length < 6 || !Number.isFinite(micros) || !Number.isFinite(endS)) continue
      latencies.push(micros / 1000)
      ended.push(endS)
    }
  }
  return { latencies_ms: Float64Array.from(latencies), ended_s: Float64Array.from(ended) }
}

/**
 * Every pgbench run opens new connections, and a new connection's first calls compile the
 * PL/pgSQL functions and plan their statements: a cost a pooled application server (PostgREST
 * keeps its connections) pays once, not per second of traffic, and one that weighs on a side in
 * proportion to how many functions it calls. So the first second of each timed run (at most a
 * fifth of it) is a warm-up: throughput and latencies count the transactions that ended after it.
 */
function warmedUp(log: TransactionLog, seconds: number, failed: number): Sample {
  let start = Infinity
  let end = -Infinity
  for (let i = 0; i < log.ended_s.length; i++) {
    start = Math.min(start, log.ended_s[i]! - log.latencies_ms[i]! / 1000)
    end = Math.max(end, log.ended_s[i]!)
  }
  const from = start + Math.min(1, seconds / 5)
  const kept: number[] = []
  for (let i = 0; i < log.ended_s.length; i++) if (log.ended_s[i]! >= from) kept.push(log.latencies_ms[i]!)
  if (kept.length === 0 || end <= from) throw new Error('pgbench: no transaction ended after the warm-up')
  return { count: kept.length, seconds: end - from, latencies_ms: Float64Array.from(kept), failed }
}
