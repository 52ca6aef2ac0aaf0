// Results of the client, in camelCase. The RPCs answer snake_case JSON (typed `Json` by the
// generator, because they return jsonb); the mappers below are the one place that knows both
// spellings. Credits are integers (JSON numbers; bigint on the server, exact up to 2^53).

import type { Json, Tables } from './database.types.ts'

export type { Json }

/** A JSON object, as `metadata` and `output` take. */
export type JsonObject = { [key: string]: Json | undefined }

export type RequestStatus = 'charged' | 'held' | 'captured' | 'released' | 'expired' | 'refunded'
/** scheduled: starts at `effectiveAt`, not spendable and not in `available` until then. */
export type GrantStatus = 'pending' | 'scheduled' | 'active' | 'expired' | 'voided'
export type LedgerKind = 'grant' | 'charge' | 'hold' | 'capture' | 'release' | 'refund' | 'expire' | 'adjustment'
export type OrgRole = 'owner' | 'admin' | 'member'

export interface Balance {
  orgId: string
  /** Spendable credits. */
  available: number
  /** Credits reserved by open holds (not spendable). */
  held: number
  /** When the next active grant expires (ISO timestamp), or null. */
  nextExpiryAt: string | null
  /** Credits that expire then, or null. */
  nextExpiryAmount: number | null
  /** Credits of grants that start later (not in `available` until they start). */
  scheduled: number
  /** When the next scheduled grant starts (ISO timestamp), or null. */
  nextStartAt: string | null
  /** Credits that start then, or null. */
  nextStartAmount: number | null
  /** Credits spent beyond the grants (debt, >= 0): `available` is net of it, so it may be negative. */
  overage: number
  /** How far below zero `available` may go (`setOverageLimit`; 0 by default). */
  overageLimit: number
  /**
   * Remaining credits of active grants by the operations they may be spent on: the unscoped
   * group (`operations: null`, any operation) first, then each operation set. `available` is
   * their sum minus `overage`.
   */
  scopes: CreditScope[]
}

/** Credits of active grants limited to one set of operations (`null`: any operation). */
export interface CreditScope {
  /** Sorted operation names, or null for grants spendable on any operation. */
  operations: string[] | null
  available: number
}

/** What consume, reserve, capture, release and refund answer (first time and on replay). */
export interface ChargeResult {
  requestId: string
  orgId: string
  operation: string
  quantity: number
  status: RequestStatus
  /** Credits charged (0 for an open or released hold). */
  charged: number
  /** Credits a hold reserved; 0 for a plain charge. */
  reserved: number
  /** Credits refunded; 0 unless refunded. */
  refunded: number
  /** A hold's expiry (ISO timestamp); null for a plain charge. */
  holdExpiresAt: string | null
  /** The org's `available` before and after (net of its debt: negative while in overage). */
  balanceBefore: number
  balanceAfter: number
  /** Credits of this request taken as debt (beyond the grants, within the overage limit); 0 when none. */
  overage: number
  /** True when this request id had already been processed: the first answer, nothing charged again. */
  replayed: boolean
}

/** One item of a `consumeBatch` answer: the item's charge result, or the error that item met (per-item mode only). */
export type BatchItemResult = ({ ok: true } & ChargeResult) | { ok: false; requestId: string; operation: string; error: BatchItemError }

/** Why one item of a per-item batch was not charged: the key, SQLSTATE and details a single call would have raised. */
export interface BatchItemError {
  key: string
  code: string
  details: Record<string, unknown>
}

/** What consume_credits_batch answers. */
export interface BatchResult {
  orgId: string
  /** `results[i]` answers `items[i]`. */
  results: BatchItemResult[]
  /** Credits this call charged (replayed items count nothing). */
  chargedTotal: number
  /** The org's spendable balance after the batch. */
  balanceAfter: number
}

export interface UsageStats {
  periodDays: number
  totalCalls: number
  successfulCalls: number
  failedCalls: number
  /** Net of refunds. */
  totalCreditsUsed: number
  avgLatencyMs: number
  topOperations: Array<{ operation: string; calls: number; credits: number }>
}

/** get_daily_usage: usage per UTC day and operation (only days and operations with calls). */
export interface DailyUsage {
  periodDays: number
  /** First and last day of the period (YYYY-MM-DD, UTC); `to` is today. */
  from: string
  to: string
  days: Array<{
    day: string
    operation: string
    calls: number
    successfulCalls: number
    failedCalls: number
    /** Net of refunds. */
    creditsUsed: number
  }>
}

