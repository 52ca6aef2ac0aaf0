// @tollgate/client — the user half: calls a signed-in user may make, through the app's own
// SupabaseClient (its session, its fetch, its realtime transport). No Node-only imports: this
// file runs in Node, Deno and browsers. Trusted code uses `@tollgate/client/server`.

import { invalid, asTollgate, defaultRequestId, listMyOrgs, resolveOrg, withoutBuiltinRetry, type AnySupabaseClient } from './internal.ts'
import { retryPolicy, runWithRetry, type RetryOptions } from './retry.ts'
import {
  toBalance,
  toBatchResult,
  toChargeResult,
  toDailyUsage,
  toGrant,
  toLedgerEntry,
  toUsageStats,
  type Balance,
  type BatchResult,
  type ChargeResult,
  type DailyUsage,
  type Grant,
  type GrantStatus,
  type JsonObject,
  type LedgerPage,
  type Org,
  type UsageStats,
} from './types.ts'

export * from './errors.ts'
export * from './types.ts'
export { UserError, isUserError } from './user-error.ts'
export type { Database } from './database.types.ts'
export type { RetryOptions, RetryEvent } from './retry.ts'
export type { AnySupabaseClient } from './internal.ts'

export interface TollgateClientOptions extends RetryOptions {
  /** Request ids for calls that do not pass one. Default `crypto.randomUUID()`. */
  newRequestId?: () => string
}

export interface ConsumeOptions {
  /** A priced operation (credit_prices.operation). */
  operation: string
  /** Units to charge; default 1 (1..1,000,000). */
  quantity?: number
  /** Default: the caller's personal org. */
  orgId?: string
  /** A JSON object (≤ 8 KiB) recorded on the request. */
  metadata?: JsonObject
  /**
   * Idempotency key (1..200 chars): the same id is charged at most once. Default: a fresh
   * UUID, returned as `requestId` — keep it if you may retry the call yourself later.
   */
  requestId?: string
}

export interface ConsumeBatchItem {
  /** A priced operation (credit_prices.operation). */
  operation: string
  /** Units to charge; default 1 (1..1,000,000). */
  quantity?: number
  /** A JSON object (≤ 8 KiB) recorded on the item's request. */
  metadata?: JsonObject
  /** The item's idempotency key (1..200 chars). Default: a fresh UUID, returned in its result. */
  requestId?: string
}

export interface ConsumeBatchOptions {
  /** 1..1000 items, charged in this order. */
  items: ConsumeBatchItem[]
  /** Default: the caller's personal org. */
  orgId?: string
  /**
   * true (default): all or none; an item's error fails the call (`details.item` names it) and
   * running out of credits is one `InsufficientCreditsError` for the batch. false: each item is
   * charged or answers its own error in `results`.
   */
  atomic?: boolean
}

export interface LedgerOptions {
  orgId?: string
  /** Entries per page, 1..1000; default 50. */
  limit?: number
  /** `nextCursor` of the previous page; omit for the newest page. */
  before?: number | null
}

export interface GrantsOptions {
  orgId?: string
  /** Only grants in these states; default all. */
  status?: GrantStatus | GrantStatus[]
}

export interface TollgateClient {
  /** get_credit_balance: spendable and held credits, next expiry. */
  balance(orgId?: string): Promise<Balance>
  /** consume_credits: charge price × quantity once per request id. */
  consume(options: ConsumeOptions): Promise<ChargeResult>
  /** consume_credits_batch: charge up to 1000 items in one call, each once per its request id. */
  consumeBatch(options: ConsumeBatchOptions): Promise<BatchResult>
  /** get_usage_stats over the last `days` (1..366, default 30). */
  usageStats(options?: { days?: number; orgId?: string }): Promise<UsageStats>
  /** get_daily_usage: calls and credits per UTC day and operation over the last `days` calendar days (1..366, default 30). */
  dailyUsage(options?: { days?: number; orgId?: string }): Promise<DailyUsage>
  /** One page of the org's ledger, newest first (keyset on id). */
  ledger(options?: LedgerOptions): Promise<LedgerPage>
  /** The org's grants, newest first. */
  grants(options?: GrantsOptions): Promise<Grant[]>
  /** list_my_orgs: the caller's orgs and roles, personal org first. */
  orgs(): Promise<Org[]>
}

