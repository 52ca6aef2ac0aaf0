import postgres from 'postgres'
import { replicaSubscription, requireEnv } from './env.ts'
import type { HealthProbes } from './health.ts'

/** Probes over real connections: SUPABASE_DB_URL (primary) and TOLLGATE_REPLICA_DB_URL. */
export function databaseHealthProbes(): HealthProbes {
  const options = { max: 1, idle_timeout: 30, connect_timeout: 3, prepare: false, onnotice: () => {} }
  const primary = postgres(requireEnv('SUPABASE_DB_URL'), options)
  const replica = postgres(requireEnv('TOLLGATE_REPLICA_DB_URL'), options)
  const subscription = replicaSubscription()
  return {
    async primary() {
      const rows = await primary<{ lag_bytes: string; replay_lag_ms: string | null }[]>`
        select pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint as lag_bytes,
               (extract(epoch from replay_lag) * 1000)::bigint as replay_lag_ms
        from pg_stat_replication
        where application_name = ${subscription}`
      const row = rows[0]
      return {
        replication: row ? { lag_bytes: Number(row.lag_bytes), replay_lag_ms: row.replay_lag_ms === null ? null : Number(row.replay_lag_ms) } : null,
      }
    },
    async replica() {
      const rows = await replica<{ running: boolean; age_ms: string | null }[]>`
        select pid is not null as running,
               (extract(epoch from now() - last_msg_receipt_time) * 1000)::bigint as age_ms
        from pg_stat_subscription
        where subname = ${subscription} and relid is null`
      const row = rows[0]
      return { subscribed: row?.running ?? false, last_message_age_ms: row?.age_ms == null ? null : Number(row.age_ms) }
    },
  }
}