export interface LedgerEntry {
  id: number
  orgId: string
  kind: LedgerKind
  /** Signed change of `available`. */
  amount: number
  /** Signed change of `held`. */
  heldDelta: number
  balanceAfter: number
  heldAfter: number
  /** Signed change of the org's debt (`overage`): + when a charge runs into overage, − when credits pay it back. */
  overageDelta: number
  overageAfter: number
  requestId: string | null
  grantId: string | null
  actorUserId: string | null
  actorRole: string
  metadata: Json
  createdAt: string
}

export interface LedgerPage {
  /** Newest first. */
  entries: LedgerEntry[]
  /** Pass as `before` for the next (older) page; null on the last page. */
  nextCursor: number | null
}

export interface Grant {
  id: string
  orgId: string
  amount: number
  remaining: number
  source: string
  externalRef: string | null
  status: GrantStatus
  priority: number
  expiresAt: string | null
  /** When the grant starts, if it was given a start (a scheduled grant is credited then). */
  effectiveAt: string | null
  /** The operations it may be spent on (sorted), or null for any operation. */
  operations: string[] | null
  /** Credits of the grant that paid the org's debt when it was credited (not in `remaining`). */
  overageRepaid: number
  expiredAmount: number
  metadata: Json
  createdAt: string
  pendingSince: string | null
  activatedAt: string | null
  expiredAt: string | null
}

/** What grant, activateGrant, voidGrant and grantOnboarding answer. */
export interface GrantResult {
  grantId: string
  orgId: string
  amount: number
  remaining: number
  status: GrantStatus
  source: string
  externalRef: string | null
  priority: number
  expiresAt: string | null
  /** When the grant starts, if it was given a start. */
  effectiveAt: string | null
  /** The operations it may be spent on (sorted, de-duplicated), or null for any operation. */
  operations: string[] | null
  /** The org's spendable balance after the call (net of its debt). */
  balanceAfter: number
  /** True when this (org, source, external ref) was already granted: nothing added again. */
  replayed: boolean
}

/** What setOverageLimit answers: the org's limit, debt and balance after the call. */
export interface OverageLimitResult {
  orgId: string
  overageLimit: number
  /** The current debt; it may exceed a limit set below it (no new overage until it is lower). */
  overage: number
  /** Spendable credits net of the debt (negative while in overage). */
  available: number
  /** Whether the org can still spend on something, overage included (the gate flag). */
  hasUsageCredits: boolean
}

export interface Org {
  orgId: string
  name: string
  role: OrgRole
  isPersonal: boolean
  hasUsageCredits: boolean
}

// Mappers ------------------------------------------------------------------------------------

type Row = Record<string, unknown>

const asRow = (data: unknown): Row => (data !== null && typeof data === 'object' ? (data as Row) : {})
const num = (value: unknown): number => (typeof value === 'number' ? value : Number(value ?? 0))
const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value))
const strOrNull = (value: unknown): string | null => (value === null || value === undefined ? null : String(value))
const operationsOf = (value: unknown): string[] | null => (Array.isArray(value) ? value.map(String) : null)

export function toBalance(data: unknown): Balance {
  const r = asRow(data)
  return {
    orgId: String(r.org_id),
    available: num(r.available),
    held: num(r.held),
    nextExpiryAt: strOrNull(r.next_expiry_at),
    nextExpiryAmount: numOrNull(r.next_expiry_amount),
    scheduled: num(r.scheduled),
    nextStartAt: strOrNull(r.next_start_at),
    nextStartAmount: numOrNull(r.next_start_amount),
    overage: num(r.overage),
    overageLimit: num(r.overage_limit),
    scopes: (Array.isArray(r.scopes) ? (r.scopes as unknown[]) : []).map((scope) => {
      const s = asRow(scope)
      return { operations: operationsOf(s.operations), available: num(s.available) }
    }),
  }
}

export function toChargeResult(data: unknown): ChargeResult {
  const r = asRow(data)
  return {
    requestId: String(r.request_id),
    orgId: String(r.org_id),
    operation: String(r.operation),
    quantity: num(r.quantity),
    status: r.status as RequestStatus,
    charged: num(r.charged),
    reserved: num(r.reserved),
    refunded: num(r.refunded),
    holdExpiresAt: strOrNull(r.hold_expires_at),
    balanceBefore: num(r.balance_before),
    balanceAfter: num(r.balance_after),
    overage: num(r.overage),
    replayed: r.replayed === true,
  }
}

