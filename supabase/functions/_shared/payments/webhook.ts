// POST /stripe-webhook: verified with the official library; every handled event is idempotent
// on Stripe's own ids (checkout session, payment intent), so duplicate deliveries change nothing.
import type Stripe from 'stripe'
import { HttpError, json, logEvent } from '../http.ts'
import { fromRpcError } from '../pg-errors.ts'

export interface PaymentsStore {
  grant(orgId: string, credits: number, sessionId: string, pending: boolean, metadata: Record<string, unknown>): Promise<unknown>
  activate(orgId: string, sessionId: string): Promise<unknown>
  void(orgId: string, sessionId: string): Promise<unknown>
  completeTopup(requestId: string, paymentIntentId: string, succeeded: boolean, error?: string): Promise<unknown>
}

interface Verifier {
  constructEventAsync(payload: string, header: string, secret: string, tolerance?: number, provider?: Stripe.CryptoProvider): Promise<Stripe.Event>
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The org and credit count an app puts on its checkout session (metadata.org_id, metadata.credits). */
function purchaseOf(session: Stripe.Checkout.Session): { orgId: string; credits: number } | undefined {
  const orgId = session.metadata?.org_id ?? session.client_reference_id ?? ''
  const credits = Number(session.metadata?.credits)
  if (!uuid.test(orgId) || !Number.isInteger(credits) || credits < 1) return undefined
  return { orgId, credits }
}

export function createStripeWebhookHandler(
  webhooks: Verifier,
  secret: string,
  store: PaymentsStore,
  provider?: Stripe.CryptoProvider,
) {
  return async (req: Request): Promise<Response> => {
    const payload = await req.text()
    let event: Stripe.Event
    try {
      event = await webhooks.constructEventAsync(payload, req.headers.get('stripe-signature') ?? '', secret, undefined, provider)
    } catch {
      throw new HttpError(400, 'invalid_signature', 'the Stripe-Signature header does not match this payload')
    }
    const ignore = (reason: string) => {
      logEvent('warn', 'stripe_event_ignored', { event_id: event.id, type: event.type, reason })
      return json(200, { received: true, ignored: reason })
    }
    try {
      switch (event.type) {
        case 'checkout.session.completed':
        case 'checkout.session.async_payment_succeeded':
        case 'checkout.session.async_payment_failed': {
          const session = event.data.object as Stripe.Checkout.Session
          const purchase = purchaseOf(session)
          if (!purchase) return ignore('checkout session without metadata.org_id and metadata.credits')
          if (event.type === 'checkout.session.completed') {
            // Card payments arrive paid; delayed methods (bank debits) arrive unpaid and are
            // granted pending, then activated or voided by the async_payment_* events.
            const paid = session.payment_status === 'paid' || session.payment_status === 'no_payment_required'
            await store.grant(purchase.orgId, purchase.credits, session.id, !paid, { stripe_event_id: event.id, checkout_session_id: session.id })
          } else if (event.type === 'checkout.session.async_payment_succeeded') {
            await store.activate(purchase.orgId, session.id)
          } else {
            await store.void(purchase.orgId, session.id)
          }
          break
        }
        case 'payment_intent.succeeded':
        case 'payment_intent.payment_failed': {
          const intent = event.data.object as Stripe.PaymentIntent
          const requestId = intent.metadata?.topup_request_id
          if (!requestId || !uuid.test(requestId)) return ignore('payment intent that is not an auto top-up')
          const succeeded = event.type === 'payment_intent.succeeded'
          await store.completeTopup(requestId, intent.id, succeeded, succeeded ? undefined : intent.last_payment_error?.message ?? 'payment failed')
          break
        }
        default:
          return json(200, { received: true, ignored: event.type })
      }
    } catch (error) {
      const known = fromRpcError(error)
      // A documented refusal (unknown org, conflicting amount...) will not change on a retry:
      // acknowledge it so Stripe stops retrying, and log it loudly.
      if (known && known.status < 500) {
        logEvent('error', 'stripe_event_rejected', { event_id: event.id, type: event.type, error: known.key, details: known.extra })
        return json(200, { received: true, rejected: known.key })
      }
      throw error
    }
    logEvent('info', 'stripe_event_handled', { event_id: event.id, type: event.type })
    return json(200, { received: true })
  }
}
