import pg from 'pg'
import { StackError } from './log.ts'
import { waitFor } from './process.ts'

export const publicationName = 'plugin_read'
export const subscriptionName = 'plugin_read_sub'

/**
 * The two kinds of read replica the plugin path runs on. `logical`: a subscriber of publication
 * plugin_read (tables only, the published columns), as a regional replica one runs oneself.
 * `physical`: a hot standby streaming the primary's WAL (every table, view, function and role,
 * read-only), as Supabase Read Replicas are.
 */
export type ReplicaKind = 'logical' | 'physical'
export const replicaKinds: readonly ReplicaKind[] = ['logical', 'physical']

/** TOLLGATE_REPLICA_KIND: logical (default) or physical. */
export function replicaKindFrom(value: string | undefined): ReplicaKind {
  if (value === undefined || value === '') return 'logical'
  if ((replicaKinds as readonly string[]).includes(value)) return value as ReplicaKind
  throw new StackError(`TOLLGATE_REPLICA_KIND must be logical or physical, not ${JSON.stringify(value)}`)
}

/** The physical standby's slot on the primary, and the name it streams under (pg_stat_replication). */
export const standbySlotName = 'tollgate_standby'
export const standbyApplicationName = 'tollgate_standby'

/**
 * The replication slot each kind of replica holds on the primary: the subscription's logical
 * slot (named after it) or the standby's physical one. A slot nobody consumes keeps WAL forever.
 */
export const replicaSlots: Record<ReplicaKind, string> = { logical: subscriptionName, physical: standbySlotName }

/**
 * Drops our replicas' slots on the primary that no replica is connected to: run before a new
 * replica is made (the one it replaces is gone, or of the other kind), so no slot is left behind
 * holding WAL for a replica that no longer exists.
 */
export async function dropStaleReplicaSlots(primaryUrl: string): Promise<string[]> {
  const primary = new pg.Client({ connectionString: primaryUrl })
  await primary.connect()
  try {
    const dropped: string[] = []
    for (const slot of Object.values(replicaSlots)) {
      // A replica that was just stopped may still have its walsender for a moment.
      await waitFor(
        `slot ${slot} to be released`,
        async () => (await primary.query('select 1 from pg_replication_slots where slot_name = $1 and active', [slot])).rowCount === 0,
        10_000,
        'is another replica still streaming from this primary?',
      )
      const { rowCount } = await primary.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', [slot])
      if (rowCount) dropped.push(slot)
    }
    return dropped
  } finally {
    await primary.end()
  }
}

/**
 * libpq conninfo of the primary for a physical standby (and its base backup), as `postgres`:
 * hosted Supabase gives it REPLICATION, which is all streaming replication needs.
 */
export function standbyConnInfo(primaryPort: number, password: string): string {
  return `host=127.0.0.1 port=${primaryPort} user=postgres password=${password} dbname=postgres application_name=${standbyApplicationName}`
}

/**
 * Waits until the standby streams from the primary and has replayed everything the primary had
 * written when we asked (the migrations just pushed included).
 */
export async function waitForStandby(primaryUrl: string, standbySuperuserUrl: string): Promise<void> {
  const primary = new pg.Client({ connectionString: primaryUrl })
  const standby = new pg.Client({ connectionString: standbySuperuserUrl })
  await primary.connect()
  await standby.connect()
  try {
    const { rows } = await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')
    await waitFor(
      'the standby to stream and replay the primary\'s WAL',
      async () =>
        (await standby.query(
          `select 1 from pg_stat_wal_receiver where status = 'streaming'
            and pg_last_wal_replay_lsn() >= $1::pg_lsn`,
          [rows[0]!.lsn],
        )).rowCount === 1,
      60_000,
      'see the replica log',
    )
  } finally {
    await primary.end()
    await standby.end()
  }
}