/**
 * Wraps a SupabaseClient that carries a user's session. Every call is retried on network
 * failures and 502/503/504 with the same parameters — the same request id for `consume`, the
 * same item ids for `consumeBatch`, so a retry never charges twice — and fails with a typed
 * `TollgateError` otherwise.
 */
export function createTollgateClient(supabase: AnySupabaseClient, options: TollgateClientOptions = {}): TollgateClient {
  const db = asTollgate(supabase)
  const policy = retryPolicy(options)
  const newRequestId = options.newRequestId ?? defaultRequestId

  return {
    async balance(orgId) {
      const data = await runWithRetry('get_credit_balance', () => db.rpc('get_credit_balance', { p_org_id: orgId }), policy)
      return toBalance(data)
    },

    async consume({ operation, quantity, orgId, metadata, requestId = newRequestId() }) {
      const args = { p_operation: operation, p_request_id: requestId, p_quantity: quantity, p_org_id: orgId, p_metadata: metadata }
      const data = await runWithRetry('consume_credits', () => db.rpc('consume_credits', args), policy)
      return toChargeResult(data)
    },

    async consumeBatch({ items, orgId, atomic }) {
      // Ids are fixed before the first attempt, so a retry sends the same ones and charges nothing twice.
      const p_items = items.map(({ operation, quantity, metadata, requestId = newRequestId() }) => ({ operation, request_id: requestId, quantity, metadata }))
      const args = { p_items, p_org_id: orgId, p_atomic: atomic }
      const data = await runWithRetry('consume_credits_batch', () => db.rpc('consume_credits_batch', args), policy)
      return toBatchResult(data)
    },

    async usageStats({ days, orgId } = {}) {
      const data = await runWithRetry('get_usage_stats', () => db.rpc('get_usage_stats', { p_days: days, p_org_id: orgId }), policy)
      return toUsageStats(data)
    },

    async dailyUsage({ days, orgId } = {}) {
      const data = await runWithRetry('get_daily_usage', () => db.rpc('get_daily_usage', { p_days: days, p_org_id: orgId }), policy)
      return toDailyUsage(data)
    },

    async ledger({ orgId, limit = 50, before = null } = {}) {
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalid('invalid_limit', { limit, min: 1, max: 1000 }, 'limit is 1..1000')
      const org = await resolveOrg(db, policy, orgId)
      // One row more than asked tells whether an older page exists, without an empty last page.
      const rows = await runWithRetry(
        'credit_ledger',
        () => {
          let query = db.from('credit_ledger').select('*').eq('org_id', org)
          if (before !== null) query = query.lt('id', before)
          return withoutBuiltinRetry(query.order('id', { ascending: false }).limit(limit + 1))
        },
        policy,
      )
      const entries = (rows ?? []).slice(0, limit).map(toLedgerEntry)
      return { entries, nextCursor: (rows ?? []).length > limit ? entries[entries.length - 1]!.id : null }
    },

    async grants({ orgId, status } = {}) {
      const org = await resolveOrg(db, policy, orgId)
      const statuses = status === undefined ? null : Array.isArray(status) ? status : [status]
      const rows = await runWithRetry(
        'credit_grants',
        () => {
          let query = db.from('credit_grants').select('*').eq('org_id', org)
          if (statuses) query = query.in('status', statuses)
          return withoutBuiltinRetry(query.order('created_at', { ascending: false }).order('id', { ascending: true }))
        },
        policy,
      )
      return (rows ?? []).map(toGrant)
    },

    orgs() {
      return listMyOrgs(db, policy)
    },
  }
}
