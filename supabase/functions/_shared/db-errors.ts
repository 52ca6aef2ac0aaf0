// A database that cannot be reached is a 503 with a stable key, not a 500: clients (devices)
// retry 503s, and the logs tell an outage from a bug.
import { HttpError } from './http.ts'

const unreachableCodes = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE',
  'CONNECTION_REFUSED', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT',
])

/** True for "cannot talk to the database" errors: network failures, SQLSTATE 08xxx and 57P0x. */
export function isUnreachable(error: unknown): boolean {
  const e = error as { code?: string; errno?: string; name?: string }
  const code = e?.code ?? e?.errno ?? ''
  return unreachableCodes.has(code) || /^08/.test(code) || /^57P0/.test(code) || e?.name === 'ConnectionRefused'
}

/** Wraps every async method of `target` so unreachable-database errors become 503 `key`. */
export function unavailableAs<T extends object>(key: string, target: T): T {
  return new Proxy(target, {
    get(object, property, receiver) {
      const value = Reflect.get(object, property, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        const result = value.apply(object, args)
        if (!(result instanceof Promise)) return result
        return result.catch((error: unknown) => {
          if (isUnreachable(error)) throw new HttpError(503, key, 'the database is unavailable, retry shortly', { retry_after_seconds: 1 })
          throw error
        })
      }
    },
  })
}
