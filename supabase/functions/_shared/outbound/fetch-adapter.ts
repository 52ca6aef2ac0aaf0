// The guard behind the shape of `fetch`, for code written against fetch (the tool gateway's
// handler takes a `typeof fetch`). An HTTP answer (2xx, 4xx, 5xx) resolves as a Response, and so
// does a redirect when the caller asked for `redirect: 'manual'`; any other redirect, a refusal
// or a network failure rejects with a TypeError carrying the outcome class
// (as fetch rejects on network errors); a deadline rejects with the caller's abort reason, or a
// TimeoutError DOMException, so callers that tell timeouts apart keep working.
import type { OutboundGuard } from './guard.ts'
import type { OutboundOutcome } from './ports.ts'

export class OutboundFetchError extends TypeError {
  constructor(readonly outcome: OutboundOutcome) {
    super(`outbound request failed: ${outcome}`)
  }
}

const nullBodyStatuses = new Set([204, 205, 304])
const hopByHop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection'])

export function guardedFetch(guard: OutboundGuard): typeof fetch {
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init)
    const body = request.body ? new Uint8Array(await request.arrayBuffer()) : null
    const signal = init?.signal ?? undefined
    const result = await guard.send(request.url, { method: request.method, headers: request.headers, body, signal })
    if (result.outcome === 'timeout') {
      throw signal?.aborted ? signal.reason : new DOMException('the outbound request timed out', 'TimeoutError')
    }
    const headers = new Headers()
    for (const [name, value] of result.headers ?? []) if (!hopByHop.has(name)) headers.append(name, value)
    // `redirect: 'manual'` gets the redirect itself, body dropped, as fetch gives it; otherwise a
    // redirect is an error: it is never followed.
    if (result.outcome === 'redirect_refused' && result.status !== null && init?.redirect === 'manual') {
      return new Response(null, { status: result.status, headers })
    }
    if (result.status === null || result.outcome === 'redirect_refused' || result.status < 200 || result.status > 599) {
      // No Response can carry a status outside 200–599: the guard's class says what it was.
      throw new OutboundFetchError(result.outcome)
    }
    return new Response(nullBodyStatuses.has(result.status) ? null : result.body, { status: result.status, headers })
  }
}
