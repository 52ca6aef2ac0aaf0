// Our RPCs raise documented errors (message = key, SQLSTATE, JSON detail); edge functions that
// call them answer with the same key and the HTTP status the error catalog gives it, which is
// what PostgREST answers a signed-in caller (the functions refuse anon before any RPC).
import { HttpError } from './http.ts'
import { catalogEntry } from './errors/catalog.ts'

interface PostgresError {
  code?: string
  message?: string
  detail?: string
}

/**
 * HttpError for a documented RPC error: a catalog key raised with the catalog's SQLSTATE and a
 * 4xx status. Undefined for anything else — a bug, an outage, an internal invariant (5xx keys
 * such as balance_out_of_sync), which the entry answers as 500 without revealing the key.
 */
export function fromRpcError(error: unknown): HttpError | undefined {
  const e = error as PostgresError
  if (!e?.code || !e.message) return undefined
  const entry = catalogEntry(e.message)
  if (!entry || entry.sqlstate !== e.code || entry.http_status >= 500) return undefined
  let details: Record<string, unknown> = {}
  try {
    details = e.detail ? JSON.parse(e.detail) : {}
  } catch {
    // keep {}
  }
  return new HttpError(entry.http_status, e.message, e.message.replaceAll('_', ' '), details)
}

/** Runs an RPC call and rethrows documented errors as HttpError. */
export async function rpc<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    throw fromRpcError(error) ?? error
  }
}
