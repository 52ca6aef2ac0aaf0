// Typed errors, mapped from the SQLSTATE `code` and the snake_case key in `message` — never from
// prose, which may change. The error contract is in DESIGN.md ("Error contract") and the root
// README ("Errors"); every class below names the keys it stands for.

import { toChargeResult, type ChargeResult } from './types.ts'

/** The fields of a supabase-js `PostgrestError` (or any `{message, code, details, hint}`). */
export interface PostgrestErrorLike {
  message?: string | null
  code?: string | null
  details?: string | null
  hint?: string | null
}

const KEY = /^[a-z][a-z0-9_]*$/

/** Base class: every error the client throws for a failed call is one of these. */
export class TollgateError extends Error {
  /** Stable snake_case key (`insufficient_credits`, `hold_expired`, `network_error`, ...). */
  readonly key: string
  /** SQLSTATE (`PT402`, `22023`, `42501`), PostgREST code (`PGRST202`) or `''` when there was no answer. */
  readonly code: string
  /** HTTP status of the answer; 0 when no answer arrived (fetch failed). */
  readonly status: number
  /** `details` parsed from JSON (the numbers); `{}` when absent or not a JSON object. */
  readonly details: Record<string, unknown>
  /** `details` as received, for logs (PostgreSQL's own errors send prose here). */
  readonly rawDetails: string | null
  /** For humans; never branch on it. */
  readonly hint: string | null
  /** True when repeating the same call (same request id) may succeed: network failures and 502/503/504. */
  readonly retryable: boolean

  constructor(init: {
    key: string
    code: string
    status: number
    details?: Record<string, unknown>
    rawDetails?: string | null
    hint?: string | null
    retryable?: boolean
    cause?: unknown
  }) {
    // The key is the message, as on the wire: code that logs `err.message` logs something stable.
    super(init.key, init.cause === undefined ? undefined : { cause: init.cause })
    this.name = new.target.name
    this.key = init.key
    this.code = init.code
    this.status = init.status
    this.details = init.details ?? {}
    this.rawDetails = init.rawDetails ?? null
    this.hint = init.hint ?? null
    this.retryable = init.retryable ?? false
  }
}

/**
 * PT402 `insufficient_credits`: nothing was written. The call needed more than
 * `available + overageLimit`. `required` and `available` are NaN when the answer does not carry
 * them; `overage` and `overageLimit` are 0 then (an org with neither a debt nor a limit).
 */
export class InsufficientCreditsError extends TollgateError {
  /** Credits the call needed (price × quantity). */
  readonly required: number
  /**
   * Credits this operation could use at the time: the remaining credits of the grants that
   * cover it, minus the org's debt (`overage`); negative while the debt is larger.
   */
  readonly available: number
  /** The org's debt at the time (credits already spent beyond its grants). */
  readonly overage: number
  /** How far below zero the org may go (its overage limit). */
  readonly overageLimit: number
  constructor(init: ConstructorParameters<typeof TollgateError>[0]) {
    super(init)
    const figure = (key: string): number => Number(this.details[key] ?? Number.NaN)
    this.required = figure('required')
    this.available = figure('available')
    this.overage = Number(this.details.overage ?? 0)
    this.overageLimit = Number(this.details.overage_limit ?? 0)
  }
}

/** PT409 with a key this client does not know yet; the parent of the conflict classes below. */
export class ConflictError extends TollgateError {}

/** PT409 `idempotency_conflict`: a request id (or payment reference) reused with other parameters. */
export class IdempotencyConflictError extends ConflictError {}

/** PT409 `hold_not_active`, `hold_expired`, `not_a_hold`, `not_refundable`, `grant_not_pending`: wrong state. */
export class HoldStateError extends ConflictError {}

/**
 * PT409 `request_in_progress`: another call holds this request id and has not settled it yet;
 * nothing ran for this call. The same id later gives that call's outcome
 * (`RequestAlreadySettledError`).
 */
export class RequestInProgressError extends ConflictError {}

/**
 * PT409 `request_already_settled`: this request id already ran and was settled; nothing ran again
 * and nothing was charged again. `charge` is the settled outcome (the first call's `ChargeResult`,
 * `replayed: true`): `status` `captured` (charged `charge.charged`), `released` or `expired`
 * (nothing charged: use a new request id to try again) or `refunded`.
 */
export class RequestAlreadySettledError extends ConflictError {
  readonly charge: ChargeResult
  constructor(init: ConstructorParameters<typeof TollgateError>[0]) {
    super(init)
    this.charge = toChargeResult(this.details)
  }
}

/** PT404: an unknown thing (`unknown_grant`, `unknown_user`, `unknown_workflow`, ...); parent of the three below. */
export class NotFoundError extends TollgateError {}

/** PT404 `unknown_operation`: no active price for the operation. */
export class UnknownOperationError extends NotFoundError {}

/** PT404 `unknown_request`: no request with this id in the org. */
export class UnknownRequestError extends NotFoundError {}

/** PT404 `unknown_org`: no such org (or the caller has no personal org). */
export class UnknownOrgError extends NotFoundError {}

/** 42501 `forbidden` (and any RPC the role may not call), or a rejected JWT (401). */
export class ForbiddenError extends TollgateError {}

