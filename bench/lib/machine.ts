// The machine the figures come from: printed with every result, since only ratios travel.
import os from 'node:os'
import type pg from 'pg'
import { pgBin } from '../../packages/local-stack/src/binaries.ts'
import { run } from '../../packages/local-stack/src/process.ts'

export interface Machine {
  cores: number
  cpu_model: string
  memory_gib: number
  os: string
  node: string
  postgres: string
  pgbench: string
  settings: Record<string, string>
  load_at_start: number[]
}

export async function describeMachine(db: pg.Client): Promise<Machine> {
  const version = await db.query<{ version: string }>('select version()')
  const names = ['fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'wal_level', 'max_wal_size', 'max_connections']
  const settings = await db.query<{ name: string; setting: string; unit: string | null }>(
    `select name, current_setting(name) as setting, unit from pg_settings where name = any($1) order by name`,
    [names],
  )
  const pgbench = await run(pgBin('pgbench'), ['--version'])
  return {
    cores: os.cpus().length,
    cpu_model: os.cpus()[0]?.model.trim() ?? 'unknown',
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: version.rows[0]!.version,
    pgbench: pgbench.stdout.trim(),
    settings: Object.fromEntries(settings.rows.map((r) => [r.name, r.setting])),
    load_at_start: os.loadavg().map((v) => Math.round(v * 100) / 100),
  }
}
