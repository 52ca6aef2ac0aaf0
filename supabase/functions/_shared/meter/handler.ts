// The tool gateway (seed 003): POST /meter/<operation> with a user JWT and an Idempotency-Key.
// reserve → forward to the operation's backend → capture (2xx, or the user's 4xx) or release
// (5xx, 408/429, timeout, connection error: our fault, not charged) → the backend's answer
// with X-Credits-Charged and X-Credits-Remaining. A retried key gets the first answer.
import { HttpError, json } from '../http.ts'
import type { UserCaller } from '../entry.ts'
import { rpc } from '../pg-errors.ts'

export const maxBodyBytes = 1024 * 1024

export interface Backend {
  url: string
  timeout_ms: number
}

export interface Hold {
  org_id: string
  status: string
  charged: number
  replayed: boolean
}

export interface StoredResponse {
  status: number
  content_type: string | null
  body: string
}

export interface Outcome {
  capture: boolean
  /** What the client gets (and a retry of the same key gets again). */
  response: StoredResponse
  result: { latency_ms: number; backend_endpoint: string; error_code?: string; success: boolean; output: { status: number; bytes: number } }
}

export interface MeterStore {
  backend(operation: string): Promise<Backend | undefined>
  reserve(args: { userId: string; orgId: string | null; operation: string; requestId: string; quantity: number; ttlSeconds: number }): Promise<Hold>
  storedResponse(orgId: string, requestId: string): Promise<StoredResponse | undefined>
  /** Captures or releases the hold and stores the response, in one transaction. */
  settle(orgId: string, requestId: string, outcome: Outcome): Promise<{ charged: number; balance_after: number }>
  available(orgId: string): Promise<number>
}

const operationPattern = /^[a-z][a-z0-9_.:-]{0,63}$/
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

function creditHeaders(charged: number, remaining: number, contentType: string | null, replay = false): HeadersInit {
  return {
    'content-type': contentType ?? 'application/octet-stream',
    'x-credits-charged': String(charged),
    'x-credits-remaining': String(remaining),
    ...(replay ? { 'x-idempotent-replay': 'true' } : {}),
  }
}

/** Backend statuses that are the user's doing (charged): 4xx except timeouts and rate limits. */
const isUserError = (status: number) => status >= 400 && status < 500 && status !== 408 && status !== 429

async function readCapped(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  let size = 0
  if (body) {
    for await (const chunk of body) {
      size += chunk.byteLength
      if (size > limit) throw new HttpError(400, 'invalid_request', `body larger than ${limit} bytes`)
      chunks.push(chunk)
    }
  }
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}

export function createMeterHandler(store: MeterStore, fetchImpl: typeof fetch = fetch) {
  return async (req: Request, caller: UserCaller): Promise<Response> => {
    const userId = caller.userId
    const url = new URL(req.url)
    const operation = url.pathname.replace(/^\/meter\/?/, '').replace(/\/$/, '')
    if (!operationPattern.test(operation)) throw new HttpError(404, 'unknown_operation', 'POST /meter/<operation>')
    const requestId = req.headers.get('idempotency-key') ?? ''
    if (requestId.length < 1 || requestId.length > 200) {
      throw new HttpError(400, 'invalid_idempotency_key', 'send an Idempotency-Key header of 1 to 200 characters')
    }
    const quantity = Number(url.searchParams.get('quantity') ?? '1')
    if (!Number.isInteger(quantity) || quantity < 1 || quantity > 1_000_000) {
      throw new HttpError(400, 'invalid_quantity', 'quantity is an integer from 1 to 1000000')
    }
    const orgId = req.headers.get('x-tollgate-org')
    if (orgId !== null && !uuidPattern.test(orgId)) throw new HttpError(400, 'invalid_org_id', 'X-Tollgate-Org is an org uuid')

    const backend = await store.backend(operation)
    if (!backend) throw new HttpError(404, 'unknown_operation', `no metered operation ${operation}`)
    const payload = await readCapped(req.body, maxBodyBytes)

    // No credits → 402 here, before the backend is called.
    const hold = await rpc(() =>
      store.reserve({ userId, orgId, operation, requestId, quantity, ttlSeconds: Math.ceil(backend.timeout_ms / 1000) + 60 }),
    )
    if (hold.replayed) {
      if (hold.status === 'held') throw new HttpError(409, 'request_in_progress', 'a request with this Idempotency-Key is still running')
      const stored = await store.storedResponse(hold.org_id, requestId)
      if (!stored) throw new HttpError(409, 'request_expired', 'this Idempotency-Key was not completed in time and was released uncharged')
      return new Response(stored.body, {
        status: stored.status,
        headers: creditHeaders(hold.charged, await store.available(hold.org_id), stored.content_type, true),
      })
    }

    const started = performance.now()
    let outcome: Outcome
    const record = (status: number, errorCode: string | undefined, bytes: number) => ({
      latency_ms: Math.round(performance.now() - started),
      backend_endpoint: backend.url,
      ...(errorCode ? { error_code: errorCode } : {}),
      success: status >= 200 && status < 300,
      output: { status, bytes },
    })
    try {
      const res = await fetchImpl(backend.url, {
        method: 'POST',
        body: payload.buffer as ArrayBuffer,
        headers: {
          'content-type': req.headers.get('content-type') ?? 'application/octet-stream',
          'x-tollgate-request-id': requestId,
          'x-tollgate-org-id': hold.org_id,
          'x-tollgate-user-id': userId,
        },
        signal: AbortSignal.timeout(backend.timeout_ms),
      })
      const body = new TextDecoder().decode(await readCapped(res.body, maxBodyBytes))
      const ok = res.ok || isUserError(res.status)
      outcome = {
        capture: ok,
        response: { status: res.status, content_type: res.headers.get('content-type'), body },
        result: record(res.status, res.ok ? undefined : `http_${res.status}`, body.length),
      }
    } catch (error) {
      const timedOut = (error as Error)?.name === 'TimeoutError'
      const [status, key] = timedOut ? [504, 'backend_timeout'] : [502, 'backend_unavailable']
      const body = JSON.stringify({ error: key, message: timedOut ? `the backend did not answer within ${backend.timeout_ms} ms` : 'the backend could not be reached' })
      outcome = { capture: false, response: { status, content_type: 'application/json', body }, result: record(status, key, 0) }
    }

    const settled = await store.settle(hold.org_id, requestId, outcome)
    return new Response(outcome.response.body, {
      status: outcome.response.status,
      headers: creditHeaders(settled.charged, settled.balance_after, outcome.response.content_type),
    })
  }
}

export { json }
