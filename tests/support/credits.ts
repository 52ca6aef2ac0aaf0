import { expect } from 'vitest'
import type { PostgrestError } from '@supabase/supabase-js'
import { createUser, serviceClient, type TestUser } from './clients.ts'
import { primaryDb } from './db.ts'

// Credit-engine helpers for the vitest files. The code under test is always reached through
// supabase-js .rpc (PostgREST); primaryDb only arranges prices and reads outcomes.

/** Lowercase hex, valid in operation names, sources and request ids; unique per call. */
export const randomId = (length = 12): string => crypto.randomUUID().replaceAll('-', '').slice(0, length)

/** Inserts a price row with a fresh operation name (files run in parallel) and checks it took. */
export async function createPrice(credits: number, prefix = 'op'): Promise<string> {
  const operation = `${prefix}_${randomId()}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, $2)', [operation, credits])
  const { rows } = await primaryDb.query<{ credits: number; active: boolean }>(
    'select credits::int as credits, active from public.credit_prices where operation = $1',
    [operation],
  )
  if (rows.length !== 1 || rows[0]!.credits !== credits || !rows[0]!.active) throw new Error(`setup: price ${operation} not in place`)
  return operation
}

export interface GrantOptions {
  source?: string
  externalRef?: string
  expiresAt?: Date
  pending?: boolean
  priority?: number
  /** p_operations: the operations the grant covers (null or left out: any). */
  operations?: string[] | null
}

/** grant_credits through the service role; fails the test on any error. */
export async function grantCredits(orgId: string, amount: number, options: GrantOptions = {}): Promise<Record<string, unknown>> {
  const { data, error } = await serviceClient().rpc('grant_credits', {
    p_org_id: orgId,
    p_amount: amount,
    p_source: options.source ?? 'purchase',
    p_external_ref: options.externalRef ?? null,
    p_expires_at: options.expiresAt?.toISOString() ?? null,
    ...(options.pending === undefined ? {} : { p_pending: options.pending }),
    ...(options.priority === undefined ? {} : { p_priority: options.priority }),
    ...(options.operations === undefined ? {} : { p_operations: options.operations }),
  })
  expect(error).toBeNull()
  return data as Record<string, unknown>
}

/** Asserts an RPC failed with SQLSTATE `code` and key `message`; returns `details` parsed as JSON. */
export function expectRpcError(
  result: { data: unknown; error: PostgrestError | null },
  code: string,
  message: string,
): Record<string, unknown> {
  expect(result.data).toBeNull()
  expect(result.error).not.toBeNull()
  expect({ code: result.error!.code, message: result.error!.message }).toEqual({ code, message })
  return result.error!.details ? (JSON.parse(result.error!.details) as Record<string, unknown>) : {}
}

/** Asserts a plain privilege refusal (42501 from Postgres, no function body ran). */
export function expectDenied(result: { error: PostgrestError | null }): void {
  expect(result.error).not.toBeNull()
  expect(result.error!.code).toBe('42501')
}

export async function balanceOf(orgId: string): Promise<{ available: number; held: number }> {
  const { rows } = await primaryDb.query<{ available: number; held: number }>(
    'select available::int as available, held::int as held from public.credit_balances where org_id = $1',
    [orgId],
  )
  if (rows.length !== 1) throw new Error(`org ${orgId} has no balance row`)
  return rows[0]!
}

export async function flagOf(orgId: string): Promise<boolean> {
  const { rows } = await primaryDb.query<{ has_usage_credits: boolean }>('select has_usage_credits from public.orgs where id = $1', [orgId])
  if (rows.length !== 1) throw new Error(`no org ${orgId}`)
  return rows[0]!.has_usage_credits
}

export interface LedgerSummary {
  entries: number
  amount: number
  held: number
  /** entries per kind, e.g. { grant: 1, charge: 150 } */
  kinds: Record<string, number>
  /** signed sum of `amount` per kind */
  sums: Record<string, number>
}

export async function ledgerOf(orgId: string): Promise<LedgerSummary> {
  const { rows } = await primaryDb.query<{ kind: string; entries: number; amount: number; held: number }>(
    `select kind, count(*)::int as entries, sum(amount)::int as amount, sum(held_delta)::int as held
     from public.credit_ledger where org_id = $1 group by kind`,
    [orgId],
  )
  const summary: LedgerSummary = { entries: 0, amount: 0, held: 0, kinds: {}, sums: {} }
  for (const row of rows) {
    summary.entries += row.entries
    summary.amount += row.amount
    summary.held += row.held
    summary.kinds[row.kind] = row.entries
    summary.sums[row.kind] = row.amount
  }
  return summary
}

/** Ledger entries of one request, in order: [kind, amount, held_delta]. */
export async function ledgerOfRequest(orgId: string, requestId: string): Promise<Array<[string, number, number]>> {
  const { rows } = await primaryDb.query<{ kind: string; amount: number; held_delta: number }>(
    'select kind, amount::int as amount, held_delta::int as held_delta from public.credit_ledger where org_id = $1 and request_id = $2 order by id',
    [orgId, requestId],
  )
  return rows.map((r) => [r.kind, r.amount, r.held_delta])
}

export async function grantsRemainingOf(orgId: string): Promise<number> {
  const { rows } = await primaryDb.query<{ remaining: number }>(
    `select coalesce(sum(remaining), 0)::int as remaining from public.credit_grants where org_id = $1 and status = 'active'`,
    [orgId],
  )
  return rows[0]!.remaining
}

export async function requestOf(orgId: string, requestId: string): Promise<Record<string, unknown> | undefined> {
  const { rows } = await primaryDb.query(
    `select kind, operation, quantity, unit_price::int as unit_price, reserved::int as reserved, charged::int as charged,
            refunded::int as refunded, status, success, backend_error, latency_ms, error_code
     from public.credit_requests where org_id = $1 and request_id = $2`,
    [orgId, requestId],
  )
  return rows[0]
}

export async function requestCountOf(orgId: string): Promise<number> {
  const { rows } = await primaryDb.query<{ n: number }>('select count(*)::int as n from public.credit_requests where org_id = $1', [orgId])
  return rows[0]!.n
}

/**
 * The money invariants of one org, checked from outside: available = sum(ledger.amount) =
 * sum(active grants' remaining); held = sum(ledger.held_delta) = open holds' reserved; the gate
 * flag = available > 0. For orgs without an overage limit or debt (tests/support/scoped-credits.ts
 * has the overage version). Returns the balance for exact assertions by the caller.
 */
export async function expectBooksBalanced(orgId: string): Promise<{ available: number; held: number }> {
  const balance = await balanceOf(orgId)
  const ledger = await ledgerOf(orgId)
  const { rows } = await primaryDb.query<{ held: number }>(
    `select coalesce(sum(reserved), 0)::int as held from public.credit_requests where org_id = $1 and status = 'held'`,
    [orgId],
  )
  expect({
    ledgerAmount: ledger.amount,
    grantsRemaining: await grantsRemainingOf(orgId),
    ledgerHeld: ledger.held,
    openHolds: rows[0]!.held,
    flag: await flagOf(orgId),
  }).toEqual({
    ledgerAmount: balance.available,
    grantsRemaining: balance.available,
    ledgerHeld: balance.held,
    openHolds: balance.held,
    flag: balance.available > 0,
  })
  return balance
}

interface ReconciliationIssue {
  run_id: string
  org_id: string | null
  check_name: string
  expected: string
  actual: string
  detail: unknown
}

/**
 * End-of-file check: our orgs' flags are exact, reconcile_credits() (service role, every org
 * in the database, one consistent snapshot) returns 0, and no run ever recorded an issue for
 * `orgIds`.
 */
export async function expectReconciled(orgIds: string[]): Promise<void> {
  const { rows: flags } = await primaryDb.query<{ org_id: string; spendable: number; overage: number; overage_limit: number; flag: boolean }>(
    `select b.org_id, (b.available + b.overage_limit)::int as spendable, b.overage::int as overage,
            b.overage_limit::int as overage_limit, o.has_usage_credits as flag
     from public.credit_balances b join public.orgs o on o.id = b.org_id where b.org_id = any($1::uuid[])`,
    [orgIds],
  )
  expect(flags).toHaveLength(orgIds.length)
  // README: the org can spend on something. With the debt within the limit that is available +
  // overage_limit > 0; above a lowered limit it depends on the grants' scopes, and
  // reconcile_credits() below checks it.
  for (const row of flags.filter((r) => r.overage <= r.overage_limit)) {
    expect({ org: row.org_id, flag: row.flag }).toEqual({ org: row.org_id, flag: row.spendable > 0 })
  }

  const { rows: before } = await primaryDb.query<{ id: string }>('select coalesce(max(id), 0)::text as id from public.credit_reconciliation_runs')
  const { data, error } = await serviceClient().rpc('reconcile_credits')
  expect(error).toBeNull()
  if (data !== 0) {
    const { rows: issues } = await primaryDb.query<ReconciliationIssue>(
      'select run_id::text, org_id, check_name, expected::text, actual::text, detail from public.credit_reconciliation_issues where run_id > $1 order by id',
      [before[0]!.id],
    )
    expect({ returned: data, issues }).toEqual({ returned: 0, issues: [] })
  }

  const { rows: ours } = await primaryDb.query(
    'select run_id::text, org_id, check_name, expected::text, actual::text from public.credit_reconciliation_issues where org_id = any($1::uuid[])',
    [orgIds],
  )
  expect(ours).toEqual([])
}

/** Users made by one test file, with their orgs remembered for the end-of-file reconciliation. */
export function userTracker(): { orgs: string[]; newUser(label: string): Promise<TestUser> } {
  const orgs: string[] = []
  return {
    orgs,
    async newUser(label) {
      const user = await createUser(label)
      orgs.push(user.personalOrgId)
      return user
    },
  }
}

/** Shuffles in place (Fisher–Yates) so parallel storms do not arrive in a tidy order. */
export function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[items[i], items[j]] = [items[j]!, items[i]!]
  }
  return items
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
