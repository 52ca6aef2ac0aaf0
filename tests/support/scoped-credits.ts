import { expect } from 'vitest'
import { serviceClient } from './clients.ts'
import { primaryDb } from './db.ts'
import { grantCredits, type GrantOptions } from './credits.ts'

// Helpers for scoped credits and overage. The code under test is reached through supabase-js
// .rpc (PostgREST); primaryDb only reads outcomes. The books of an org with overage differ from
// the plain ones (tests/support/credits.ts): available may be negative, available + overage is
// what the grants hold, and the flag says whether the org can spend on something, overage
// included.

export type ScopedGrantOptions = GrantOptions

/** grantCredits with a promotion as the default source and p_operations always named. */
export async function grantScoped(orgId: string, amount: number, options: ScopedGrantOptions = {}): Promise<Record<string, unknown>> {
  return grantCredits(orgId, amount, { source: 'promotion', ...options, operations: options.operations ?? null })
}

/** set_overage_limit through the service role; fails the test on any error. */
export async function setOverageLimit(orgId: string, limit: number): Promise<Record<string, unknown>> {
  const { data, error } = await serviceClient().rpc('set_overage_limit', { p_org_id: orgId, p_limit: limit })
  expect(error).toBeNull()
  return data as Record<string, unknown>
}

export interface Books {
  available: number
  overage: number
  held: number
  overage_limit: number
  flag: boolean
}

export async function booksOf(orgId: string): Promise<Books> {
  const { rows } = await primaryDb.query<Books>(
    `select b.available::int as available, b.overage::int as overage, b.held::int as held, b.overage_limit::int as overage_limit,
            o.has_usage_credits as flag
     from public.credit_balances b join public.orgs o on o.id = b.org_id where b.org_id = $1`,
    [orgId],
  )
  if (rows.length !== 1) throw new Error(`org ${orgId} has no balance row`)
  return rows[0]!
}

/** Remaining credits and repaid debt of each of an org's grants, by grant id. */
export async function grantStates(orgId: string): Promise<Map<string, { remaining: number; overage_repaid: number; amount: number; operations: string[] | null }>> {
  const { rows } = await primaryDb.query<{ id: string; remaining: number; overage_repaid: number; amount: number; operations: string[] | null }>(
    `select id, remaining::int as remaining, overage_repaid::int as overage_repaid, amount::int as amount, operations
     from public.credit_grants where org_id = $1`,
    [orgId],
  )
  return new Map(rows.map((r) => [r.id, r]))
}

/** Whether the org can spend on something: the largest covering credits of any operation − overage + limit > 0. */
async function expectedFlag(orgId: string): Promise<boolean> {
  const { rows } = await primaryDb.query<{ flag: boolean }>(
    `with live as (
       select g.operations, g.remaining from public.credit_grants g
       where g.org_id = $1 and g.status = 'active' and g.remaining > 0 and (g.expires_at is null or g.expires_at > now())
     ),
     unscoped as (select coalesce(sum(remaining), 0) as credits from live where operations is null),
     best_scoped as (
       select coalesce(max(s.credits), 0) as credits
       from (select op, sum(l.remaining) as credits from live l, unnest(l.operations) op group by op) s
     )
     select (u.credits + s.credits - b.overage + b.overage_limit) > 0 as flag
     from unscoped u, best_scoped s, public.credit_balances b where b.org_id = $1`,
    [orgId],
  )
  return rows[0]!.flag
}

/**
 * The money invariants of one org with scoped credits and overage, checked from outside:
 * sum(ledger.amount) = available; sum(ledger.overage_delta) = overage; sum(ledger.held_delta) =
 * held = open holds; available + overage = active grants' remaining; the debt accounting
 * overage + sum(grants.overage_repaid) = requests' debt pieces + revocations' overage; the flag
 * by its rule. Returns the books for exact assertions by the caller.
 */
