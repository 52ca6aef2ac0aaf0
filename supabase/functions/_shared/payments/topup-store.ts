import type postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { ClaimedTopup, TopupState, TopupStore } from './topup.ts'

export function topupStore(sql: postgres.Sql): TopupStore {
  const state = (rows: { state: TopupState }[]) => ({ status: rows[0]!.state.status, replayed: rows[0]!.state.replayed })
  return unavailableAs('database_unavailable', {
    claim: (limit) => sql<ClaimedTopup[]>`select * from public.claim_topup_requests(${limit}::integer)`.then((rows) => [...rows]),
    mark: (id, outcome, paymentIntentId, error) =>
      sql<{ state: TopupState }[]>`select public.mark_topup_request(${id}::uuid, ${outcome}, ${paymentIntentId}, ${error}) as state`.then(state),
    complete: (id, paymentIntentId) =>
      sql<{ state: TopupState }[]>`select public.complete_topup_request(${id}::uuid, ${paymentIntentId}, true) as state`.then(state),
  } satisfies TopupStore)
}
