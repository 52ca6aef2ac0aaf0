// @tollgate/client/server — the trusted half: grants, holds, refunds and withCredits, through a
// SupabaseClient built with the SERVICE ROLE key. Never ship this key (or this entry point) to
// a browser. Runs in Node, Deno (edge functions) and any fetch-capable runtime.

import { RequestAlreadySettledError, RequestInProgressError, TollgateError } from './errors.ts'
import { asTollgate, defaultRequestId, invalid, toResultJson, withoutBuiltinRetry, type AnySupabaseClient, type CallRecord } from './internal.ts'
import { retryPolicy, runWithRetry, type RetryOptions } from './retry.ts'
import {
  toChargeResult,
  toGrantResult,
  toOverageLimitResult,
  type ChargeResult,
  type GrantResult,
  type Json,
  type JsonObject,
  type OverageLimitResult,
} from './types.ts'
import { UserError } from './user-error.ts'

export * from './errors.ts'
export * from './types.ts'
export { UserError, isUserError } from './user-error.ts'
export type { Database } from './database.types.ts'
export type { RetryOptions, RetryEvent } from './retry.ts'
export type { AnySupabaseClient, CallRecord } from './internal.ts'

export interface TollgateServerOptions extends RetryOptions {
  /** Request ids for calls that do not pass one. Default `crypto.randomUUID()`. */
  newRequestId?: () => string
  /**
   * Which errors thrown inside `withCredits` are the user's fault (hold captured). `UserError`
   * always is; add your own classes here, e.g. `(e) => e instanceof ValidationError`.
   */
  isUserError?: (error: unknown) => boolean
  /**
   * Called when settling a hold failed after the callback threw (the callback's error is what
   * `withCredits` rethrows). The hold then lapses at its TTL: nothing is charged. Default: one
   * JSON line on console.error.
   */
  onSettleError?: (error: unknown, info: { orgId: string; requestId: string; action: 'capture' | 'release' }) => void
}

export interface GrantOptions {
  orgId: string
  /** Credits, 1..10^12. */
  amount: number
  /** Lowercase word: purchase, promotion, adjustment, ... (onboarding and refund have their own calls). */
  source: string
  /**
   * Payment/session id: (org, source, externalRef) makes the grant idempotent. Without it a
   * grant is NOT retried on a network failure (a retry could add the credits twice).
   */
  externalRef?: string
  expiresAt?: Date | string
  metadata?: JsonObject
  /** Burn-down order, 0..1000 (lower first); default 100. */
  priority?: number
  /** Wait for activateGrant (payment confirmed) before the credits are spendable. */
  pending?: boolean
  /**
   * When the credits start. In the future: the grant is `scheduled` (not spendable, not in
   * `available`) until the minute job credits it; at or before now: active at once. A replay
   * must pass the same start (else IdempotencyConflictError). Not with `pending`.
   */
  effectiveAt?: Date | string
  /**
   * The operations the credits may be spent on (priced operations, 1..100 names; stored sorted
   * and de-duplicated). Omit for credits spendable on anything: only those pay back an org's
   * debt. A replay must pass the same set (else IdempotencyConflictError).
   */
  operations?: string[]
}

export interface OverageLimitOptions {
  orgId: string
  /**
   * Credits the org may spend beyond its grants, 0..10^12 (0: none, the default). A limit below
   * the current debt stops new overage until the debt is below it; the debt stays.
   */
  limit: number
}

export interface GrantRef {
  orgId: string
  source: string
  externalRef: string
}

export interface ReserveOptions {
  orgId: string
  /** When given, must be a member of the org (else NotAMemberError). */
  userId?: string
  operation: string
  quantity?: number
  /** Default: a fresh UUID, returned as `requestId`. */
  requestId?: string
  /** 1..86400; default 300. A capture after this is `hold_expired`. */
  ttlSeconds?: number
  metadata?: JsonObject
}

export interface CaptureOptions {
  orgId: string
  requestId: string
  /** Units to charge, 0..held quantity; default all. The rest is released. */
  quantity?: number
  result?: CallRecord
}

export interface ReleaseOptions {
  orgId: string
  requestId: string
  /** Whether our backend failed (recorded for stats); default true. */
  backendError?: boolean
  result?: CallRecord
}

export interface RefundOptions {
  orgId: string
  requestId: string
  reason: string
}

export interface WithCreditsOptions extends Omit<ReserveOptions, 'metadata'> {
  metadata?: JsonObject
  /** Recorded as the request's backend_endpoint: a name (`summarise`), never a URL — members can read it. */
  backendEndpoint?: string
}

