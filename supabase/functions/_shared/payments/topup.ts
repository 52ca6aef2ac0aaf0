// POST /topup-processor (service role): charges the saved payment method of each pending
// auto top-up off-session, with the request id as Stripe's idempotency key (a crash between
// Stripe and us cannot charge twice). The webhook (or this function, when Stripe answers
// `succeeded` at once) grants the credits.
import type Stripe from 'stripe'
import { json, logEvent } from '../http.ts'

export interface ClaimedTopup {
  id: string
  org_id: string
  amount: number
  stripe_customer_id: string
  stripe_payment_method_id: string
}

export interface TopupStore {
  claim(limit: number): Promise<ClaimedTopup[]>
  mark(id: string, status: 'submitted' | 'failed', paymentIntentId: string | null, error: string | null): Promise<unknown>
  complete(id: string, paymentIntentId: string): Promise<unknown>
}

export interface TopupPricing {
  centsPerCredit: number
  currency: string
}

export function createTopupProcessor(stripe: Pick<Stripe, 'paymentIntents'>, store: TopupStore, pricing: TopupPricing) {
  return async (): Promise<Response> => {
    const claimed = await store.claim(10)
    const summary = { claimed: claimed.length, succeeded: 0, submitted: 0, failed: 0 }
    for (const topup of claimed) {
      try {
        const intent = await stripe.paymentIntents.create(
          {
            amount: Number(topup.amount) * pricing.centsPerCredit,
            currency: pricing.currency,
            customer: topup.stripe_customer_id,
            payment_method: topup.stripe_payment_method_id,
            off_session: true,
            confirm: true,
            metadata: { topup_request_id: topup.id, org_id: topup.org_id, credits: String(topup.amount) },
          },
          { idempotencyKey: `tollgate-topup-${topup.id}` },
        )
        await store.mark(topup.id, 'submitted', intent.id, null)
        if (intent.status === 'succeeded') {
          await store.complete(topup.id, intent.id)
          summary.succeeded++
        } else {
          summary.submitted++
        }
      } catch (error) {
        const message = (error as Error)?.message ?? String(error)
        logEvent('error', 'topup_payment_failed', { topup_request_id: topup.id, org_id: topup.org_id, message })
        await store.mark(topup.id, 'failed', null, message)
        summary.failed++
      }
    }
    return json(200, summary)
  }
}

export function topupPricingFromEnv(): TopupPricing {
  const centsPerCredit = Number(Deno.env.get('TOLLGATE_TOPUP_CENTS_PER_CREDIT') ?? '1')
  if (!Number.isInteger(centsPerCredit) || centsPerCredit < 1) throw new Error('TOLLGATE_TOPUP_CENTS_PER_CREDIT must be a positive integer')
  return { centsPerCredit, currency: Deno.env.get('TOLLGATE_TOPUP_CURRENCY') ?? 'usd' }
}