interface PublishedTable {
  schema: string
  table: string
  columns: Array<{ name: string; type: string; builtin: boolean }>
  key: string[]
}

/**
 * Makes the replica mirror publication `plugin_read`: creates each published table with only
 * its published columns (no defaults, constraints beyond the key, triggers, views or functions
 * — a read replica has tables only), adds columns published since, then subscribes or refreshes.
 * Safe to run after every migration push.
 */
export async function syncReplica(primaryUrl: string, replicaUrl: string, primaryConnInfo: string): Promise<void> {
  const primary = new pg.Client({ connectionString: primaryUrl })
  const replica = new pg.Client({ connectionString: replicaUrl })
  await primary.connect()
  await replica.connect()
  try {
    const tables = await publishedTables(primary)
    if (tables.length === 0) {
      throw new StackError(`publication ${publicationName} is missing or empty on the primary: did the migrations apply?`)
    }
    for (const t of tables) {
      const foreign = t.columns.filter((c) => !c.builtin)
      if (foreign.length > 0) {
        throw new StackError(`replica data contract: ${t.schema}.${t.table} publishes columns of non-builtin types (${foreign.map((c) => c.name).join(', ')}); the replica has no types of ours`)
      }
      const ident = (name: string) => pg.escapeIdentifier(name)
      const qualified = `${ident(t.schema)}.${ident(t.table)}`
      await replica.query(`create schema if not exists ${ident(t.schema)}`)
      await replica.query(
        `create table if not exists ${qualified} (${[
          ...t.columns.map((c) => `${ident(c.name)} ${c.type}`),
          `primary key (${t.key.map(ident).join(', ')})`,
        ].join(', ')})`,
      )
      for (const c of t.columns) {
        await replica.query(`alter table ${qualified} add column if not exists ${ident(c.name)} ${c.type}`)
      }
    }
    const { rowCount } = await replica.query('select 1 from pg_subscription where subname = $1', [subscriptionName])
    if (rowCount === 0) {
      await replica.query(
        `create subscription ${subscriptionName} connection ${pg.escapeLiteral(primaryConnInfo)} publication ${publicationName}`,
      )
    } else {
      // The primary may be on another port than last time (a named stack starts on free ports).
      await replica.query(`alter subscription ${subscriptionName} connection ${pg.escapeLiteral(primaryConnInfo)}`)
      await replica.query(`alter subscription ${subscriptionName} refresh publication`)
    }
    await waitFor(
      'initial replica sync',
      async () => (await replica.query(`select 1 from pg_subscription_rel where srsubstate not in ('r', 's')`)).rowCount === 0,
      60_000,
      'see the replica log',
    )
  } finally {
    await primary.end()
    await replica.end()
  }
}

async function publishedTables(primary: pg.Client): Promise<PublishedTable[]> {
  const { rows } = await primary.query<{ schema: string; table: string; columns: PublishedTable['columns']; key: string[] }>(
    `select pt.schemaname as schema, pt.tablename as table,
            (select json_agg(json_build_object(
                      'name', a.attname,
                      'type', format_type(a.atttypid, a.atttypmod),
                      'builtin', a.atttypid < 16384) order by a.attnum)
               from pg_attribute a
              where a.attrelid = c.oid and a.attname = any (pt.attnames)) as columns,
            (select array_agg(a.attname::text order by a.attnum)
               from pg_index i
               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
              where i.indrelid = c.oid and i.indisprimary) as key
       from pg_publication_tables pt
       join pg_namespace n on n.nspname = pt.schemaname
       join pg_class c on c.relnamespace = n.oid and c.relname = pt.tablename
      where pt.pubname = $1
      order by 1, 2`,
    [publicationName],
  )
  for (const row of rows) {
    if (!row.key || row.key.some((k) => !row.columns.some((c) => c.name === k))) {
      throw new StackError(`replica data contract: ${row.schema}.${row.table} must publish its primary key columns`)
    }
  }
  return rows
}
