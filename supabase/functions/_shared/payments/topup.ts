// POST /topup-processor (service role): charges the saved payment method of each claimed auto
// top-up off-session. The database's outbox decides what to charge (claim_topup_requests leases
// due requests, reclaims lapsed leases and cancels requests that are no longer needed); this
// function only talks to Stripe and reports back.
//
// - Every request is handled on its own: one request's error (Stripe's, the database's) never
//   stops the others, and the answer counts every claimed request by its outcome.
// - The request id is Stripe's idempotency key, so a request reclaimed after a crash (or retried
//   after an outage) gets the first attempt's payment intent back instead of a second charge.
// - The webhook may settle a request before Stripe answers us: our mark then changes nothing
//   (the database answers replayed), which is fine.
// - A payment Stripe refused (declined card, detached payment method, a reused idempotency key)
//   is `failed`: retrying with the same key would get the same answer. Anything else (Stripe
//   unreachable, 5xx, rate limited) is retried after a backoff, within the request's attempts.
import type Stripe from 'stripe'
import { json, logEvent } from '../http.ts'

export interface ClaimedTopup {
  id: string
  org_id: string
  amount: number
  stripe_customer_id: string
  stripe_payment_method_id: string
}

/** A request's status after a mark or completion; replayed when it was already settled. */
export interface TopupState {
  status: string
  replayed: boolean
}

export type TopupOutcome = 'submitted' | 'failed' | 'retry'

export interface TopupStore {
  claim(limit: number): Promise<ClaimedTopup[]>
  mark(id: string, outcome: TopupOutcome, paymentIntentId: string | null, error: string | null): Promise<TopupState>
  complete(id: string, paymentIntentId: string): Promise<TopupState>
}

export interface TopupPricing {
  centsPerCredit: number
  currency: string
}

export interface TopupSummary {
  claimed: number
  succeeded: number
  submitted: number
  failed: number
  /** Back to pending for a later attempt (or, in a race, being handled by another processor). */
  retrying: number
  /** Closed by a concurrent claim while this processor was still on it. */
  cancelled: number
  /** Could not be recorded (the database failed): the lease lapses and a later run reclaims it. */
  errors: number
}

/** Requests claimed per run: the processor handles them concurrently. */
export const TOPUP_BATCH = 10
/** Per Stripe call; with the library's 2 retries a request stays far inside its 10-minute lease. */
export const STRIPE_TIMEOUT_MS = 20_000

const refusedByStripe = new Set(['StripeCardError', 'StripeInvalidRequestError', 'StripeIdempotencyError'])

/** One processor run: claim a batch, charge every request on its own, count the outcomes. */
export async function processTopups(stripe: Pick<Stripe, 'paymentIntents'>, store: TopupStore, pricing: TopupPricing): Promise<TopupSummary> {
  async function charge(topup: ClaimedTopup): Promise<string> {
    let intent: Stripe.PaymentIntent
    try {
      intent = await stripe.paymentIntents.create(
        {
          amount: Number(topup.amount) * pricing.centsPerCredit,
          currency: pricing.currency,
          customer: topup.stripe_customer_id,
          payment_method: topup.stripe_payment_method_id,
          off_session: true,
          confirm: true,
          metadata: { topup_request_id: topup.id, org_id: topup.org_id, credits: String(topup.amount) },
        },
        { idempotencyKey: `tollgate-topup-${topup.id}`, timeout: STRIPE_TIMEOUT_MS },
      )
    } catch (error) {
      const message = (error as Error)?.message || String(error)
      const refused = refusedByStripe.has((error as { type?: string })?.type ?? '')
      logEvent(refused ? 'error' : 'warn', refused ? 'topup_payment_failed' : 'topup_payment_retry', { topup_request_id: topup.id, org_id: topup.org_id, message })
      return (await store.mark(topup.id, refused ? 'failed' : 'retry', null, message)).status
    }
    const marked = await store.mark(topup.id, 'submitted', intent.id, null)
    if (intent.status !== 'succeeded' || marked.status === 'succeeded') return marked.status
    return (await store.complete(topup.id, intent.id)).status
  }

  const claimed = await store.claim(TOPUP_BATCH)
  const summary: TopupSummary = { claimed: claimed.length, succeeded: 0, submitted: 0, failed: 0, retrying: 0, cancelled: 0, errors: 0 }
  const outcomes = await Promise.allSettled(claimed.map(charge))
  outcomes.forEach((outcome, i) => {
    if (outcome.status === 'rejected') {
      const message = (outcome.reason as Error)?.message ?? String(outcome.reason)
      logEvent('error', 'topup_request_error', { topup_request_id: claimed[i]!.id, org_id: claimed[i]!.org_id, message })
      summary.errors++
      return
    }
    switch (outcome.value) {
      case 'succeeded':
      case 'submitted':
      case 'failed':
      case 'cancelled':
        summary[outcome.value]++
        break
      default: // pending (retry) or processing (reclaimed by another processor meanwhile)
        summary.retrying++
    }
  })
  return summary
}

export function createTopupProcessor(stripe: Pick<Stripe, 'paymentIntents'>, store: TopupStore, pricing: TopupPricing) {
  return async (): Promise<Response> => json(200, await processTopups(stripe, store, pricing))
}

export function topupPricingFromEnv(): TopupPricing {
  const centsPerCredit = Number(Deno.env.get('TOLLGATE_TOPUP_CENTS_PER_CREDIT') ?? '1')
  if (!Number.isInteger(centsPerCredit) || centsPerCredit < 1) throw new Error('TOLLGATE_TOPUP_CENTS_PER_CREDIT must be a positive integer')
  return { centsPerCredit, currency: Deno.env.get('TOLLGATE_TOPUP_CURRENCY') ?? 'usd' }
}
