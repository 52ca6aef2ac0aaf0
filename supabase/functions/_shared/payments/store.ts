// PaymentsStore over the primary database: the order-independent payment event RPCs, the
// exception record, and the top-up completion.
import type postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { EventOutcome, PaymentsStore } from './webhook.ts'

export function paymentsStore(sql: postgres.Sql): PaymentsStore {
  const one = (rows: { result: EventOutcome }[]) => rows[0]!.result
  return unavailableAs('database_unavailable', {
    applyCheckout: (i) =>
      sql<{ result: EventOutcome }[]>`
        select public.apply_checkout_event(${i.eventId}, ${i.eventType}, ${i.sessionId}, ${i.orgId}::uuid, ${String(i.credits)}::bigint,
          ${i.outcome}, ${i.paymentIntentId}, ${i.amount === null ? null : String(i.amount)}::bigint, ${i.currency}) as result`.then(one),
    applyCharge: (i) =>
      sql<{ result: EventOutcome }[]>`
        select public.apply_charge_event(${i.eventId}, ${i.eventType}, ${i.paymentIntentId},
          ${i.amount === null ? null : String(i.amount)}::bigint, ${i.amountRefunded === null ? null : String(i.amountRefunded)}::bigint,
          ${i.dispute?.id ?? null}, ${i.dispute?.status ?? null}, ${i.dispute ? String(i.dispute.amount) : null}::bigint, ${i.currency}) as result`.then(one),
    recordException: (i) =>
      sql<{ result: EventOutcome }[]>`
        select public.record_payment_exception(${i.eventId}, ${i.eventType}, ${i.objectId}, ${i.reason}, ${i.orgId}::uuid,
          ${sql.json(i.detail as postgres.JSONValue)}) as result`.then(one),
    completeTopup: (requestId, paymentIntentId, succeeded, error) =>
      sql`select public.complete_topup_request(${requestId}::uuid, ${paymentIntentId}, ${succeeded}, ${error ?? null})`,
  } satisfies PaymentsStore)
}
