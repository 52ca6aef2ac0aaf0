import pg from 'pg'
import { StackError } from './log.ts'
import { waitFor } from './process.ts'

export const publicationName = 'plugin_read'
export const subscriptionName = 'plugin_read_sub'

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
