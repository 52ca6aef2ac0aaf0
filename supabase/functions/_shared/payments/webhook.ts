// POST /stripe-webhook: verified with the official library. Every handled event goes to an
// order-independent entry point (the events of one checkout session or payment intent converge
// whatever their order and number of deliveries). An event that cannot be applied is recorded
// in payment_exceptions and logged as an error; Stripe gets 200 only once that record (or the
// event's effect) has committed, and 5xx otherwise, so it retries.
import { readCapped } from '../body.ts'
import type Stripe from 'stripe'
import { HttpError, json, logEvent } from '../http.ts'
import { fromRpcError } from '../pg-errors.ts'
import { type ChargeInput, type CheckoutInput, classify, type ExceptionInput } from './events.ts'

/** What an entry point answers: `unapplied` when it recorded the event as an exception instead. */
export interface EventOutcome {
  outcome?: string
  reason?: string
  exception?: string
  exception_id?: number
  [key: string]: unknown
}

export interface PaymentsStore {
  applyCheckout(input: CheckoutInput): Promise<EventOutcome>
  applyCharge(input: ChargeInput): Promise<EventOutcome>
  completeTopup(requestId: string, paymentIntentId: string, succeeded: boolean, error?: string): Promise<unknown>
  recordException(input: ExceptionInput): Promise<EventOutcome>
}

type About = Omit<ExceptionInput, 'reason' | 'detail'>

interface Verifier {
  constructEventAsync(payload: string, header: string, secret: string, tolerance?: number, provider?: Stripe.CryptoProvider): Promise<Stripe.Event>
}

/** Largest event body read; Stripe's events are far smaller. */
export const maxEventBytes = 1024 * 1024

export function createStripeWebhookHandler(
  webhooks: Verifier,
  secret: string,
  store: PaymentsStore,
  provider?: Stripe.CryptoProvider,
) {
  return async (req: Request): Promise<Response> => {
    // Capped before the signature is checked: anyone can post here.
    const bytes = await readCapped(req.body, maxEventBytes, req.headers.get('content-length'))
    if (!bytes) throw new HttpError(413, 'payload_too_large', `a Stripe event is at most ${maxEventBytes} bytes`, { limit_bytes: maxEventBytes })
    const payload = new TextDecoder().decode(bytes)
    let event: Stripe.Event
    try {
      event = await webhooks.constructEventAsync(payload, req.headers.get('stripe-signature') ?? '', secret, undefined, provider)
    } catch {
      throw new HttpError(400, 'invalid_signature', 'the Stripe-Signature header does not match this payload')
    }

    /** Records the event as an exception, once per event id; throws (→ 5xx, Stripe retries) if it cannot. */
    const record = async (exception: ExceptionInput): Promise<EventOutcome> => {
      const recorded = await store.recordException(exception)
      return { outcome: 'unapplied', reason: exception.reason, exception_id: recorded.exception_id }
    }
    /**
     * Runs an entry point. A documented refusal (PT4xx, 22023) will not change on a retry: it is
     * recorded as an exception. Anything else (an outage, a bug) propagates: 5xx, Stripe retries.
     */
    const attempt = async (about: About, call: () => Promise<EventOutcome>): Promise<EventOutcome> => {
      try {
        return await call()
      } catch (error) {
        const refusal = fromRpcError(error)
        if (!refusal || refusal.status >= 500) throw error
        return await record({ ...about, reason: refusal.key, detail: refusal.extra })
      }
    }
    /** 200 once the outcome has committed; an exception is an alert (one structured error line). */
    const answer = (outcome: EventOutcome, about: About): Response => {
      const exception = outcome.outcome === 'unapplied' ? outcome.reason ?? 'unapplied' : outcome.exception
      if (exception) {
        logEvent('error', 'payment_exception', {
          event_id: event.id,
          type: event.type,
          object_id: about.objectId,
          org_id: about.orgId,
          reason: exception,
          applied: outcome.outcome !== 'unapplied',
          exception_id: outcome.exception_id,
        })
        return json(200, outcome.outcome === 'unapplied' ? { received: true, unapplied: exception } : { received: true, exception })
      }
      logEvent('info', 'stripe_event_handled', { event_id: event.id, type: event.type, outcome: outcome.outcome })
      return json(200, { received: true })
    }

    const action = classify(event)
    switch (action.kind) {
      case 'ignore':
        if (!action.quiet) logEvent('warn', 'stripe_event_ignored', { event_id: event.id, type: event.type, reason: action.reason })
        return json(200, { received: true, ignored: action.reason })
      case 'unusable': {
        const { record: exception } = action
        return answer(await record(exception), exception)
      }
      case 'checkout': {
        const { input } = action
        const about = { eventId: input.eventId, eventType: input.eventType, objectId: input.sessionId, orgId: input.orgId }
        return answer(await attempt(about, () => store.applyCheckout(input)), about)
      }
      case 'charge': {
        const { input } = action
        const about = { eventId: input.eventId, eventType: input.eventType, objectId: input.paymentIntentId, orgId: null }
        return answer(await attempt(about, () => store.applyCharge(input)), about)
      }
      case 'topup': {
        const about = { eventId: event.id, eventType: event.type, objectId: action.paymentIntentId, orgId: null }
        const completed = await attempt(about, async () => {
          await store.completeTopup(action.requestId, action.paymentIntentId, action.succeeded, action.error)
          return { outcome: 'completed' }
        })
        const charge = action.charge
        if (completed.outcome === 'unapplied' || !charge) return answer(completed, about)
        // Links the top-up's grant to its payment, so refunds and disputes find it.
        return answer(await attempt(about, () => store.applyCharge(charge)), about)
      }
    }
  }
}
