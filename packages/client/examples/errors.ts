import {
  createTollgateClient,
  InsufficientCreditsError,
  InvalidInputError,
  NetworkError,
  NotAMemberError,
  TollgateError,
  UnknownOperationError,
} from '@tollgate/client'
import { createNodeSupabaseClient } from './node-client.ts'

// Branch on the class (or `key`), never on message prose.
export async function errorsExample(url: string, anonKey: string, accessToken: string, operation: string, quantity: number) {
  const tollgate = createTollgateClient(createNodeSupabaseClient(url, anonKey, accessToken), { retries: 2 })
  try {
    const charge = await tollgate.consume({ operation, quantity })
    return `charged ${charge.charged}`
  } catch (error) {
    if (error instanceof InsufficientCreditsError) return `top up: need ${error.required}, have ${error.available}`
    if (error instanceof UnknownOperationError) return `no price for ${String(error.details.operation)}`
    if (error instanceof InvalidInputError) return `bad input: ${error.key}`
    if (error instanceof NotAMemberError) return 'not your org'
    if (error instanceof NetworkError) return 'offline: try again later (same request id)'
    if (error instanceof TollgateError) return `failed: ${error.key} (${error.code}, HTTP ${error.status})`
    throw error
  }
}
