// PaymentsStore over the primary database: the grant and top-up RPCs.
import type postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { PaymentsStore } from './webhook.ts'

export function paymentsStore(sql: postgres.Sql): PaymentsStore {
  return unavailableAs('database_unavailable', {
    grant: (orgId, credits, sessionId, pending, metadata) =>
      sql`select public.grant_credits(${orgId}::uuid, ${credits}::bigint, 'purchase', ${sessionId}, null, ${sql.json(metadata as postgres.JSONValue)}, 100, ${pending})`,
    activate: (orgId, sessionId) => sql`select public.activate_credit_grant(${orgId}::uuid, 'purchase', ${sessionId})`,
    void: (orgId, sessionId) => sql`select public.void_credit_grant(${orgId}::uuid, 'purchase', ${sessionId})`,
    completeTopup: (requestId, paymentIntentId, succeeded, error) =>
      sql`select public.complete_topup_request(${requestId}::uuid, ${paymentIntentId}, ${succeeded}, ${error ?? null})`,
  } satisfies PaymentsStore)
}
