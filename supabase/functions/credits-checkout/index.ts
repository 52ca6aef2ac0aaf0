import { handle } from '../_shared/entry.ts'
import { checkoutSettingsFromEnv, createCheckoutHandler } from '../_shared/payments/checkout.ts'
import { checkoutStore } from '../_shared/payments/checkout-store.ts'
import { stripeFromEnv } from '../_shared/payments/stripe.ts'
import { serviceDb } from '../_shared/service-db.ts'

Deno.serve(handle('credits-checkout', { methods: ['POST'], access: 'user' }, createCheckoutHandler(stripeFromEnv(), checkoutStore(serviceDb()), checkoutSettingsFromEnv())))
