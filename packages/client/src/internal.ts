// Pieces shared by the user half and the server half. Not exported from the package.

import type { SupabaseClient } from '@supabase/supabase-js'
import type { Database } from './database.types.ts'
import { InvalidInputError, NotAMemberError, UnknownOrgError } from './errors.ts'
import { runWithRetry, type RetryPolicy } from './retry.ts'
import { toOrg, type Json, type JsonObject, type Org } from './types.ts'

/**
 * Any supabase-js v2 client: typed with Tollgate's `Database`, with an app's own generated
 * types (which contain Tollgate's tables), or untyped. The client calls only RPCs and tables
 * that the migrations define, so it narrows to Tollgate's `Database` inside. Three type
 * arguments: `SupabaseClient` takes five in recent releases but three in 2.50 and older, and
 * this type lands in the published `.d.ts`, checked against whichever supabase-js the app has.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySupabaseClient = SupabaseClient<any, any, any>

export type TollgateSupabase = SupabaseClient<Database>

export const asTollgate = (supabase: AnySupabaseClient): TollgateSupabase => supabase as unknown as TollgateSupabase

/**
 * postgrest-js ≥ 2.10x retries GETs on its own (1 s, 2 s, 4 s). Our policy is the one retry
 * layer, so a table read turns the built-in one off where the builder has it.
 */
export function withoutBuiltinRetry<B>(builder: B): B {
  const retry = (builder as { retry?: (enabled: boolean) => B }).retry
  return typeof retry === 'function' ? retry.call(builder, false) : builder
}

export const defaultRequestId = (): string => globalThis.crypto.randomUUID()

export async function listMyOrgs(db: TollgateSupabase, policy: RetryPolicy): Promise<Org[]> {
  const rows = await runWithRetry('list_my_orgs', () => db.rpc('list_my_orgs'), policy)
  return (rows ?? []).map(toOrg)
}

/**
 * The org a table read acts on, with the RPCs' rule (private.caller_org): `orgId` when the
 * caller is a member, else the personal org. RLS alone would answer a stranger's org with an
 * empty list; we answer `not_a_member` like the RPCs do.
 */
export async function resolveOrg(db: TollgateSupabase, policy: RetryPolicy, orgId: string | undefined): Promise<string> {
  const orgs = await listMyOrgs(db, policy)
  if (orgId === undefined) {
    const personal = orgs.find((org) => org.isPersonal)
    if (!personal) throw new UnknownOrgError({ key: 'unknown_org', code: 'PT404', status: 404, hint: 'the caller has no personal org: pass orgId' })
    return personal.orgId
  }
  if (!orgs.some((org) => org.orgId === orgId)) {
    throw new NotAMemberError({ key: 'not_a_member', code: '42501', status: 403, details: { org_id: orgId }, hint: 'the caller is not a member of this org' })
  }
  return orgId
}

/** Client-side validation, raised before any call with the same class and code as the server's. */
export function invalid(key: string, details: Record<string, unknown>, hint: string): InvalidInputError {
  return new InvalidInputError({ key, code: '22023', status: 400, details, hint })
}

/** Camel-case call record → the `p_result` keys of capture_credits / release_credits. */
export interface CallRecord {
  latencyMs?: number
  backendEndpoint?: string
  errorCode?: string
  success?: boolean
  /** Any JSON (≤ 8 KiB with the rest of the record). */
  output?: Json
}

export function toResultJson(record: CallRecord | undefined): JsonObject {
  if (!record) return {}
  return {
    latency_ms: record.latencyMs,
    backend_endpoint: record.backendEndpoint,
    error_code: record.errorCode,
    success: record.success,
    output: record.output,
  }
}
