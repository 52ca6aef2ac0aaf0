import { createTollgateServer } from '@tollgate/client/server'
import { createNodeSupabaseClient } from './node-client.ts'

// The server half, with the service role key (trusted code only: never in a browser).
export async function serverExample(url: string, serviceRoleKey: string, orgId: string, userId: string, operation: string) {
  const server = createTollgateServer(createNodeSupabaseClient(url, serviceRoleKey))

  // A card payment: pending until the payment provider confirms it. The payment id makes both
  // calls idempotent, so a retried webhook never credits twice.
  const paymentId = `pi_${crypto.randomUUID()}`
  await server.grant({ orgId, amount: 500, source: 'purchase', externalRef: paymentId, pending: true })
  const topUp = await server.activateGrant({ orgId, source: 'purchase', externalRef: paymentId })

  // Pre-authorise 3 units, then charge the 2 that were used; the third is released.
  const hold = await server.reserve({ orgId, userId, operation, quantity: 3, ttlSeconds: 60 })
  const captured = await server.capture({ orgId, requestId: hold.requestId, quantity: 2, result: { latencyMs: 120 } })

  // Our mistake: give it back (once, however often this runs).
  const refund = await server.refund({ orgId, requestId: hold.requestId, reason: 'output was corrupted' })
  return { topUp, hold, captured, refund }
}
