import pg from 'pg'

/**
 * What hosted Supabase gives `postgres` (the role migrations, the seed and the tests connect as):
 * not a superuser (`supabase_admin` is, and owns the cluster), CREATEDB, CREATEROLE, REPLICATION,
 * BYPASSRLS, the API roles and three predefined roles. Read from the catalogs over `db`.
 */
export async function postgresRole(db: pg.Client | pg.Pool): Promise<{
  current_user: string
  superuser: boolean
  createdb: boolean
  createrole: boolean
  replication: boolean
  bypassrls: boolean
  member_of: string[]
  cluster_superuser: string
}> {
  const { rows } = await db.query(
    `select current_user::text as current_user, r.rolsuper as superuser, r.rolcreatedb as createdb, r.rolcreaterole as createrole,
            r.rolreplication as replication, r.rolbypassrls as bypassrls,
            array(select g.rolname::text from pg_catalog.pg_auth_members m join pg_catalog.pg_roles g on g.oid = m.roleid
                   where m.member = r.oid order by 1) as member_of,
            (select rolname::text from pg_catalog.pg_roles where oid = 10) as cluster_superuser
       from pg_catalog.pg_roles r where r.rolname = 'postgres'`,
  )
  return rows[0]
}

export const hostedPostgresRole = {
  current_user: 'postgres',
  superuser: false,
  createdb: true,
  createrole: true,
  replication: true,
  bypassrls: true,
  member_of: ['anon', 'authenticated', 'authenticator', 'pg_monitor', 'pg_read_all_data', 'pg_signal_backend', 'service_role'],
  cluster_superuser: 'supabase_admin',
}

/** The SQLSTATE `sql` fails with inside a transaction that is rolled back, or null when it succeeds. */
export async function sqlstateOf(db: pg.Pool | pg.Client, sql: string): Promise<string | null> {
  const pooled = db instanceof pg.Pool ? await db.connect() : undefined
  const client = pooled ?? (db as pg.Client)
  try {
    await client.query('begin')
    await client.query(sql)
    return null
  } catch (error) {
    return (error as { code?: string }).code ?? 'unknown'
  } finally {
    await client.query('rollback').catch(() => {})
    pooled?.release()
  }
}
