// The tool gateway: POST /meter/<operation> with a user JWT and an Idempotency-Key.
// reserve → forward to the operation's backend → capture (2xx, or the user's 4xx) or release
// (5xx, 408/429, redirect, oversized answer, timeout, connection error: our fault, not charged)
// → the backend's answer, byte for byte, with X-Credits-Charged and X-Credits-Remaining.
// A key is bound to its caller and to its request (fingerprint): a retry of the same request by
// the same caller gets the first answer again; anything else under that key is a 409.
import { HttpError, json } from '../http.ts'
import type { UserCaller } from '../entry.ts'
import { readCapped } from '../body.ts'
import { OutboundFetchError } from '../outbound/fetch-adapter.ts'
import { rpc } from '../pg-errors.ts'

/** Largest request body forwarded, and largest backend answer stored and returned (1 MiB). */
export const maxBodyBytes = 1024 * 1024
/** Longest Content-Type stored; a longer one is answered as application/octet-stream. */
const maxContentTypeLength = 255

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
  body: Uint8Array<ArrayBuffer>
}

export interface Outcome {
  capture: boolean
  /** What the client gets (and a retry of the same key by the same caller gets again). */
  response: StoredResponse
  result: { latency_ms: number; backend_endpoint: string; error_code?: string; success: boolean; output: { status: number; bytes: number } }
}

export interface ReserveArgs {
  userId: string
  orgId: string | null
  operation: string
  requestId: string
  quantity: number
  ttlSeconds: number
  /** SHA-256 of the request (see requestFingerprint). */
  fingerprint: Uint8Array
}

export interface MeterStore {
  backend(operation: string): Promise<Backend | undefined>
  /** Holds the credits, or replays the key's hold; refuses another caller or another request under the key. */
  reserve(args: ReserveArgs): Promise<Hold>
  /** The key's stored answer, once its request has settled. */
  storedResponse(orgId: string, requestId: string): Promise<StoredResponse | undefined>
  /** Captures or releases the hold and stores the response, in one transaction. */
  settle(orgId: string, requestId: string, outcome: Outcome): Promise<{ charged: number; balance_after: number }>
  /** Spendable credits of `orgId`, or of the user's personal org when it is null. */
  available(userId: string, orgId: string | null): Promise<number>
}

const operationPattern = /^[a-z][a-z0-9_.:-]{0,63}$/
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * What an Idempotency-Key is bound to: SHA-256 of the method, the operation (path), the quantity
 * (query) and the body bytes. The operation cannot contain a newline, so the encoding is
 * unambiguous.
 */
export async function requestFingerprint(operation: string, quantity: number, contentType: string, body: Uint8Array): Promise<Uint8Array> {
  // The content type is forwarded to the backend, so it is part of what the request means.
  const head = new TextEncoder().encode(`POST /meter/${operation}?quantity=${quantity}\ncontent-type: ${contentType}\n`)
  const data = new Uint8Array(head.byteLength + body.byteLength)
  data.set(head)
  data.set(body, head.byteLength)
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data))
}

function creditHeaders(charged: number, remaining: number, contentType: string | null = null, replay = false): Record<string, string> {
  return {
    ...(contentType === null ? {} : { 'content-type': contentType }),
    'x-credits-charged': String(charged),
    'x-credits-remaining': String(remaining),
    ...(replay ? { 'x-idempotent-replay': 'true' } : {}),
  }
}

/** Backend statuses that are the user's doing (charged): 4xx except timeouts and rate limits. */
const isUserError = (status: number) => status >= 400 && status < 500 && status !== 408 && status !== 429

/** Statuses whose responses carry no body (the Response constructor refuses one). */
const nullBodyStatuses = new Set([101, 103, 204, 205, 304])

function answer(stored: StoredResponse, headers: Record<string, string>): Response {
  return new Response(nullBodyStatuses.has(stored.status) ? null : stored.body, { status: stored.status, headers })
}


const jsonBytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

/** Which org the answer's X-Credits-* headers report on, once the caller's org is resolved. */
interface Billing {
  userId?: string
  orgId: string | null
  resolved: boolean
}