/** What the `withCredits` callback gets. */
export interface HoldContext {
  requestId: string
  /** The reserve answer (reserved credits, hold expiry). */
  hold: ChargeResult
  /** Charge fewer units than reserved (0..quantity); the rest is released at capture. */
  setQuantity(units: number): void
  /** JSON recorded as the request's output summary (≤ 8 KiB). */
  setOutput(output: Json): void
}

export interface TollgateServer {
  grant(options: GrantOptions): Promise<GrantResult>
  activateGrant(ref: GrantRef): Promise<GrantResult>
  voidGrant(ref: GrantRef): Promise<GrantResult>
  grantOnboarding(options: { userId: string; amount: number; expiresAt?: Date | string }): Promise<GrantResult>
  /** set_overage_limit: how far below zero the org's `available` may go (idempotent). */
  setOverageLimit(options: OverageLimitOptions): Promise<OverageLimitResult>
  reserve(options: ReserveOptions): Promise<ChargeResult>
  capture(options: CaptureOptions): Promise<ChargeResult>
  release(options: ReleaseOptions): Promise<ChargeResult>
  refund(options: RefundOptions): Promise<ChargeResult>
  /**
   * Reserve, run `fn`, then settle: capture on success (latency recorded); on a throw, capture
   * if the error is the user's fault (`UserError` / `isUserError`), else release with
   * backend_error = true (nothing charged). fn's error is rethrown after settling.
   * `fn` runs at most once per request id: an id another call holds is `RequestInProgressError`,
   * an id already settled is `RequestAlreadySettledError` (its `charge` is the settled outcome).
   */
  withCredits<T>(options: WithCreditsOptions, fn: (hold: HoldContext) => T | Promise<T>): Promise<{ result: T; charge: ChargeResult }>
}

/** Metadata key withCredits adds to its hold: a random id per call, to recognise its own hold. */
const attemptKey = 'withcredits_attempt'

const iso = (value: Date | string | undefined): string | undefined => (value instanceof Date ? value.toISOString() : value)

function errorCodeOf(error: unknown): string {
  if (error instanceof UserError) return error.code
  if (error instanceof TollgateError) return error.key
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string' && code !== '') return code
  return error instanceof Error ? error.name : 'error'
}

const now = (): number => globalThis.performance.now()

