// The official Stripe library, configured from the environment. STRIPE_API_BASE points it at
// another server (tests use a local recording server; stripe-mock works too).
import Stripe from 'stripe'

export function stripeFromEnv(): Stripe {
  const base = Deno.env.get('STRIPE_API_BASE')
  const target = base ? new URL(base) : undefined
  return new Stripe(Deno.env.get('STRIPE_SECRET_KEY') ?? 'sk_test_missing', {
    httpClient: Stripe.createFetchHttpClient(),
    maxNetworkRetries: 2,
    ...(target
      ? { host: target.hostname, port: Number(target.port || (target.protocol === 'https:' ? 443 : 80)), protocol: target.protocol.replace(':', '') as 'http' | 'https' }
      : {}),
  })
}

export const cryptoProvider = Stripe.createSubtleCryptoProvider()
export type { Stripe }