export function createMeterHandler(store: MeterStore, fetchImpl: typeof fetch = fetch) {
  const meter = async (req: Request, userId: string, billing: Billing): Promise<Response> => {
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
    const payload = await readCapped(req.body, maxBodyBytes, req.headers.get('content-length'))
    if (!payload) throw new HttpError(413, 'request_too_large', `the request body is larger than ${maxBodyBytes} bytes`, { limit_bytes: maxBodyBytes })
    const contentType = req.headers.get('content-type') ?? 'application/octet-stream'
    const fingerprint = await requestFingerprint(operation, quantity, contentType, payload)

    // Another caller's key, a changed request (409) or too few credits (402): refused here,
    // before the backend is called. Those refusals come after the membership check.
    Object.assign(billing, { userId, orgId })
    let hold: Hold
    try {
      hold = await rpc(() =>
        store.reserve({ userId, orgId, operation, requestId, quantity, ttlSeconds: Math.ceil(backend.timeout_ms / 1000) + 60, fingerprint }),
      )
    } catch (error) {
      if (error instanceof HttpError && (error.status === 402 || error.status === 409)) billing.resolved = true
      throw error
    }
    Object.assign(billing, { orgId: hold.org_id, resolved: true })

    if (hold.replayed) {
      if (hold.status === 'held') throw new HttpError(409, 'request_in_progress', 'a request with this Idempotency-Key is still running')
      const stored = await store.storedResponse(hold.org_id, requestId)
      if (!stored) throw new HttpError(409, 'request_expired', 'this Idempotency-Key was not completed in time and was released uncharged')
      return answer(stored, creditHeaders(hold.charged, await store.available(userId, hold.org_id), stored.content_type ?? 'application/octet-stream', true))
    }

    const started = performance.now()
    const record = (status: number, errorCode: string | undefined, bytes: number) => ({
      latency_ms: Math.round(performance.now() - started),
      // By name: members read this column, and a URL may carry credentials.
      backend_endpoint: operation,
      ...(errorCode ? { error_code: errorCode } : {}),
      success: status >= 200 && status < 300,
      output: { status, bytes },
    })
    const gatewayError = (status: number, key: string, errorCode: string, message: string, extra: Record<string, unknown> = {}): Outcome => {
      const body = jsonBytes({ error: key, message, ...extra })
      return { capture: false, response: { status, content_type: 'application/json', body }, result: record(status, errorCode, body.byteLength) }
    }
    let outcome: Outcome
    try {
      const res = await fetchImpl(backend.url, {
        method: 'POST',
        body: payload,
        headers: {
          'content-type': contentType,
          'x-tollgate-request-id': requestId,
          'x-tollgate-org-id': hold.org_id,
          'x-tollgate-user-id': userId,
        },
        // A backend answers itself; a redirect is never followed (it could point anywhere).
        redirect: 'manual',
        signal: AbortSignal.timeout(backend.timeout_ms),
      })
      if (res.status < 200 || (res.status >= 300 && res.status < 400)) {
        await res.body?.cancel().catch(() => {})
        outcome = gatewayError(502, 'backend_invalid_response', `http_${res.status}`, `the backend answered ${res.status}, which the gateway does not pass on`)
      } else {
        const body = await readCapped(res.body, maxBodyBytes)
        if (!body) {
          // The answer cannot be stored or replayed; the backend broke the gateway's contract, so
          // the user is not charged.
          outcome = gatewayError(502, 'backend_response_too_large', 'backend_response_too_large',
            `the backend answered more than ${maxBodyBytes} bytes`, { limit_bytes: maxBodyBytes })
        } else {
          const contentType = res.headers.get('content-type')
          outcome = {
            capture: res.ok || isUserError(res.status),
            response: {
              status: res.status,
              content_type: contentType !== null && contentType.length <= maxContentTypeLength ? contentType : null,
              body,
            },
            result: record(res.status, res.ok ? undefined : `http_${res.status}`, body.byteLength),
          }
        }
      }
    } catch (error) {
      // Through the outbound guard a failure carries its outcome class (refused address, DNS, TLS,
      // an answer over the cap...); recorded as the error code, never as network error text.
      const outboundClass = error instanceof OutboundFetchError ? error.outcome : undefined
      outcome = (error as Error)?.name === 'TimeoutError'
        ? gatewayError(504, 'backend_timeout', 'backend_timeout', `the backend did not answer within ${backend.timeout_ms} ms`)
        : outboundClass === 'response_too_large'
        ? gatewayError(502, 'backend_response_too_large', 'backend_response_too_large', `the backend answered more than ${maxBodyBytes} bytes`, { limit_bytes: maxBodyBytes })
        : gatewayError(502, 'backend_unavailable', outboundClass ?? 'backend_unavailable', 'the backend could not be reached')
    }

    const settled = await rpc(() => store.settle(hold.org_id, requestId, outcome))
    return answer(outcome.response, creditHeaders(settled.charged, settled.balance_after, outcome.response.content_type ?? 'application/octet-stream'))
  }

  return async (req: Request, caller: UserCaller): Promise<Response> => {
    const billing: Billing = { orgId: null, resolved: false }
    try {
      return await meter(req, caller.userId, billing)
    } catch (error) {
      // Every answer about a resolved org carries X-Credits-*, refusals included; answers before
      // that (malformed input, not a member) have no org to report on.
      if (!(error instanceof HttpError) || !billing.resolved || !billing.userId) throw error
      const remaining = await store.available(billing.userId, billing.orgId).catch(() => undefined)
      if (remaining === undefined) throw error
      throw new HttpError(error.status, error.key, error.message, error.extra, { ...error.headers, ...creditHeaders(0, remaining) })
    }
  }
}