export async function expectOverageBooksBalanced(orgId: string): Promise<Books> {
  const books = await booksOf(orgId)
  const { rows } = await primaryDb.query<{
    ledger_amount: number
    ledger_overage: number
    ledger_held: number
    open_holds: number
    grants_remaining: number
    repaid: number
    debt_pieces: number
    revoked_overage: number
  }>(
    `select
       (select coalesce(sum(amount), 0)::int from public.credit_ledger where org_id = $1) as ledger_amount,
       (select coalesce(sum(overage_delta), 0)::int from public.credit_ledger where org_id = $1) as ledger_overage,
       (select coalesce(sum(held_delta), 0)::int from public.credit_ledger where org_id = $1) as ledger_held,
       (select coalesce(sum(reserved), 0)::int from public.credit_requests where org_id = $1 and status = 'held') as open_holds,
       (select coalesce(sum(remaining), 0)::int from public.credit_grants where org_id = $1 and status = 'active') as grants_remaining,
       (select coalesce(sum(overage_repaid), 0)::int from public.credit_grants where org_id = $1) as repaid,
       (select coalesce(sum((a.value ->> 'amount')::bigint), 0)::int
          from public.credit_requests r, jsonb_array_elements(r.allocations) a
         where r.org_id = $1 and a.value -> 'grant_id' = 'null'::jsonb) as debt_pieces,
       (select coalesce(sum(overage), 0)::int from public.credit_revocations where org_id = $1) as revoked_overage`,
    [orgId],
  )
  const r = rows[0]!
  expect({
    ledgerAmount: r.ledger_amount,
    ledgerOverage: r.ledger_overage,
    ledgerHeld: r.ledger_held,
    openHolds: r.open_holds,
    grantsRemaining: r.grants_remaining,
    debtAccount: r.debt_pieces + r.revoked_overage,
    overageNotNegative: books.overage >= 0,
    flag: await expectedFlag(orgId),
  }).toEqual({
    ledgerAmount: books.available,
    ledgerOverage: books.overage,
    ledgerHeld: books.held,
    openHolds: books.held,
    grantsRemaining: books.available + books.overage,
    debtAccount: books.overage + r.repaid,
    overageNotNegative: true,
    flag: books.flag,
  })
  return books
}

/** The largest debt any ledger entry of the org ever recorded. */
export async function maxOverageEver(orgId: string): Promise<number> {
  const { rows } = await primaryDb.query<{ m: number }>(
    'select coalesce(max(overage_after), 0)::int as m from public.credit_ledger where org_id = $1',
    [orgId],
  )
  return rows[0]!.m
}

/**
 * End-of-file check for files whose orgs use scoped credits or overage: every org's books by
 * expectOverageBooksBalanced, reconcile_credits() (service role, every org) returns 0, and no
 * run ever recorded an issue for `orgIds`.
 */
export async function expectOverageReconciled(orgIds: string[]): Promise<void> {
  for (const orgId of orgIds) await expectOverageBooksBalanced(orgId)
  const { rows: before } = await primaryDb.query<{ id: string }>('select coalesce(max(id), 0)::text as id from public.credit_reconciliation_runs')
  const { data, error } = await serviceClient().rpc('reconcile_credits')
  expect(error).toBeNull()
  if (data !== 0) {
    const { rows: issues } = await primaryDb.query(
      'select org_id, check_name, expected::text, actual::text, detail from public.credit_reconciliation_issues where run_id > $1 order by id',
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

/** Charge ledger entries (kinds charge and hold) per request id of one org. */
export async function chargeEntriesPerRequest(orgId: string): Promise<Map<string, number>> {
  const { rows } = await primaryDb.query<{ request_id: string; n: number }>(
    `select request_id, count(*)::int as n from public.credit_ledger where org_id = $1 and kind in ('charge', 'hold') group by request_id`,
    [orgId],
  )
  return new Map(rows.map((r) => [r.request_id, r.n]))
}

export interface Allocation {
  grant_id: string | null
  amount: number
}

export async function allocationsOf(orgId: string): Promise<Map<string, { operation: string; status: string; allocations: Allocation[]; charged: number; reserved: number }>> {
  const { rows } = await primaryDb.query<{ request_id: string; operation: string; status: string; allocations: Allocation[]; charged: number; reserved: number }>(
    `select request_id, operation, status, allocations, charged::int as charged, reserved::int as reserved from public.credit_requests where org_id = $1`,
    [orgId],
  )
  return new Map(rows.map((r) => [r.request_id, r]))
}
