// Where a charge's cost goes: a fixed number of sequential transactions at 1 client, with
// track_functions=all, reading WAL bytes, rows written (and whether updates were HOT) and
// per-function self time from Postgres's own statistics. Evidence for the report's notes.
import type pg from 'pg'
import { pgbench, type PgTarget } from './pgbench.ts'
import { round } from './stats.ts'

export interface TableWrites {
  inserted: number
  updated: number
  hot_updated: number
}

export interface ChargeProfile {
  variant: string
  transactions: number
  tps_with_tracking: number
  wal_bytes_per_tx: number
  /** Per transaction, by table. */
  tables: Record<string, TableWrites>
  /** Self time per call in µs (track_functions=all adds its own overhead). */
  functions: Array<{ name: string; calls_per_tx: number; self_us: number; total_us: number }>
}

interface Snapshot {
  lsn: string
  tables: Map<string, TableWrites>
  functions: Map<string, { calls: number; self_ms: number; total_ms: number }>
}

async function snapshot(db: pg.Client, schemas: string[]): Promise<Snapshot> {
  await db.query('select pg_stat_clear_snapshot()')
  const lsn = await db.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn')
  const tables = await db.query<{ name: string; ins: string; upd: string; hot: string }>(
    `select schemaname || '.' || relname as name, n_tup_ins as ins, n_tup_upd as upd, n_tup_hot_upd as hot
     from pg_stat_user_tables where schemaname = any($1)`,
    [schemas],
  )
  const functions = await db.query<{ name: string; calls: string; self: number; total: number }>(
    `select schemaname || '.' || funcname as name, calls, self_time as self, total_time as total from pg_stat_user_functions`,
  )
  return {
    lsn: lsn.rows[0]!.lsn,
    tables: new Map(tables.rows.map((r) => [r.name, { inserted: Number(r.ins), updated: Number(r.upd), hot_updated: Number(r.hot) }])),
    functions: new Map(functions.rows.map((r) => [r.name, { calls: Number(r.calls), self_ms: r.self, total_ms: r.total }])),
  }
}

export async function profileCharges(
  db: pg.Client,
  target: PgTarget,
  variant: string,
  script: string,
  transactions: number,
  /** A table that gains exactly one row per transaction: tells when the backend's stats are in. */
  marker: string,
): Promise<ChargeProfile> {
  const schemas = ['public', 'private', 'bench', 'auth']
  const before = await snapshot(db, schemas)
  const sample = await pgbench(target, { name: `profile_${variant}`, script, clients: 1, seconds: 0, transactions, pgoptions: '-c track_functions=all' })
  // A backend flushes its statistics when it exits, just after pgbench returns.
  let after = await snapshot(db, schemas)
  for (let i = 0; i < 50 && (after.tables.get(marker)?.inserted ?? 0) - (before.tables.get(marker)?.inserted ?? 0) < transactions; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    after = await snapshot(db, schemas)
  }
  const wal = await db.query<{ bytes: string }>('select pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn) as bytes', [after.lsn, before.lsn])
  const tables: Record<string, TableWrites> = {}
  for (const [name, a] of after.tables) {
    const b = before.tables.get(name) ?? { inserted: 0, updated: 0, hot_updated: 0 }
    const d = { inserted: a.inserted - b.inserted, updated: a.updated - b.updated, hot_updated: a.hot_updated - b.hot_updated }
    if (d.inserted || d.updated) {
      tables[name] = { inserted: round(d.inserted / transactions, 2), updated: round(d.updated / transactions, 2), hot_updated: round(d.hot_updated / transactions, 2) }
    }
  }
  const functions: ChargeProfile['functions'] = []
  for (const [name, a] of after.functions) {
    const b = before.functions.get(name) ?? { calls: 0, self_ms: 0, total_ms: 0 }
    const calls = a.calls - b.calls
    if (calls <= 0) continue
    functions.push({
      name,
      calls_per_tx: round(calls / transactions, 2),
      self_us: round(((a.self_ms - b.self_ms) * 1000) / calls, 1),
      total_us: round(((a.total_ms - b.total_ms) * 1000) / calls, 1),
    })
  }
  functions.sort((x, y) => y.self_us * y.calls_per_tx - x.self_us * x.calls_per_tx)
  return {
    variant,
    transactions,
    tps_with_tracking: round(sample.count / sample.seconds, 1),
    wal_bytes_per_tx: Math.round(Number(wal.rows[0]!.bytes) / transactions),
    tables,
    functions,
  }
}

/** Rows written per transaction (inserted + updated), every table. */
export const rowsWritten = (p: ChargeProfile): number => round(Object.values(p.tables).reduce((sum, t) => sum + t.inserted + t.updated, 0), 2)

/** What one transaction writes, table by table: "credit_ledger 1 inserted, credit_balances 1 updated (100% HOT)". */
export function writesText(p: ChargeProfile): string {
  return Object.entries(p.tables)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, t]) => {
      const parts = [
        t.inserted ? `${t.inserted} inserted` : '',
        t.updated ? `${t.updated} updated (${Math.round((100 * t.hot_updated) / t.updated)}% HOT)` : '',
      ]
      return `${name.replace(/^public\./, '')} ${parts.filter(Boolean).join(' + ')}`
    })
    .join(', ')
}
