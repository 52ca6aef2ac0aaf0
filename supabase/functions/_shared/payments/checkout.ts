// POST /credits-checkout (a signed-in owner or admin): a Stripe Checkout session that buys
// credits for one of the caller's orgs. The org comes from the body but counts only after the
// database says the caller is its owner or admin; the price per credit comes from the
// environment, never from the client. The session carries metadata org_id + credits, which is
// what the stripe-webhook function grants on payment.
import type Stripe from 'stripe'
import { readCapped } from '../body.ts'
import type { UserCaller } from '../entry.ts'
import { HttpError, json, logEvent } from '../http.ts'

export interface CheckoutSettings {
  /** Price of one credit in the currency's smallest unit (cents). */
  centsPerCredit: number
  currency: string
  minCredits: number
  maxCredits: number
  /** The usage page: Stripe sends the buyer back here (with ?checkout=success|cancelled). */
  returnUrl: string
}

export interface Membership {
  org_id: string
  role: 'owner' | 'admin' | 'member'
}

export interface CheckoutStore {
  /** The caller's membership of `orgId` (their personal org when null), or undefined. */
  membership(userId: string, orgId: string | null): Promise<Membership | undefined>
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const maxBodyBytes = 4096

async function readBody(req: Request): Promise<{ org_id?: unknown; credits?: unknown }> {
  const bytes = await readCapped(req.body, maxBodyBytes, req.headers.get('content-length'))
  if (!bytes) throw new HttpError(413, 'payload_too_large', `the body is limited to ${maxBodyBytes} bytes`)
  const text = new TextDecoder().decode(bytes)
  try {
    const body = JSON.parse(text || '{}')
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object')
    return body
  } catch {
    throw new HttpError(400, 'invalid_request', 'send a JSON object: {"credits": <whole number>, "org_id": "<uuid>" (optional)}')
  }
}

export function createCheckoutHandler(stripe: Pick<Stripe, 'checkout'>, store: CheckoutStore, settings: CheckoutSettings | Error) {
  return async (req: Request, caller: UserCaller): Promise<Response> => {
    const body = await readBody(req)
    const credits = body.credits
    if (typeof credits !== 'number' || !Number.isInteger(credits) || credits < (settings instanceof Error ? 1 : settings.minCredits) ||
        credits > (settings instanceof Error ? Number.MAX_SAFE_INTEGER : settings.maxCredits)) {
      throw new HttpError(400, 'invalid_credits', 'credits is a whole number within the allowed range',
        settings instanceof Error ? {} : { min: settings.minCredits, max: settings.maxCredits })
    }
    if (body.org_id !== undefined && body.org_id !== null && (typeof body.org_id !== 'string' || !uuidPattern.test(body.org_id))) {
      throw new HttpError(400, 'invalid_org_id', 'org_id is an org uuid (omit it for your personal org)')
    }
    const requested = (body.org_id as string | null | undefined) ?? null
    const membership = await store.membership(caller.userId, requested)
    if (!membership) throw new HttpError(403, 'not_a_member', 'you are not a member of this org', { org_id: requested })
    if (membership.role !== 'owner' && membership.role !== 'admin') {
      throw new HttpError(403, 'forbidden', 'only owners and admins of the org may buy credits', { org_id: membership.org_id })
    }
    if (settings instanceof Error) throw new HttpError(503, 'checkout_not_configured', settings.message)

    const idempotencyKey = req.headers.get('idempotency-key')
    if (idempotencyKey !== null && (idempotencyKey.length < 1 || idempotencyKey.length > 200)) {
      throw new HttpError(400, 'invalid_idempotency_key', 'Idempotency-Key is 1..200 characters')
    }
    const metadata = { org_id: membership.org_id, credits: String(credits) }
    let session: Stripe.Checkout.Session
    try {
      session = await stripe.checkout.sessions.create(
        {
          mode: 'payment',
          line_items: [{
            quantity: credits,
            price_data: { currency: settings.currency, unit_amount: settings.centsPerCredit, product_data: { name: 'Credits' } },
          }],
          metadata,
          payment_intent_data: { metadata },
          client_reference_id: membership.org_id,
          success_url: withQuery(settings.returnUrl, { checkout: 'success', org: membership.org_id }),
          cancel_url: withQuery(settings.returnUrl, { checkout: 'cancelled', org: membership.org_id }),
        },
        // A double click (the same key) gets the same session, not a second one.
        idempotencyKey ? { idempotencyKey: `tollgate-checkout-${caller.userId}-${idempotencyKey}` } : undefined,
      )
    } catch (error) {
      const e = error as { type?: string; message?: string }
      logEvent('error', 'checkout_session_failed', { org_id: membership.org_id, type: e?.type, message: e?.message })
      if (e?.type === 'StripeInvalidRequestError') throw new HttpError(400, 'payment_rejected', e.message ?? 'Stripe refused the session')
      throw new HttpError(502, 'payment_provider_unavailable', 'Stripe could not be reached: try again')
    }
    logEvent('info', 'checkout_session_created', { org_id: membership.org_id, credits, session_id: session.id })
    return json(200, { id: session.id, url: session.url, org_id: membership.org_id, credits, amount: credits * settings.centsPerCredit, currency: settings.currency })
  }
}

function withQuery(url: string, params: Record<string, string>): string {
  const target = new URL(url)
  for (const [key, value] of Object.entries(params)) target.searchParams.set(key, value)
  return target.toString()
}

/**
 * TOLLGATE_CHECKOUT_CENTS_PER_CREDIT (required), TOLLGATE_CHECKOUT_CURRENCY (default usd),
 * TOLLGATE_CHECKOUT_MIN_CREDITS / _MAX_CREDITS (default 100 / 1,000,000) and
 * TOLLGATE_USAGE_PAGE_URL (required, http(s)). A missing or invalid setting is returned as an
 * Error: every purchase then answers 503 checkout_not_configured saying which.
 */
export function checkoutSettingsFromEnv(env: (name: string) => string | undefined = (name) => Deno.env.get(name)): CheckoutSettings | Error {
  const whole = (name: string, fallback?: number): number | Error => {
    const raw = env(name)
    if (raw === undefined || raw === '') return fallback ?? new Error(`${name} is not set`)
    const value = Number(raw)
    return Number.isInteger(value) && value >= 1 ? value : new Error(`${name} must be a positive whole number`)
  }
  const centsPerCredit = whole('TOLLGATE_CHECKOUT_CENTS_PER_CREDIT')
  const minCredits = whole('TOLLGATE_CHECKOUT_MIN_CREDITS', 100)
  const maxCredits = whole('TOLLGATE_CHECKOUT_MAX_CREDITS', 1_000_000)
  for (const value of [centsPerCredit, minCredits, maxCredits]) if (value instanceof Error) return value
  const returnUrl = env('TOLLGATE_USAGE_PAGE_URL')
  if (!returnUrl || !/^https?:\/\//.test(returnUrl)) return new Error('TOLLGATE_USAGE_PAGE_URL must be the usage page\'s http(s) URL')
  const currency = (env('TOLLGATE_CHECKOUT_CURRENCY') ?? 'usd').toLowerCase()
  if (!/^[a-z]{3}$/.test(currency)) return new Error('TOLLGATE_CHECKOUT_CURRENCY must be a three-letter currency code')
  if ((minCredits as number) > (maxCredits as number)) return new Error('TOLLGATE_CHECKOUT_MIN_CREDITS exceeds TOLLGATE_CHECKOUT_MAX_CREDITS')
  return { centsPerCredit: centsPerCredit as number, currency, minCredits: minCredits as number, maxCredits: maxCredits as number, returnUrl }
}
