// One error path for every edge function: handlers throw HttpError, the entry (entry.ts)
// renders `{error, message, ...}` with the status and logs one structured JSON line.

/** An error with an HTTP status and a stable snake_case key (the `error` field). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly key: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    /** Response headers the answer carries (e.g. `allow` on a 405). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

export function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  })
}

const secretKey = /pass(word)?|secret|token|authorization|apikey|api_key|jwt|cookie/i

/** Replaces secret-looking fields and credentials inside URLs before anything is logged. */
export function redact(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(/(\w+:\/\/[^:/@\s]+:)[^@\s]+@/g, '$1***@')
  if (Array.isArray(value)) return value.map(redact)
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, secretKey.test(k) ? '***' : redact(v)]),
    )
  }
  return value
}

export function logEvent(level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify(redact({ time: new Date().toISOString(), level, event, ...fields }))
  if (level === 'error') console.error(line)
  else console.log(line)
}
