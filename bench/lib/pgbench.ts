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
    return { count: processed, seconds: processed / tps, latencies_ms: readLatencies(logs), failed }
  } finally {
    for (const file of logs) fs.rmSync(file, { force: true })
  }
}

/** Third field of pgbench's per-transaction log: latency in microseconds. */
function readLatencies(files: string[]): Float64Array {
  const values: number[] = []
  for (const file of files) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const field = line.split(' ')[2]
      if (field === undefined) continue
      const micros = Number(field)
      if (Number.isFinite(micros)) values.push(micros / 1000)
    }
  }
  return Float64Array.from(values)
}
