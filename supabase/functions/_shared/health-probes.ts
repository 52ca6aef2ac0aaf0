import postgres from 'postgres'
import { replicaSubscription, requireEnv } from './env.ts'
import type { HealthProbes } from './health.ts'

/**
 * Probes over real connections: SUPABASE_DB_URL (primary) and TOLLGATE_REPLICA_DB_URL. Either
 * kind of read replica: a logical subscriber (its subscription's apply worker) or a physical
 * standby (its WAL receiver, found by `pg_is_in_recovery()`).
 */
export function databaseHealthProbes(): HealthProbes {
  const options = { max: 1, idle_timeout: 30, connect_timeout: 3, prepare: false, onnotice: () => {} }
  const primary = postgres(requireEnv('SUPABASE_DB_URL'), options)
  const replica = postgres(requireEnv('TOLLGATE_REPLICA_DB_URL'), options)
  const subscription = replicaSubscription()
  return {
    async primary() {
      // The subscription's walsender, else a physical standby's (a walsender on a physical slot).
      const rows = await primary<{ lag_bytes: string; replay_lag_ms: string | null }[]>`
        select pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint as lag_bytes,
               (extract(epoch from r.replay_lag) * 1000)::bigint as replay_lag_ms
        from pg_stat_replication r
        left join pg_replication_slots s on s.active_pid = r.pid
        where r.application_name = ${subscription} or s.slot_type = 'physical'
        order by r.application_name = ${subscription} desc
        limit 1`
      const row = rows[0]
      return {
        replication: row ? { lag_bytes: Number(row.lag_bytes), replay_lag_ms: row.replay_lag_ms === null ? null : Number(row.replay_lag_ms) } : null,
      }
    },
    async replica() {
      const rows = await replica<{ running: boolean | null; age_ms: string | null }[]>`
        select case when pg_is_in_recovery()
                    then (select w.status = 'streaming' from pg_stat_wal_receiver w)
                    else (select s.pid is not null from pg_stat_subscription s where s.subname = ${subscription} and s.relid is null)
               end as running,
               case when pg_is_in_recovery()
                    then (select (extract(epoch from now() - w.last_msg_receipt_time) * 1000)::bigint from pg_stat_wal_receiver w)
                    else (select (extract(epoch from now() - s.last_msg_receipt_time) * 1000)::bigint
                          from pg_stat_subscription s where s.subname = ${subscription} and s.relid is null)
               end as age_ms`
      const row = rows[0]
      return { subscribed: row?.running ?? false, last_message_age_ms: row?.age_ms == null ? null : Number(row.age_ms) }
    },
  }
}
