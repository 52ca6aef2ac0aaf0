import { createTollgateClient } from '@tollgate/client'
import { createNodeSupabaseClient } from './node-client.ts'

// The user half: a signed-in user's own balance, charges, ledger and orgs.
export async function userExample(url: string, anonKey: string, accessToken: string, operation: string) {
  const tollgate = createTollgateClient(createNodeSupabaseClient(url, anonKey, accessToken))

  const [personal] = await tollgate.orgs() // personal org first
  const before = await tollgate.balance() // default: the personal org

  // Charge 2 units of `operation`. Keep the request id: a retry with it is never charged twice.
  const charge = await tollgate.consume({ operation, quantity: 2, metadata: { document: 'report.pdf' } })
  const replay = await tollgate.consume({ operation, quantity: 2, requestId: charge.requestId })
  console.log(`${charge.charged} credits charged, ${charge.balanceAfter} left; replayed: ${replay.replayed}`)

  // The whole ledger, newest first, 10 entries per page.
  const entries = []
  let cursor: number | null = null
  do {
    const page = await tollgate.ledger({ limit: 10, before: cursor })
    entries.push(...page.entries)
    cursor = page.nextCursor
  } while (cursor !== null)

  const stats = await tollgate.usageStats({ days: 7 })
  const grants = await tollgate.grants({ status: 'active' })
  return { personal, before, charge, replay, entries, stats, grants }
}