export function createTollgateServer(serviceSupabase: AnySupabaseClient, options: TollgateServerOptions = {}): TollgateServer {
  const db = asTollgate(serviceSupabase)
  const policy = retryPolicy(options)
  const noRetry = { ...policy, retries: 0 }
  const newRequestId = options.newRequestId ?? defaultRequestId
  const userFault = (error: unknown): boolean => error instanceof UserError || (options.isUserError?.(error) ?? false)
  const onSettleError =
    options.onSettleError ??
    ((error: unknown, info: { orgId: string; requestId: string; action: string }) => {
      const e = error instanceof TollgateError ? { key: error.key, code: error.code, status: error.status } : { error: String(error) }
      console.error(JSON.stringify({ level: 'error', msg: 'tollgate_settle_failed', org_id: info.orgId, request_id: info.requestId, action: info.action, ...e }))
    })

  // The reserve answer as the RPC gives it (snake_case): withCredits turns a replay into an error
  // whose details are that answer.
  const reserveRaw = ({ orgId, userId, operation, quantity, requestId = newRequestId(), ttlSeconds, metadata }: ReserveOptions) => {
    const args = {
      p_org_id: orgId,
      // SQL default is none, but null is accepted ("no user"); the generator types it as required text.
      p_user_id: (userId ?? null) as string,
      p_operation: operation,
      p_request_id: requestId,
      p_quantity: quantity,
      p_ttl_seconds: ttlSeconds,
      p_metadata: metadata,
    }
    return runWithRetry('reserve_credits', () => db.rpc('reserve_credits', args), policy)
  }

  // Whether the open hold of `requestId` carries this call's attempt id: a reserve retried after a
  // lost answer replays its own hold, which is ours to run; anyone else's is not.
  const holdIsOurs = async (orgId: string, requestId: string, attempt: string): Promise<boolean> => {
    const row = await runWithRetry<{ metadata: Json }>(
      'credit_requests',
      () => withoutBuiltinRetry(db.from('credit_requests').select('metadata').eq('org_id', orgId).eq('request_id', requestId).maybeSingle()),
      policy,
    )
    const metadata = row?.metadata
    return metadata !== null && typeof metadata === 'object' && !Array.isArray(metadata) && metadata[attemptKey] === attempt
  }

  const server: TollgateServer = {
    async grant({ orgId, amount, source, externalRef, expiresAt, metadata, priority, pending, effectiveAt, operations }) {
      const args = {
        p_org_id: orgId,
        p_amount: amount,
        p_source: source,
        p_external_ref: externalRef,
        p_expires_at: iso(expiresAt),
        p_metadata: metadata,
        p_priority: priority,
        p_pending: pending,
        p_effective_at: iso(effectiveAt),
        p_operations: operations,
      }
      const data = await runWithRetry('grant_credits', () => db.rpc('grant_credits', args), externalRef === undefined ? noRetry : policy)
      return toGrantResult(data)
    },

    async activateGrant({ orgId, source, externalRef }) {
      const args = { p_org_id: orgId, p_source: source, p_external_ref: externalRef }
      return toGrantResult(await runWithRetry('activate_credit_grant', () => db.rpc('activate_credit_grant', args), policy))
    },

    async voidGrant({ orgId, source, externalRef }) {
      const args = { p_org_id: orgId, p_source: source, p_external_ref: externalRef }
      return toGrantResult(await runWithRetry('void_credit_grant', () => db.rpc('void_credit_grant', args), policy))
    },

    async grantOnboarding({ userId, amount, expiresAt }) {
      const args = { p_user_id: userId, p_amount: amount, p_expires_at: iso(expiresAt) }
      return toGrantResult(await runWithRetry('grant_onboarding_credits', () => db.rpc('grant_onboarding_credits', args), policy))
    },

    async setOverageLimit({ orgId, limit }) {
      const args = { p_org_id: orgId, p_limit: limit }
      return toOverageLimitResult(await runWithRetry('set_overage_limit', () => db.rpc('set_overage_limit', args), policy))
    },

    async reserve(options) {
      return toChargeResult(await reserveRaw(options))
    },

    async capture({ orgId, requestId, quantity, result }) {
      const args = { p_org_id: orgId, p_request_id: requestId, p_quantity: quantity, p_result: toResultJson(result) }
      return toChargeResult(await runWithRetry('capture_credits', () => db.rpc('capture_credits', args), policy))
    },

    async release({ orgId, requestId, backendError, result }) {
      const args = { p_org_id: orgId, p_request_id: requestId, p_backend_error: backendError, p_result: toResultJson(result) }
      return toChargeResult(await runWithRetry('release_credits', () => db.rpc('release_credits', args), policy))
    },

    async refund({ orgId, requestId, reason }) {
      const args = { p_org_id: orgId, p_request_id: requestId, p_reason: reason }
      return toChargeResult(await runWithRetry('refund_credits', () => db.rpc('refund_credits', args), policy))
    },

    async withCredits<T>(options: WithCreditsOptions, fn: (hold: HoldContext) => T | Promise<T>) {
      const requestId = options.requestId ?? newRequestId()
      const { orgId, backendEndpoint } = options
      const attempt = defaultRequestId()
      const raw = await reserveRaw({ ...options, requestId, metadata: { ...options.metadata, [attemptKey]: attempt } })
      const hold = toChargeResult(raw)
      if (hold.replayed) {
        // This request id was reserved before: run fn only if that hold is this call's own (a
        // retried reserve); otherwise it is another call's, running or settled.
        const details = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {}
        if (hold.status !== 'held') {
          throw new RequestAlreadySettledError({
            key: 'request_already_settled', code: 'PT409', status: 409, details,
            hint: 'this request id already ran: see `charge` for its outcome; use a new id for new work',
          })
        }
        if (!(await holdIsOurs(orgId, requestId, attempt))) {
          throw new RequestInProgressError({
            key: 'request_in_progress', code: 'PT409', status: 409, details,
            hint: 'another call is running this request id: retry later with the same id for its outcome',
          })
        }
      }
      let quantity: number | undefined
      let output: Json | undefined
      const context: HoldContext = {
        requestId,
        hold,
        setQuantity(units) {
          if (!Number.isInteger(units) || units < 0 || units > hold.quantity) {
            throw invalid('invalid_quantity', { quantity: units, min: 0, max: hold.quantity }, 'capture at most the held quantity')
          }
          quantity = units
        },
        setOutput(value) {
          output = value
        },
      }

      const started = now()
      let result: T
      try {
        result = await fn(context)
      } catch (error) {
        const record: CallRecord = { latencyMs: Math.round(now() - started), backendEndpoint, errorCode: errorCodeOf(error), output }
        const userFailed = userFault(error)
        try {
          // The work ran and the user caused the failure: they pay. Our failure: they never do.
          if (userFailed) await server.capture({ orgId, requestId, quantity, result: { ...record, success: false } })
          else await server.release({ orgId, requestId, backendError: true, result: record })
        } catch (settleError) {
          onSettleError(settleError, { orgId, requestId, action: userFailed ? 'capture' : 'release' })
        }
        throw error
      }
      const charge = await server.capture({
        orgId,
        requestId,
        quantity,
        result: { latencyMs: Math.round(now() - started), backendEndpoint, success: true, output },
      })
      return { result, charge }
    },
  }
  return server
}
