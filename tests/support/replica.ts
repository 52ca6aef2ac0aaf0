import pg from 'pg'
import { afterAll } from 'vitest'
import { replicaDb } from './db.ts'
import { env } from './env.ts'

// The two kinds of read replica the plugin path must be right on: a logical subscriber of
// publication plugin_read (tables only, the published columns) and a physical hot standby
// (a read-only copy of the whole primary, as a Supabase Read Replica is).

export type ReplicaKind = 'logical' | 'physical'

/**
 * The replica's superuser, for stalling replication on purpose: a logical subscriber's own
 * `postgres`, a physical standby's `supabase_admin` (the primary's roles). Stacks the suite did
 * not start may leave it out; then the replica's URL is tried (a subscriber's owner may).
 */
const replicaAdminDb = new pg.Pool({ connectionString: process.env.TOLLGATE_REPLICA_SUPERUSER_DB_URL || env.TOLLGATE_REPLICA_DB_URL, max: 1 })

afterAll(async () => {
  await replicaAdminDb.end()
})

let detected: Promise<ReplicaKind> | undefined

/**
 * Which kind TOLLGATE_REPLICA_DB_URL is, asked of the replica itself (a standby is in recovery),
 * and checked against TOLLGATE_REPLICA_KIND when the stack declares it.
 */
export function replicaKind(): Promise<ReplicaKind> {
  detected ??= (async () => {
    const { rows } = await replicaDb.query<{ standby: boolean }>('select pg_is_in_recovery() as standby')
    const kind: ReplicaKind = rows[0]!.standby ? 'physical' : 'logical'
    const declared = process.env.TOLLGATE_REPLICA_KIND
    if (declared && declared !== kind) {
      throw new Error(`TOLLGATE_REPLICA_KIND says ${declared}, but the replica at TOLLGATE_REPLICA_DB_URL is ${kind}`)
    }
    return kind
  })()
  return detected
}

/**
 * Stops the replica taking in the primary's changes until the returned function resumes it:
 * a logical subscriber's subscription is disabled (nothing is applied); a physical standby's
 * WAL replay is paused (WAL still arrives, nothing of it becomes visible).
 */
export async function stallReplica(): Promise<() => Promise<void>> {
  if ((await replicaKind()) === 'logical') {
    const subscription = pg.escapeIdentifier(env.TOLLGATE_REPLICA_SUBSCRIPTION)
    await replicaAdminDb.query(`alter subscription ${subscription} disable`)
    return async () => {
      await replicaAdminDb.query(`alter subscription ${subscription} enable`)
    }
  }
  await replicaAdminDb.query('select pg_wal_replay_pause()')
  // Pausing takes effect at the next record replayed; wait until the standby says so.
  for (let i = 0; ; i++) {
    const { rows } = await replicaAdminDb.query<{ state: string }>('select pg_get_wal_replay_pause_state() as state')
    if (rows[0]!.state === 'paused') break
    if (i > 200) throw new Error(`WAL replay did not pause: ${rows[0]!.state}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return async () => {
    await replicaAdminDb.query('select pg_wal_replay_resume()')
  }
}
