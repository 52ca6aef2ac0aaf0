// MeterStore over the primary database (SUPABASE_DB_URL): the credit RPCs and meter tables.
import type postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { Hold, MeterStore } from './handler.ts'

export function meterStore(sql: postgres.Sql): MeterStore {
  const store: MeterStore = {
    async backend(operation) {
      const rows = await sql<{ url: string; timeout_ms: number }[]>`
        select url, timeout_ms from public.meter_backends where operation = ${operation} and enabled`
      return rows[0]
    },
    async reserve({ userId, orgId, operation, requestId, quantity, ttlSeconds }) {
      const [row] = await sql<{ hold: Hold }[]>`
        select public.reserve_credits(
          coalesce(${orgId}::uuid, (select o.id from public.orgs o where o.personal_user_id = ${userId}::uuid)),
          ${userId}::uuid, ${operation}, ${requestId}, ${quantity}::integer, ${ttlSeconds}::integer, '{}'::jsonb
        ) as hold`
      return row!.hold
    },
    async storedResponse(orgId, requestId) {
      const rows = await sql<{ status: number; content_type: string | null; body: string }[]>`
        select status, content_type, body from public.meter_responses where org_id = ${orgId} and request_id = ${requestId}`
      return rows[0]
    },
    async settle(orgId, requestId, outcome) {
      return await sql.begin(async (tx) => {
        const [row] = outcome.capture
          ? await tx<{ r: { charged: number; balance_after: number } }[]>`
              select public.capture_credits(${orgId}::uuid, ${requestId}, null, ${tx.json(outcome.result)}) as r`
          : await tx<{ r: { charged: number; balance_after: number } }[]>`
              select public.release_credits(${orgId}::uuid, ${requestId}, true, ${tx.json(outcome.result)}) as r`
        await tx`
          insert into public.meter_responses (org_id, request_id, status, content_type, body)
          values (${orgId}, ${requestId}, ${outcome.response.status}, ${outcome.response.content_type}, ${outcome.response.body})`
        return { charged: Number(row!.r.charged), balance_after: Number(row!.r.balance_after) }
      })
    },
    async available(orgId) {
      const [row] = await sql<{ available: string }[]>`select available from public.credit_balances where org_id = ${orgId}`
      return Number(row?.available ?? 0)
    },
  }
  return unavailableAs('database_unavailable', store)
}
