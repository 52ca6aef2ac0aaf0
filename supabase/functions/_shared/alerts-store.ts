import type postgres from 'postgres'
import type { AlertStore, DueAlert } from './alerts.ts'
import { unavailableAs } from './db-errors.ts'

export function alertStore(sql: postgres.Sql): AlertStore {
  return unavailableAs('database_unavailable', {
    claim: (limit) => sql<DueAlert[]>`select * from public.claim_credit_alerts(${limit}::integer)`.then((rows) => [...rows]),
    record: (id, delivered, statusCode, error) =>
      sql<{ status: string }[]>`select public.record_credit_alert_delivery(${id}::uuid, ${delivered}, ${statusCode}, ${error}) as status`.then(
        (rows) => rows[0]!.status,
      ),
  } satisfies AlertStore)
}
