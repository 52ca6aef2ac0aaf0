import { handle } from '../_shared/entry.ts'
import { requireEnv } from '../_shared/env.ts'
import { paymentsStore } from '../_shared/payments/store.ts'
import { cryptoProvider, stripeFromEnv } from '../_shared/payments/stripe.ts'
import { createStripeWebhookHandler } from '../_shared/payments/webhook.ts'
import { serviceDb } from '../_shared/service-db.ts'

// Public: Stripe authenticates each delivery with its signature, verified in the handler.
Deno.serve(
  handle(
    'stripe-webhook',
    { methods: ['POST'], access: 'public' },
    createStripeWebhookHandler(stripeFromEnv().webhooks, requireEnv('STRIPE_WEBHOOK_SECRET'), paymentsStore(serviceDb()), cryptoProvider),
  ),
)
