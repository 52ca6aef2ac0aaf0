import { handle } from '../_shared/entry.ts'
import { stripeFromEnv } from '../_shared/payments/stripe.ts'
import { createTopupProcessor, topupPricingFromEnv } from '../_shared/payments/topup.ts'
import { topupStore } from '../_shared/payments/topup-store.ts'
import { serviceDb } from '../_shared/service-db.ts'

Deno.serve(handle('topup-processor', { methods: ['POST'], access: 'service_role' }, createTopupProcessor(stripeFromEnv(), topupStore(serviceDb()), topupPricingFromEnv())))
