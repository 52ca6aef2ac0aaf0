import crypto from 'node:crypto'
import type http from 'node:http'
import { readBody } from './read-body.ts'

/**
 * A local stand-in for the part of Stripe's API the stack's functions use, so that nothing the
 * local stack does ever reaches Stripe. The gateway serves it (no port of its own): functions
 * point the official library at the gateway with STRIPE_API_BASE (set by the stack unless
 * STRIPE_API_BASE or a real STRIPE_SECRET_KEY is exported).
 *
 * - `POST /v1/checkout/sessions` (mounted at `/v1`) creates an open session whose `url` is a page
 *   under `/stripe-checkout/`;
 * - that page shows what would be paid and offers "Pay" and "Cancel";
 * - "Pay" marks the session paid, delivers `checkout.session.completed` to the stack's
 *   stripe-webhook function, signed with the webhook secret exactly as Stripe signs it, and sends
 *   the browser to the session's success_url; "Cancel" goes to cancel_url.
 * Anything else answers 404 with a Stripe-shaped error.
 */
export type MountedHandler = (req: http.IncomingMessage, res: http.ServerResponse, subpath: string) => void

export interface StripeStandin {
  /** Mount at `/v1`: Stripe's API. */
  api: MountedHandler
  /** Mount at `/stripe-checkout`: the checkout pages. */
  pages: MountedHandler
}

interface Session {
  id: string
  object: 'checkout.session'
  mode: string
  status: 'open' | 'complete'
  payment_status: 'unpaid' | 'paid'
  amount_total: number
  currency: string
  metadata: Record<string, string>
  client_reference_id: string | null
  success_url: string
  cancel_url: string
  url: string
  created: number
}

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

/** Stripe's signature scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`. */
export function stripeSignature(payload: string, secret: string, timestamp = Math.floor(Date.now() / 1000)): string {
  const v1 = crypto.createHmac('sha256', secret).update(`${timestamp}.${payload}`).digest('hex')
  return `t=${timestamp},v1=${v1}`
}

function stripeError(res: http.ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ error: { type: 'invalid_request_error', message } }))
}

export function createStripeStandin(options: { baseUrl: string; webhookUrl: string; webhookSecret: string }): StripeStandin {
  const sessions = new Map<string, Session>()
  const pagesBase = `${options.baseUrl}/stripe-checkout`

  const api: MountedHandler = (req, res, subpath) => {
    void (async () => {
      if (req.method !== 'POST' || subpath !== '/checkout/sessions') {
        return stripeError(res, 404, `the local Stripe stand-in has no ${req.method} /v1${subpath} (it implements checkout sessions only)`)
      }
      const form = new URLSearchParams(await readBody(req))
      const quantity = Number(form.get('line_items[0][quantity]'))
      const unitAmount = Number(form.get('line_items[0][price_data][unit_amount]'))
      const successUrl = form.get('success_url')
      const cancelUrl = form.get('cancel_url')
      if (!Number.isInteger(quantity) || !Number.isInteger(unitAmount) || !successUrl || !cancelUrl) {
        return stripeError(res, 400, 'the stand-in needs line_items[0] with quantity and price_data[unit_amount], success_url and cancel_url')
      }
      const metadata: Record<string, string> = {}
      for (const [key, value] of form) {
        const m = /^metadata\[(.+)\]$/.exec(key)
        if (m) metadata[m[1]!] = value
      }
      const id = `cs_test_local_${crypto.randomBytes(12).toString('hex')}`
      const session: Session = {
        id,
        object: 'checkout.session',
        mode: form.get('mode') ?? 'payment',
        status: 'open',
        payment_status: 'unpaid',
        amount_total: quantity * unitAmount,
        currency: form.get('line_items[0][price_data][currency]') ?? 'usd',
        metadata,
        client_reference_id: form.get('client_reference_id'),
        success_url: successUrl,
        cancel_url: cancelUrl,
        url: `${pagesBase}/${id}`,
        created: Math.floor(Date.now() / 1000),
      }
      sessions.set(id, session)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(session))
    })().catch((error: unknown) => {
      if (!res.headersSent) stripeError(res, 500, (error as Error).message)
    })
  }

  const pages: MountedHandler = (req, res, subpath) => {
    void (async () => {
      const page = /^\/(cs_test_local_[0-9a-f]+)(\/pay)?$/.exec(subpath)
      const session = page ? sessions.get(page[1]!) : undefined
      if (page && session && req.method === 'GET' && !page[2]) {
        const amount = `${(session.amount_total / 100).toFixed(2)} ${session.currency.toUpperCase()}`
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'" })
        return void res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout (local stand-in)</title><style>body{font-family:system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
button,a{font:inherit;padding:.5rem 1rem;margin-right:.5rem}</style></head><body>
<h1>Checkout</h1><p>Local stand-in for Stripe Checkout: no card, no network. Paying here sends the same signed
<code>checkout.session.completed</code> event Stripe would send to this stack's <code>stripe-webhook</code>.</p>
<p><strong>${escapeHtml(session.metadata.credits ?? '?')} credits</strong> for <strong>${escapeHtml(amount)}</strong></p>
${session.payment_status === 'paid' ? '<p>Already paid.</p>' : `<form method="post" action="${escapeHtml(`${pagesBase}/${session.id}/pay`)}"><button type="submit">Pay ${escapeHtml(amount)}</button>
<a href="${escapeHtml(session.cancel_url)}">Cancel</a></form>`}</body></html>`)
      }
      if (page && session && req.method === 'POST' && page[2]) {
        req.resume()
        if (session.payment_status !== 'paid') {
          session.payment_status = 'paid'
          session.status = 'complete'
          const payload = JSON.stringify({
            id: `evt_local_${crypto.randomBytes(12).toString('hex')}`,
            object: 'event',
            type: 'checkout.session.completed',
            created: Math.floor(Date.now() / 1000),
            data: { object: { ...session, url: null } },
          })
          const delivered = await fetch(options.webhookUrl, {
            method: 'POST',
            body: payload,
            headers: { 'content-type': 'application/json', 'stripe-signature': stripeSignature(payload, options.webhookSecret) },
          })
          await delivered.body?.cancel()
          if (!delivered.ok) {
            session.payment_status = 'unpaid'
            session.status = 'open'
            res.writeHead(502, { 'content-type': 'text/plain' })
            return void res.end(`the stripe-webhook function answered ${delivered.status}`)
          }
        }
        res.writeHead(303, { location: session.success_url })
        return void res.end()
      }
      stripeError(res, 404, 'no such checkout session on the local Stripe stand-in')
    })().catch((error: unknown) => {
      if (!res.headersSent) stripeError(res, 500, (error as Error).message)
    })
  }

  return { api, pages }
}
