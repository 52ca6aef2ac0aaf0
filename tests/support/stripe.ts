import { randomUUID } from 'node:crypto'
import Stripe from 'stripe'
import { localFunctionSecrets } from '@tollgate/local-stack'
import { env } from './env.ts'

// Stripe webhook deliveries to the stack's stripe-webhook function, signed with the official
// library exactly as Stripe signs them.

export const webhookSecret = process.env.STRIPE_WEBHOOK_SECRET ?? localFunctionSecrets.STRIPE_WEBHOOK_SECRET!
const stripe = new Stripe('sk_test_signing_only')

export interface StripeTestEvent {
  id: string
  type: string
  object: Record<string, unknown>
}

/** A Stripe test id: `<prefix>_test_<random>` (ids may contain underscores). */
export const stripeId = (prefix: string): string => `${prefix}_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`

export const stripeEvent = (type: string, object: Record<string, unknown>, id = stripeId('evt')): StripeTestEvent => ({ id, type, object })

export interface Delivery {
  status: number
  body: Record<string, unknown>
}

/** One delivery of `event` (the same event id every time it is delivered). */
export async function deliver(event: StripeTestEvent, options: { secret?: string } = {}): Promise<Delivery> {
  const payload = JSON.stringify({ id: event.id, object: 'event', type: event.type, data: { object: event.object }, created: Math.floor(Date.now() / 1000), api_version: '2025-01-27' })
  const signature = stripe.webhooks.generateTestHeaderString({ payload, secret: options.secret ?? webhookSecret })
  const res = await fetch(`${env.SUPABASE_URL}/functions/v1/stripe-webhook`, {
    method: 'POST',
    body: payload,
    headers: { 'stripe-signature': signature, 'content-type': 'application/json' },
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** Every distinct ordering of `items` (items with the same key are interchangeable). */
export function orderings<T>(items: T[], key: (item: T) => string): T[][] {
  if (items.length <= 1) return [items]
  const seen = new Set<string>()
  const out: T[][] = []
  items.forEach((item, i) => {
    const k = key(item)
    if (seen.has(k)) return
    seen.add(k)
    for (const rest of orderings([...items.slice(0, i), ...items.slice(i + 1)], key)) out.push([item, ...rest])
  })
  return out
}

/** Runs `task` over `inputs` with at most `limit` in flight. */
export async function inBatches<T, R>(inputs: T[], limit: number, task: (input: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(inputs.length)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(limit, inputs.length) }, async () => {
      while (next < inputs.length) {
        const index = next++
        results[index] = await task(inputs[index]!, index)
      }
    }),
  )
  return results
}