/** 42501 `not_a_member`: the caller (or `userId`) does not belong to the org. */
export class NotAMemberError extends ForbiddenError {}

/** 22023 `invalid_*` and `url_not_allowed`, or a value PostgreSQL refused for its type (22P02, 22003, 22P05, 22021). */
export class InvalidInputError extends TollgateError {}

/** No answer (fetch failed), or 502/503/504 / a code-less 5xx from the gateway. Retried by the client. */
export class NetworkError extends TollgateError {}

/**
 * The keys that have a class of their own, each with the SQLSTATE it comes with; any other key
 * is classed by its SQLSTATE alone (a PT409 key this client does not know is a `ConflictError`).
 * tests/error-catalog.test.ts holds this map to the server's error catalog.
 */
export const errorClassesByKey: ReadonlyMap<string, { readonly code: string; readonly errorClass: typeof TollgateError }> = new Map(
  ([
    ['insufficient_credits', 'PT402', InsufficientCreditsError],
    ['idempotency_conflict', 'PT409', IdempotencyConflictError],
    ['hold_not_active', 'PT409', HoldStateError],
    ['hold_expired', 'PT409', HoldStateError],
    ['not_a_hold', 'PT409', HoldStateError],
    ['not_refundable', 'PT409', HoldStateError],
    ['grant_not_pending', 'PT409', HoldStateError],
    ['request_in_progress', 'PT409', RequestInProgressError],
    ['request_already_settled', 'PT409', RequestAlreadySettledError],
    ['unknown_operation', 'PT404', UnknownOperationError],
    ['unknown_request', 'PT404', UnknownRequestError],
    ['unknown_org', 'PT404', UnknownOrgError],
    ['not_a_member', '42501', NotAMemberError],
  ] as const).map(([key, code, errorClass]) => [key, { code, errorClass }]),
)

// Any other key, by SQLSTATE: its class, and the key it gets when `message` is prose.
const CODE_CLASSES = new Map<string, { errorClass: typeof TollgateError; fallbackKey: string }>([
  ['PT402', { errorClass: TollgateError, fallbackKey: 'payment_required' }],
  ['PT409', { errorClass: ConflictError, fallbackKey: 'conflict' }],
  ['PT404', { errorClass: NotFoundError, fallbackKey: 'not_found' }],
  // A plain privilege refusal carries prose ("permission denied for function ..."): key `forbidden`.
  ['42501', { errorClass: ForbiddenError, fallbackKey: 'forbidden' }],
  ['22023', { errorClass: InvalidInputError, fallbackKey: 'invalid_parameter_value' }],
])

// PostgreSQL refuses these before an RPC body runs; the keys are PostgreSQL's condition names.
const TYPE_ERROR_KEYS: Record<string, string> = {
  '22P02': 'invalid_text_representation',
  '22003': 'numeric_value_out_of_range',
  '22P05': 'untranslatable_character',
  '22021': 'character_not_in_repertoire',
}

const RETRYABLE_STATUS = new Set([502, 503, 504])

function parseDetails(details: string | null | undefined): Record<string, unknown> {
  if (!details) return {}
  try {
    const parsed: unknown = JSON.parse(details)
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

/**
 * Maps a supabase-js error and the HTTP status of its answer to a typed error.
 * Branches on `code` (SQLSTATE / PostgREST code) and on the snake_case key in `message` only.
 */
export function toTollgateError(error: PostgrestErrorLike, status: number): TollgateError {
  const code = error.code ?? ''
  const message = error.message ?? ''
  const ownKey = KEY.test(message) ? message : null
  const hint = error.hint || null
  const base = { code, status, hint, details: parseDetails(error.details), rawDetails: error.details || null, cause: error }

  // No answer, or the gateway/proxy answered instead of PostgREST: the call may or may not have
  // run, so only a retry of the same call (same request id or reference) is safe.
  if (status === 0 || RETRYABLE_STATUS.has(status) || (status >= 500 && code === '')) {
    return new NetworkError({ ...base, key: 'network_error', retryable: true })
  }

  const keyed = ownKey === null ? undefined : errorClassesByKey.get(ownKey)
  if (ownKey !== null && keyed?.code === code) return new keyed.errorClass({ ...base, key: ownKey })
  const byCode = CODE_CLASSES.get(code)
  if (byCode) return new byCode.errorClass({ ...base, key: ownKey ?? byCode.fallbackKey })

  switch (code) {
    case '22P02':
    case '22003':
    case '22P05':
    case '22021':
      return new InvalidInputError({ ...base, key: TYPE_ERROR_KEYS[code]! })
    case 'PGRST202':
      // No RPC with these parameter names: the database lacks the migration this client expects.
      return new TollgateError({ ...base, key: 'unknown_rpc' })
    case 'PGRST301':
    case 'PGRST302':
    case 'PGRST303':
      return new ForbiddenError({ ...base, key: 'invalid_jwt' })
  }
  if (status === 401 || status === 403) return new ForbiddenError({ ...base, key: ownKey ?? 'forbidden' })
  return new TollgateError({ ...base, key: ownKey ?? 'unexpected_error' })
}
