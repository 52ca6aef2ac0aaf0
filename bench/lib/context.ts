import os from 'node:os'
import type pg from 'pg'
import type { RunningStack } from '@tollgate/local-stack'
import type { Prepared } from '../prepare.ts'
import { log } from './log.ts'
import type { PgTarget } from './pgbench.ts'
import type { Row, ScenarioResult } from './result.ts'
import type { Measurement } from './stats.ts'

export interface Context {
  stack: RunningStack
  /** `postgres` connection to the primary (as a migration or the SQL editor has it), for arranging data and reading outcomes. */
  db: pg.Client
  /** Superuser (`supabase_admin`) connection to the primary: only for CHECKPOINT, which `postgres` may not run. */
  admin: pg.Client
  replica: pg.Client
  primary: PgTarget
  prepared: Prepared
  /** Results of earlier scenarios (scenario 7 compares with 1 and 2). */
  results: ScenarioResult[]
}

export interface ScenarioOutput {
  rows: Row[]
  measurements: Measurement[]
  details?: Record<string, unknown>
}

export async function runScenario(id: string, title: string, work: () => Promise<ScenarioOutput>): Promise<ScenarioResult> {
  log(`scenario ${id}: ${title}`)
  const started = performance.now()
  const load_before = os.loadavg().map((v) => Math.round(v * 100) / 100)
  const output = await work()
  const seconds = Math.round(performance.now() - started) / 1000
  log(`scenario ${id} done in ${seconds} s`)
  return { id, title, ...output, seconds, load_before, load_after: os.loadavg().map((v) => Math.round(v * 100) / 100) }
}

/**
 * CHECKPOINT before a timed block, so a checkpoint caused by set-up writes does not land in it.
 * Needs the superuser connection (`ctx.admin`).
 */
export async function settle(db: pg.Client): Promise<void> {
  await db.query('checkpoint')
}
