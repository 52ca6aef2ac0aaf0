import { requireEnv } from '../_shared/env.ts'
import { handle } from '../_shared/http.ts'
import { paymentsStore } from '../_shared/payments/store.ts'
import { cryptoProvider, stripeFromEnv } from '../_shared/payments/stripe.ts'
import { createStripeWebhookHandler } from '../_shared/payments/webhook.ts'
import { serviceDb } from '../_shared/service-db.ts'

Deno.serve(
  handle('stripe-webhook', createStripeWebhookHandler(stripeFromEnv().webhooks, requireEnv('STRIPE_WEBHOOK_SECRET'), paymentsStore(serviceDb()), cryptoProvider)),
)
