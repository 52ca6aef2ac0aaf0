// One error path for every edge function: handlers throw HttpError, `handle` renders
// `{error, message, ...}` with the status and logs one structured JSON line.

/** An error with an HTTP status and a stable snake_case key (the `error` field). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly key: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
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

/** Wraps a handler: HttpError → its JSON answer; anything else → 500 internal_error, logged. */
export function handle(fn: string, handler: (req: Request) => Promise<Response>): (req: Request) => Promise<Response> {
  return async (req) => {
    const started = performance.now()
    try {
      const res = await handler(req)
      logEvent('info', 'request', { fn, method: req.method, status: res.status, latency_ms: Math.round(performance.now() - started) })
      return res
    } catch (error) {
      if (error instanceof HttpError) {
        logEvent(error.status >= 500 ? 'error' : 'info', 'request', { fn, method: req.method, status: error.status, error: error.key })
        return json(error.status, { error: error.key, message: error.message, ...error.extra })
      }
      logEvent('error', 'unhandled_error', { fn, method: req.method, message: (error as Error)?.message ?? String(error) })
      return json(500, { error: 'internal_error', message: 'internal error' })
    }
  }
}