export function toBatchResult(data: unknown): BatchResult {
  const r = asRow(data)
  const results = Array.isArray(r.results) ? (r.results as unknown[]) : []
  return {
    orgId: String(r.org_id),
    results: results.map((item): BatchItemResult => {
      const i = asRow(item)
      if (typeof i.error === 'string') {
        const details = asRow(i.details)
        return { ok: false, requestId: String(i.request_id), operation: String(i.operation), error: { key: i.error, code: String(i.sqlstate), details } }
      }
      return { ok: true, ...toChargeResult(i) }
    }),
    chargedTotal: num(r.charged_total),
    balanceAfter: num(r.balance_after),
  }
}

export function toUsageStats(data: unknown): UsageStats {
  const r = asRow(data)
  const top = Array.isArray(r.top_operations) ? (r.top_operations as Row[]) : []
  return {
    periodDays: num(r.period_days),
    totalCalls: num(r.total_calls),
    successfulCalls: num(r.successful_calls),
    failedCalls: num(r.failed_calls),
    totalCreditsUsed: num(r.total_credits_used),
    avgLatencyMs: num(r.avg_latency_ms),
    topOperations: top.map((t) => ({ operation: String(t.operation), calls: num(t.calls), credits: num(t.credits) })),
  }
}

export function toDailyUsage(data: unknown): DailyUsage {
  const r = asRow(data)
  const days = Array.isArray(r.days) ? (r.days as Row[]) : []
  return {
    periodDays: num(r.period_days),
    from: String(r.from),
    to: String(r.to),
    days: days.map((d) => ({
      day: String(d.day),
      operation: String(d.operation),
      calls: num(d.calls),
      successfulCalls: num(d.successful_calls),
      failedCalls: num(d.failed_calls),
      creditsUsed: num(d.credits_used),
    })),
  }
}

export function toLedgerEntry(r: Tables<'credit_ledger'>): LedgerEntry {
  return {
    id: r.id,
    orgId: r.org_id,
    kind: r.kind as LedgerKind,
    amount: r.amount,
    heldDelta: r.held_delta,
    balanceAfter: r.balance_after,
    heldAfter: r.held_after,
    overageDelta: r.overage_delta,
    overageAfter: r.overage_after,
    requestId: r.request_id,
    grantId: r.grant_id,
    actorUserId: r.actor_user_id,
    actorRole: r.actor_role,
    metadata: r.metadata,
    createdAt: r.created_at,
  }
}

export function toGrant(r: Tables<'credit_grants'>): Grant {
  return {
    id: r.id,
    orgId: r.org_id,
    amount: r.amount,
    remaining: r.remaining,
    source: r.source,
    externalRef: r.external_ref,
    status: r.status as GrantStatus,
    priority: r.priority,
    expiresAt: r.expires_at,
    effectiveAt: r.effective_at,
    operations: r.operations,
    overageRepaid: r.overage_repaid,
    expiredAmount: r.expired_amount,
    metadata: r.metadata,
    createdAt: r.created_at,
    pendingSince: r.pending_since,
    activatedAt: r.activated_at,
    expiredAt: r.expired_at,
  }
}

export function toGrantResult(data: unknown): GrantResult {
  const r = asRow(data)
  return {
    grantId: String(r.grant_id),
    orgId: String(r.org_id),
    amount: num(r.amount),
    remaining: num(r.remaining),
    status: r.status as GrantStatus,
    source: String(r.source),
    externalRef: strOrNull(r.external_ref),
    priority: num(r.priority),
    expiresAt: strOrNull(r.expires_at),
    effectiveAt: strOrNull(r.effective_at),
    operations: operationsOf(r.operations),
    balanceAfter: num(r.balance_after),
    replayed: r.replayed === true,
  }
}

export function toOverageLimitResult(data: unknown): OverageLimitResult {
  const r = asRow(data)
  return {
    orgId: String(r.org_id),
    overageLimit: num(r.overage_limit),
    overage: num(r.overage),
    available: num(r.available),
    hasUsageCredits: r.has_usage_credits === true,
  }
}

export function toOrg(r: { org_id: string; name: string; role: string; is_personal: boolean; has_usage_credits: boolean }): Org {
  return { orgId: r.org_id, name: r.name, role: r.role as OrgRole, isPersonal: r.is_personal, hasUsageCredits: r.has_usage_credits }
}
