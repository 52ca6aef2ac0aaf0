// Our RPCs raise documented errors (message = key, SQLSTATE, JSON detail); edge functions that
// call them answer with the same key and the HTTP status PostgREST would use.
import { HttpError } from './http.ts'

interface PostgresError {
  code?: string
  message?: string
  detail?: string
}

/** HttpError for a documented RPC error; undefined for anything else (a bug, an outage). */
export function fromRpcError(error: unknown): HttpError | undefined {
  const e = error as PostgresError
  if (!e?.code || !e.message || !/^[a-z][a-z0-9_]*$/.test(e.message)) return undefined
  let details: Record<string, unknown> = {}
  try {
    details = e.detail ? JSON.parse(e.detail) : {}
  } catch {
    // keep {}
  }
  const status = /^PT\d{3}$/.test(e.code) ? Number(e.code.slice(2)) : e.code === '22023' ? 400 : e.code === '42501' ? 403 : undefined
  return status ? new HttpError(status, e.message, e.message.replaceAll('_', ' '), details) : undefined
}

/** Runs an RPC call and rethrows documented errors as HttpError. */
export async function rpc<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    throw fromRpcError(error) ?? error
  }
}
