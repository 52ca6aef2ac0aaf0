// What a verified Stripe event asks of us, decided without touching the database: apply a
// checkout session event, merge a refund or dispute, complete an auto top-up, record an event
// we cannot use, or ignore one that is not ours. Pure, so every rule is unit-tested.
import type Stripe from 'stripe'

/** The most credits one grant may carry (grant_credits' limit). */
export const MAX_CREDITS = 1_000_000_000_000

export type CheckoutOutcome = 'paid' | 'unpaid' | 'failed'

export interface CheckoutInput {
  eventId: string
  eventType: string
  sessionId: string
  orgId: string
  credits: number
  outcome: CheckoutOutcome
  paymentIntentId: string | null
  /** What the session charged, in the currency's minor unit; null when nothing was charged. */
  amount: number | null
  currency: string | null
}

export interface ChargeInput {
  eventId: string
  eventType: string
  paymentIntentId: string
  amount: number | null
  /** Cumulative: everything refunded on the charge so far. */
  amountRefunded: number | null
  dispute: { id: string; status: string; amount: number } | null
  currency: string | null
}

export interface ExceptionInput {
  eventId: string
  eventType: string
  objectId: string | null
  orgId: string | null
  reason: string
  detail: Record<string, unknown>
}

export type EventAction =
  | { kind: 'ignore'; reason: string; quiet?: boolean }
  | { kind: 'checkout'; input: CheckoutInput }
  | { kind: 'charge'; input: ChargeInput }
  | { kind: 'topup'; requestId: string; paymentIntentId: string; succeeded: boolean; error?: string; charge: ChargeInput | null }
  | { kind: 'unusable'; record: ExceptionInput }

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const positiveInteger = /^[1-9][0-9]{0,12}$/

/** An expandable Stripe field: the id whether it arrived as a string or as the object. */
function idOf(value: unknown): string | null {
  if (typeof value === 'string' && value.length > 0) return value
  if (value && typeof value === 'object' && typeof (value as { id?: unknown }).id === 'string') return (value as { id: string }).id
  return null
}

const count = (value: unknown): number | null => (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null)

function checkoutAction(event: Stripe.Event): EventAction {
  const session = event.data.object as Stripe.Checkout.Session
  const metadata = session.metadata ?? {}
  // A session is a credit purchase when it carries our metadata; any other checkout of the app
  // (a subscription, a physical product) is not ours to judge.
  if (!('org_id' in metadata) && !('credits' in metadata)) {
    return { kind: 'ignore', reason: 'checkout session without metadata.org_id or metadata.credits' }
  }
  const outcome: CheckoutOutcome = event.type === 'checkout.session.async_payment_failed'
    ? 'failed'
    : event.type === 'checkout.session.async_payment_succeeded' || session.payment_status === 'paid' || session.payment_status === 'no_payment_required'
    ? 'paid'
    : 'unpaid'
  const orgId = metadata.org_id ?? session.client_reference_id ?? ''
  const credits = metadata.credits ?? ''
  const problem = !uuid.test(orgId) ? 'invalid_org_id' : !positiveInteger.test(credits) || Number(credits) > MAX_CREDITS ? 'invalid_credits' : null
  if (problem) {
    // Nothing was or will be paid for a failed session: nothing to record.
    if (outcome === 'failed') return { kind: 'ignore', reason: `${problem} on a failed payment` }
    return {
      kind: 'unusable',
      record: {
        eventId: event.id,
        eventType: event.type,
        objectId: session.id,
        orgId: uuid.test(orgId) ? orgId : null,
        reason: problem,
        detail: { org_id: String(orgId).slice(0, 100), credits: String(credits).slice(0, 100), outcome, payment_intent_id: idOf(session.payment_intent) },
      },
    }
  }
  const amount = count(session.amount_total)
  return {
    kind: 'checkout',
    input: {
      eventId: event.id,
      eventType: event.type,
      sessionId: session.id,
      orgId,
      credits: Number(credits),
      outcome,
      paymentIntentId: idOf(session.payment_intent),
      amount: amount && amount > 0 ? amount : null,
      currency: session.currency ?? null,
    },
  }
}

function refundAction(event: Stripe.Event): EventAction {
  const charge = event.data.object as Stripe.Charge
  const paymentIntentId = idOf(charge.payment_intent)
  // Every credit payment (checkout or auto top-up) has a payment intent.
  if (!paymentIntentId) return { kind: 'ignore', reason: 'charge without a payment intent' }
  const amount = count(charge.amount)
  const amountRefunded = count(charge.amount_refunded)
  if (!amount || amountRefunded === null) {
    return {
      kind: 'unusable',
      record: { eventId: event.id, eventType: event.type, objectId: paymentIntentId, orgId: null, reason: 'invalid_charge', detail: { charge_id: charge.id } },
    }
  }
  return {
    kind: 'charge',
    input: { eventId: event.id, eventType: event.type, paymentIntentId, amount, amountRefunded, dispute: null, currency: charge.currency ?? null },
  }
}

function disputeAction(event: Stripe.Event): EventAction {
  const dispute = event.data.object as Stripe.Dispute
  const paymentIntentId = idOf(dispute.payment_intent)
  if (!paymentIntentId) return { kind: 'ignore', reason: 'dispute without a payment intent' }
  const amount = count(dispute.amount)
  if (amount === null || typeof dispute.status !== 'string' || !dispute.id) {
    return {
      kind: 'unusable',
      record: { eventId: event.id, eventType: event.type, objectId: paymentIntentId, orgId: null, reason: 'invalid_dispute', detail: { dispute_id: dispute.id ?? null } },
    }
  }
  return {
    kind: 'charge',
    input: {
      eventId: event.id,
      eventType: event.type,
      paymentIntentId,
      amount: null,
      amountRefunded: null,
      dispute: { id: dispute.id, status: dispute.status, amount },
      currency: dispute.currency ?? null,
    },
  }
}

function topupAction(event: Stripe.Event): EventAction {
  const intent = event.data.object as Stripe.PaymentIntent
  const requestId = intent.metadata?.topup_request_id
  if (!requestId || !uuid.test(requestId)) return { kind: 'ignore', reason: 'payment intent that is not an auto top-up' }
  const succeeded = event.type === 'payment_intent.succeeded'
  const amount = count(intent.amount_received) || count(intent.amount)
  return {
    kind: 'topup',
    requestId,
    paymentIntentId: intent.id,
    succeeded,
    ...(succeeded ? {} : { error: intent.last_payment_error?.message ?? 'payment failed' }),
    // A succeeded top-up's amount links its grant to refunds and disputes that may follow.
    charge: succeeded && amount
      ? { eventId: event.id, eventType: event.type, paymentIntentId: intent.id, amount, amountRefunded: null, dispute: null, currency: intent.currency ?? null }
      : null,
  }
}

/** What to do with a verified event. */
export function classify(event: Stripe.Event): EventAction {
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded':
    case 'checkout.session.async_payment_failed':
      return checkoutAction(event)
    case 'charge.refunded':
      return refundAction(event)
    case 'charge.dispute.created':
    case 'charge.dispute.updated':
    case 'charge.dispute.closed':
    case 'charge.dispute.funds_withdrawn':
    case 'charge.dispute.funds_reinstated':
      return disputeAction(event)
    case 'payment_intent.succeeded':
    case 'payment_intent.payment_failed':
      return topupAction(event)
    default:
      return { kind: 'ignore', reason: event.type, quiet: true }
  }
}
