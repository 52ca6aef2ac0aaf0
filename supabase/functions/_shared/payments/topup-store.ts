import type postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { ClaimedTopup, TopupStore } from './topup.ts'

export function topupStore(sql: postgres.Sql): TopupStore {
  return unavailableAs('database_unavailable', {
    claim: (limit) => sql<ClaimedTopup[]>`select * from public.claim_topup_requests(${limit}::integer)`.then((rows) => [...rows]),
    mark: (id, status, paymentIntentId, error) => sql`select public.mark_topup_request(${id}::uuid, ${status}, ${paymentIntentId}, ${error})`,
    complete: (id, paymentIntentId) => sql`select public.complete_topup_request(${id}::uuid, ${paymentIntentId}, true)`,
  } satisfies TopupStore)
}
