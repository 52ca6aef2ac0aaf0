// MeterStore over the primary database (SUPABASE_DB_URL): the gateway RPCs and meter tables.
import type postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { Hold, MeterStore, StoredResponse } from './handler.ts'

export function meterStore(sql: postgres.Sql): MeterStore {
  const store: MeterStore = {
    async backend(operation) {
      const rows = await sql<{ url: string; timeout_ms: number }[]>`
        select url, timeout_ms from public.meter_backends where operation = ${operation} and enabled`
      return rows[0]
    },
    async reserve({ userId, orgId, operation, requestId, quantity, ttlSeconds, fingerprint }) {
      const [row] = await sql<{ hold: Hold }[]>`
        select public.reserve_meter_request(
          ${orgId}::uuid, ${userId}::uuid, ${operation}, ${requestId}, ${quantity}::integer, ${ttlSeconds}::integer, ${fingerprint}::bytea
        ) as hold`
      return row!.hold
    },
    async storedResponse(orgId, requestId) {
      const rows = await sql<StoredResponse[]>`
        select status, content_type, body from public.meter_requests
        where org_id = ${orgId} and request_id = ${requestId} and status is not null`
      return rows[0]
    },
    async settle(orgId, requestId, { capture, result, response }) {
      const [row] = await sql<{ r: { charged: number; balance_after: number } }[]>`
        select public.settle_meter_request(
          ${orgId}::uuid, ${requestId}, ${capture}, ${sql.json(result)}, ${response.status}::integer, ${response.content_type}, ${response.body}::bytea
        ) as r`
      return { charged: Number(row!.r.charged), balance_after: Number(row!.r.balance_after) }
    },
    async available(userId, orgId) {
      const [row] = await sql<{ available: string }[]>`
        select b.available from public.credit_balances b
        where b.org_id = coalesce(${orgId}::uuid, (select o.id from public.orgs o where o.personal_user_id = ${userId}::uuid))`
      return Number(row?.available ?? 0)
    },
  }
  return unavailableAs('database_unavailable', store)
}
