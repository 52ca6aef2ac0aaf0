import { isDeepStrictEqual } from 'node:util'

// A reference model of the money core, in plain TypeScript, for the model-based test
// (tests/faults/credit-model.test.ts). It encodes the documented rules (README "Credit engine",
// "Decisions worth knowing", "Scoped credits", "Overage"), not the SQL: what each public RPC
// answers and how it leaves balances, grants, requests and revocations. The database is checked
// against it after every step.
//
// Scoped credits and overage, as the model has them:
// - A grant covers an operation when its operation set is null (any) or contains it. A charge
//   burns only covering grants, in burn-down order; it succeeds iff its cost <= (covering
//   credits - debt) + overage limit, and the shortfall beyond the covering grants is taken as
//   debt: the request's last allocation piece, {grant_id: null}.
// - Giving credits back (release, partial capture, refund, a hold's TTL) goes newest piece
//   first, so the debt piece first: it lowers the debt, and what a later grant already repaid
//   goes back to the grant(s) that repaid it.
// - A new unscoped grant pays the debt first when it is credited (insert, activation, a
//   refund's regrant): remaining = amount - paid, overage_repaid = paid. Scoped grants pay no
//   debt.
// - Revocation in burn-down order takes from any grant, then as debt up to the overage room;
//   naming a grant takes its credits, then brings back the debt it had repaid.
// - The flag: some operation has covering credits - debt + limit > 0.
//
// Two things the model cannot know beforehand it reads from the database after each step, and
// only those: the identities and timestamps a row gets when it is created (a grant's id and
// created_at, a refund grant's expires_at, a hold's hold_expires_at: the burn-down order's tie
// breaks), each checked to be plausible; and what pg_cron did on its own meanwhile (it runs
// expire_credit_grants and expire_stale_holds every minute on the stack under test):
//
// - A grant past its expires_at is spent by nobody, whatever its row says. Until something
//   settles it, its row may still read `active` with its remaining credits, counted in
//   credit_balances.available (README: get_credit_balance leaves them out). The model keeps
//   such a grant `active` and due, accepts either row, and follows the row once it reads
//   `expired`. The RPCs documented to expire due grants first (capture, release, refund,
//   revoke, activate, the expiry job) settle them in the model, and the rows must follow.
// - A hold past its TTL is released by the cron job at a moment of its choosing (all of an
//   org's stale holds in one transaction). The checker tries that event at every point of a
//   step, and "not yet".

/** Microseconds since the epoch (PostgreSQL's resolution). */
export type Micros = number

export type GrantStatus = 'pending' | 'active' | 'expired' | 'voided'
export type RequestStatus = 'charged' | 'held' | 'captured' | 'released' | 'expired' | 'refunded'

export interface Allocation {
  /** null: the debt piece (credits taken beyond the grants), always the last piece. */
  grantId: string | null
  amount: number
}

export interface Grant {
  id: string
  source: string
  externalRef: string
  amount: number
  remaining: number
  expiredAmount: number
  revokedAmount: number
  status: GrantStatus
  /** Created pending (awaiting payment): activate replays once it is active or expired. */
  wasPending: boolean
  /** The operations (credit_prices names, sorted) it may be spent on; null: any. */
  operations: string[] | null
  /** Credits of this grant that paid the org's debt when it was credited (not in remaining). */
  overageRepaid: number
  /** When it was credited (read from the row): credits of a repaid debt go back to the newest first. */
  activatedAt: Micros | null
  priority: number
  expiresAt: Micros | null
  createdAt: Micros
}

export interface Request {
  requestId: string
  kind: 'consume' | 'hold'
  operation: string
  quantity: number
  unitPrice: number
  reserved: number
  charged: number
  refunded: number
  status: RequestStatus
  /** Where its credits still are, in burn order: returns go to the newest first. */
  allocations: Allocation[]
  balanceBefore: number
  balanceAfter: number
  /** Credits the charge took as debt (its debt piece when it was made). */
  overage: number
  holdExpiresAt: Micros | null
  /** What the first call answered (a replay may answer this, or the request's state now). */
  firstAnswer: Json
}

export interface Revocation {
  externalRef: string
  amount: number
  grantId: string | null
  reason: string
  revoked: number
  /** The part of `revoked` taken as new debt (burn-down mode only). */
  overage: number
  /** The part of `revoked` that brought back the debt the named grant had repaid. */
  overageRestored: number
  shortfall: number
  allocations: Allocation[]
  balanceAfter: number
}

export interface OrgState {
  id: string
  held: number
  /** The debt: credits spent beyond the grants (credit_balances.overage). */
  overage: number
  overageLimit: number
  grants: Grant[]
  requests: Record<string, Request>
  revocations: Record<string, Revocation>
}

export interface State {
  orgs: OrgState[]
  /** The run's operations by their short name: the name in credit_prices and the price (null: none). */
  operations: Record<string, { name: string; price: number | null }>
  /** Rules the sequence has exercised that its final state does not show (for the coverage report). */
  reached: string[]
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

// Operations ------------------------------------------------------------------------------------

export type Via = 'pg' | 'rest'

/**
 * A grant or request an op aims at by position among those that exist when it runs (`pick`
 * modulo their number), so that sequences hit live targets; resolved before the call is sent.
 */
export type Op =
  | {
      t: 'grant'
      org: number
      amount: number
      source: string
      ref: string
      expiresInHours: number | null
      priority: number
      pending: boolean
      /**
       * null: any operation. Otherwise short names of the run's operations (keys of
       * State.operations, duplicates and any order allowed), or names sent as they are
       * (INVALID_NAME, or null for a null element).
       */
      operations: Array<string | null> | null
    }
  | { t: 'overageLimit'; org: number; limit: number; unknownOrg: boolean }
  | { t: 'activate' | 'void'; org: number; source: string; ref: string; pick: number | null }
  | { t: 'consume'; org: number; rid: string; operation: string; quantity: number; defaultOrg: boolean }
  | { t: 'reserve'; org: number; rid: string; operation: string; quantity: number; ttlHours: number; withUser: boolean }
  | { t: 'capture'; org: number; rid: string; quantity: number | null; pick: number | null }
  | { t: 'release'; org: number; rid: string; backendError: boolean; pick: number | null }
  | { t: 'refund'; org: number; rid: string; pick: number | null }
  | {
      t: 'revoke'
      org: number
      amount: number
      ref: string
      /** A grant of this org, of another org (unknown here), or none that exists; null: burn-down order. */
      grant: { pick: number; from: 'own' | 'other' | 'nowhere' } | null
      /** Once resolved: the grant it named, for the report. */
      grantLabel?: string
    }
  | { t: 'expireGrants' }
  | { t: 'expireHolds' }

/** An operation as it was sent: the generated op plus what was fixed when it ran. */
export interface Call {
  op: Op
  via: Via
  /** grant: the absolute expires_at sent. */
  expiresAt?: Micros | null
  /** revoke: the grant id sent (a fresh uuid when the named grant did not exist yet). */
  grantId?: string | null
}

export const HOUR: Micros = 3_600_000_000
export const REFUND_GRANT_LIFETIME: Micros = 7 * 24 * HOUR

const target = (op: { rid: string; pick: number | null }) => (op.pick === null ? op.rid : `${op.rid}|existing#${op.pick}`)

/** A name that does not match the operation format (`^[a-z][a-z0-9_.:-]{0,63}$`). */
export const INVALID_NAME = 'Not An Operation'

/** The operation names a grant op sends: run operations by short name, anything else as it is. */
export function operationNames(state: Pick<State, 'operations'>, operations: Array<string | null>): Array<string | null> {
  return operations.map((o) => (o !== null && state.operations[o] ? state.operations[o]!.name : o))
}

export function describeOp(op: Op): string {
  const org = 'org' in op ? `o${op.org}` : ''
  switch (op.t) {
    case 'grant':
      return `grant(${org} ${op.source}:${op.ref} ${op.amount}cr prio=${op.priority}${op.expiresInHours === null ? '' : ` expires=${op.expiresInHours > 0 ? '+' : ''}${op.expiresInHours}h`}${op.pending ? ' pending' : ''}${op.operations === null ? '' : ` ops=[${op.operations.map((o) => (o === null ? 'null' : o)).join(',')}]`})`
    case 'overageLimit':
      return `set_overage_limit(${op.unknownOrg ? 'unknown org' : org} ${op.limit})`
    case 'activate':
    case 'void':
      return `${op.t}(${org} ${op.pick === null ? `${op.source}:${op.ref}` : `pending#${op.pick}`})`
    case 'consume':
      return `consume(${op.defaultOrg ? `${org}=personal` : org} ${op.rid} ${op.operation}×${op.quantity})`
    case 'reserve':
      return `reserve(${org} ${op.rid} ${op.operation}×${op.quantity} ttl=${op.ttlHours}h${op.withUser ? '' : ' no-user'})`
    case 'capture':
      return `capture(${org} ${target(op)}${op.quantity === null ? '' : ` qty=${op.quantity}`})`
    case 'release':
      return `release(${org} ${target(op)}${op.backendError ? '' : ' ok'})`
    case 'refund':
      return `refund(${org} ${target(op)})`
    case 'revoke':
      return `revoke(${org} ${op.ref} ${op.amount}cr${op.grant ? ` grant=${op.grantLabel ?? `${op.grant.from}#${op.grant.pick}`}` : ''})`
    case 'expireGrants':
      return 'cron.expire_credit_grants()'
    case 'expireHolds':
      return 'cron.expire_stale_holds()'
  }
}

// What the database says ------------------------------------------------------------------------

/** An RPC's outcome: its answer, or its error (SQLSTATE, key, details parsed from JSON). */
export type Outcome = { ok: true; data: Json } | { ok: false; code: string; key: string; detail: Record<string, Json> }

export interface DbGrant {
  org: number
  id: string
  source: string
  external_ref: string | null
  amount: number
  remaining: number
  status: GrantStatus
  expired_amount: number
  revoked_amount: number
  operations: string[] | null
  overage_repaid: number
  priority: number
  expires_at: Micros | null
  created_at: Micros
  activated_at: Micros | null
}

export interface DbRequest {
  org: number
  request_id: string
  kind: string
  operation: string
  quantity: number
  status: string
  charged: number
  reserved: number
  refunded: number
  balance_before: number
  balance_after: number
  hold_expires_at: Micros | null
  allocations: Array<{ grant_id: string | null; amount: number }>
}

export interface DbRevocation {
  org: number
  external_ref: string
  amount: number
  grant_id: string | null
  revoked: number
  overage: number
  overage_restored: number
  shortfall: number
}

export interface DbOrg {
  available: number
  held: number
  overage: number
  overage_limit: number
  flag: boolean
  ledger_amount: number
  ledger_held: number
  ledger_overage: number
  /** get_credit_balance(org) as a member, in the same snapshot. */
  balance: Record<string, Json>
}

export interface Snapshot {
  orgs: DbOrg[]
  grants: DbGrant[]
  requests: DbRequest[]
  revocations: DbRevocation[]
}

/** When a step ran (client clock, around the calls) and what the database held after it. */
export interface StepContext {
  /** Due / stale means expires_at <= now; nothing is within an hour of now but what is past. */
  now: Micros
  startedAt: Micros
  endedAt: Micros
  snapshot: Snapshot
}

// Time ---------------------------------------------------------------------------------------

/** A timestamptz as JSON renders it ("2026-12-01T10:00:00.123456+00:00") → microseconds. */
export function parseTimestamp(text: string): Micros {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d(?::?\d\d)?)$/.exec(text)
  if (!match) throw new Error(`not a timestamp: ${text}`)
  const zone = match[3] === 'Z' ? 'Z' : match[3]!.length === 3 ? `${match[3]}:00` : match[3]!.replace(/^([+-]\d\d)(\d\d)$/, '$1:$2')
  const ms = Date.parse(`${match[1]}${zone}`)
  const fraction = match[2] ? Math.round(Number(`0${match[2]}`) * 1_000_000) : 0
  return ms * 1000 + fraction
}

// The rules --------------------------------------------------------------------------------------

const isDue = (g: Grant, now: Micros): boolean => g.status === 'active' && g.expiresAt !== null && g.expiresAt <= now
const isSpendable = (g: Grant, now: Micros): boolean => g.status === 'active' && !isDue(g, now) && g.remaining > 0
const isStale = (r: Request, now: Micros): boolean => r.status === 'held' && r.holdExpiresAt !== null && r.holdExpiresAt <= now
/** Whether a grant's credits may be spent on `operation` (null: on any, as revocation takes them). */
const covers = (g: { operations: string[] | null }, operation: string | null): boolean =>
  operation === null || g.operations === null || g.operations.includes(operation)

/** Burn-down order: priority, then soonest expiry (none last), then oldest, then id. */
export function burnOrder(a: Grant, b: Grant): number {
  if (a.priority !== b.priority) return a.priority - b.priority
  if (a.expiresAt !== b.expiresAt) {
    if (a.expiresAt === null) return 1
    if (b.expiresAt === null) return -1
    return a.expiresAt - b.expiresAt
  }
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/** Remaining credits of spendable grants (active, not past their expiry), of any scope. */
export function spendable(org: OrgState, now: Micros): number {
  return org.grants.reduce((sum, g) => sum + (isSpendable(g, now) ? g.remaining : 0), 0)
}

/** get_credit_balance's `available`: the spendable credits net of the debt (negative in overage). */
export function netAvailable(org: OrgState, now: Micros): number {
  return spendable(org, now) - org.overage
}

/** Remaining credits of the spendable grants that cover `operation`. */
function covering(org: OrgState, operation: string, now: Micros): number {
  return org.grants.reduce((sum, g) => sum + (isSpendable(g, now) && covers(g, operation) ? g.remaining : 0), 0)
}

/**
 * The flag from grant rows (active ones, due or not, as credit_balances counts them): some
 * operation has covering credits - debt + limit > 0. Operations other than the run's are
 * covered by the unscoped grants alone, so the run's give the maximum.
 */
export function flagOf(grants: Array<{ status: string; remaining: number; operations: string[] | null }>, names: string[], overage: number, limit: number): boolean {
  const active = grants.filter((g) => g.status === 'active')
  const unscoped = active.reduce((sum, g) => sum + (g.operations === null ? g.remaining : 0), 0)
  const best = Math.max(unscoped, ...names.map((n) => active.reduce((sum, g) => sum + (covers(g, n) ? g.remaining : 0), 0)))
  return best - overage + limit > 0
}

/** Grants past their expiry whose row may still read active, with their credits. */
function unsettled(org: OrgState, now: Micros): Grant[] {
  return org.grants.filter((g) => isDue(g, now) && g.remaining > 0)
}

/** Every subset of `items` (a balance that may or may not count each unsettled grant). */
function subsets<T>(items: T[]): T[][] {
  let all: T[][] = [[]]
  for (const item of items) all = [...all, ...all.map((s) => [...s, item])]
  return all
}

/** Every sum of a subset of `values`. */
function subsetSums(values: number[]): Set<number> {
  return new Set(subsets(values).map((s) => s.reduce((a, b) => a + b, 0)))
}

/** The org's due grants expire (README: these RPCs expire the org's due grants first). */
function settleDue(org: OrgState, now: Micros): void {
  for (const g of org.grants) {
    if (isDue(g, now)) {
      g.status = 'expired'
      g.expiredAmount += g.remaining
      g.remaining = 0
    }
  }
}

function note(reached: string[], what: string): void {
  if (!reached.includes(what)) reached.push(what)
}

/** A newly credited grant that can be spent on anything pays the org's debt first. */
function payDebt(org: OrgState, g: Grant): void {
  if (g.operations !== null || g.status !== 'active') return
  const paid = Math.min(g.remaining, org.overage)
  g.remaining -= paid
  g.overageRepaid += paid
  org.overage -= paid
}

/**
 * Takes `amount` from the spendable grants covering `operation` (null: any) in burn-down order;
 * the caller checked that they hold it.
 */
function burn(org: OrgState, amount: number, now: Micros, operation: string | null): Allocation[] {
  const allocations: Allocation[] = []
  let left = amount
  for (const g of org.grants.filter((g) => isSpendable(g, now) && covers(g, operation)).sort(burnOrder)) {
    if (left === 0) break
    const take = Math.min(g.remaining, left)
    g.remaining -= take
    allocations.push({ grantId: g.id, amount: take })
    left -= take
  }
  if (left !== 0) throw new Error(`model: burn of ${amount} short by ${left}`)
  return allocations
}

/**
 * The grants whose credits paid the debt, the last credited first (then the newest, then by id
 * descending): where credits of a debt piece go back once the debt is repaid.
 */
function repayers(org: OrgState): Grant[] {
  const newest = (a: Grant, b: Grant): number =>
    (b.activatedAt ?? -Infinity) - (a.activatedAt ?? -Infinity) || b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)
  return org.grants.filter((g) => g.overageRepaid > 0).sort(newest)
}

interface Returned {
  kept: Allocation[]
  /** Credits back in active grants. */
  live: number
  /** Credits back in grants that expired meanwhile (a refund turns them into a refund grant). */
  expired: number
  /** The scopes of the expired grants they went to, with the credits. */
  expiredScopes: Array<{ operations: string[] | null; amount: number }>
}

/**
 * Gives `amount` back to where a request's credits came from, newest piece first: the debt piece
 * lowers the debt, and what later grants already repaid goes back to them; grant pieces go back
 * to their grants. Live grants take their credits back; expired ones record them as expired.
 */
function returnCredits(org: OrgState, allocations: Allocation[], amount: number, reached: string[]): Returned {
  let left = amount
  let live = 0
  let expired = 0
  const expiredScopes: Returned['expiredScopes'] = []
  const give = (g: Grant, n: number) => {
    if (g.status === 'active') {
      g.remaining += n
      live += n
    } else {
      g.expiredAmount += n
      expired += n
      expiredScopes.push({ operations: g.operations, amount: n })
    }
  }
  const kept: Allocation[] = allocations.map((a) => ({ ...a }))
  for (let i = kept.length - 1; i >= 0 && left > 0; i--) {
    const piece = kept[i]!
    const n = Math.min(piece.amount, left)
    if (piece.grantId === null) {
      const lowered = Math.min(n, org.overage)
      org.overage -= lowered
      live += lowered
      let rest = n - lowered
      for (const g of repayers(org)) {
        if (rest === 0) break
        const back = Math.min(rest, g.overageRepaid)
        g.overageRepaid -= back
        give(g, back)
        rest -= back
        note(reached, `credits of a repaid debt back to ${g.status === 'active' ? 'the' : 'an expired'} grant that repaid it`)
      }
      if (rest !== 0) throw new Error(`model: ${rest} credits of a debt piece neither owed nor repaid`)
    } else {
      give(org.grants.find((x) => x.id === piece.grantId)!, n)
    }
    piece.amount -= n
    left -= n
  }
  if (left !== 0) throw new Error(`model: return of ${amount} short by ${left}`)
  return { kept: kept.filter((a) => a.amount > 0), live, expired, expiredScopes }
}

function requestAnswer(org: OrgState, r: Request, replayed: boolean): Json {
  const answer: Record<string, Json> = {
    request_id: r.requestId,
    org_id: org.id,
    operation: r.operation,
    quantity: r.quantity,
    status: r.status,
    charged: r.charged,
  }
  if (r.kind === 'hold') answer.reserved = r.reserved
  if (r.refunded > 0) answer.refunded = r.refunded
  if (r.holdExpiresAt !== null) answer.hold_expires_at = r.holdExpiresAt
  answer.balance_before = r.balanceBefore
  answer.balance_after = r.balanceAfter
  // The part of what is charged or held that is debt: the debt piece as it stands.
  const debt = r.allocations.find((a) => a.grantId === null)?.amount ?? 0
  if (debt > 0) answer.overage = debt
  answer.replayed = replayed
  return answer
}

function grantAnswer(org: OrgState, g: Grant, replayed: boolean, balanceAfter: number | 'any'): Record<string, Json> {
  return {
    grant_id: g.id,
    org_id: org.id,
    amount: g.amount,
    remaining: g.remaining,
    status: g.status,
    source: g.source,
    external_ref: g.externalRef,
    priority: g.priority,
    expires_at: g.expiresAt,
    effective_at: null,
    operations: g.operations,
    overage_repaid: g.overageRepaid,
    balance_after: balanceAfter,
    replayed,
  }
}

function revocationAnswer(org: OrgState, v: Revocation, replayed: boolean): Json {
  return {
    org_id: org.id,
    external_ref: v.externalRef,
    amount: v.amount,
    grant_id: v.grantId,
    revoked: v.revoked,
    shortfall: v.shortfall,
    allocations: v.allocations.map((a) => ({ grant_id: a.grantId, amount: a.amount })),
    balance_after: v.balanceAfter,
    replayed,
    ...(v.overage > 0 ? { overage: v.overage } : {}),
    ...(v.overageRestored > 0 ? { overage_restored: v.overageRestored } : {}),
  }
}

/** Answers with their timestamps as microseconds, so they compare exactly. */
function normalise(data: Json): Json {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return data
  const out: Record<string, Json> = { ...data }
  for (const key of ['hold_expires_at', 'expires_at', 'next_expiry_at']) {
    if (typeof out[key] === 'string') out[key] = parseTimestamp(out[key] as string)
  }
  return out
}

const show = (value: unknown): string => JSON.stringify(value)

const OPERATION_FORMAT = /^[a-z][a-z0-9_.:-]{0,63}$/

/** Mismatches of one call: an empty list means the outcome is what the model expects. */
type Check = string[]

function expectError(outcome: Outcome, code: string, key: string, detail?: Record<string, Json>): Check {
  if (outcome.ok) return [`expected ${code} ${key}${detail ? ` ${show(detail)}` : ''}, got the answer ${show(outcome.data)}`]
  if (outcome.code !== code || outcome.key !== key) return [`expected ${code} ${key}, got ${outcome.code} ${outcome.key} ${show(outcome.detail)}`]
  if (detail) {
    const got = Object.fromEntries(Object.keys(detail).map((k) => [k, outcome.detail[k] ?? null]))
    if (!isDeepStrictEqual(got, detail)) return [`${key}: expected details ${show(detail)}, got ${show(outcome.detail)}`]
  }
  return []
}

function expectAnswer(outcome: Outcome, ...alternatives: Json[]): Check {
  if (!outcome.ok) return [`expected ${show(alternatives[0])}, got ${outcome.code} ${outcome.key} ${show(outcome.detail)}`]
  const got = normalise(outcome.data)
  if (alternatives.some((a) => isDeepStrictEqual(got, a))) return []
  return [`expected ${alternatives.map(show).join(' or ')}, got ${show(got)}`]
}

/**
 * A grant's answer: balance_after is credit_balances.available as the row reads, which may still
 * count grants past their expiry that nothing has settled yet (any subset of them); the grant
 * itself, if due and unsettled, may read either way.
 */
function expectGrantAnswer(outcome: Outcome, org: OrgState, g: Grant, replayed: boolean, now: Micros, strictBalance: boolean): Check {
  if (!outcome.ok) return [`expected grant ${g.source}:${g.externalRef}, got ${outcome.code} ${outcome.key} ${show(outcome.detail)}`]
  const got = normalise(outcome.data) as Record<string, Json>
  const base = netAvailable(org, now)
  const allowed = strictBalance ? new Set([base]) : new Set([...subsetSums(unsettled(org, now).map((x) => x.remaining))].map((s) => base + s))
  const shapes = [grantAnswer(org, g, replayed, 'any')]
  if (isDue(g, now)) shapes.push({ ...shapes[0]!, status: 'expired', remaining: 0 })
  const rest = { ...got, balance_after: 'any' }
  const problems: Check = []
  if (!shapes.some((s) => isDeepStrictEqual(rest, s))) problems.push(`expected ${shapes.map(show).join(' or ')}, got ${show(got)}`)
  if (typeof got.balance_after !== 'number' || !allowed.has(got.balance_after)) {
    problems.push(`balance_after: expected one of ${show([...allowed].sort((a, b) => a - b))}, got ${show(got.balance_after)}`)
  }
  return problems
}

/**
 * A revocation's answer. Not specified: whether its allocations list the debt it took as a
 * {grant_id: null} piece (as a request's do), so both are accepted.
 */
function expectRevocationAnswer(outcome: Outcome, org: OrgState, v: Revocation, replayed: boolean): Check {
  const answer = revocationAnswer(org, v, replayed) as Record<string, Json>
  const withPiece = { ...answer, allocations: [...(answer.allocations as Json[]), { grant_id: null, amount: v.overage }] }
  return v.overage > 0 ? expectAnswer(outcome, answer, withPiece) : expectAnswer(outcome, answer)
}

/**
 * set_overage_limit's answer: available and the flag as the balance row has them, which may
 * still count grants past their expiry that nothing has settled (any subset of them).
 */
function expectOverageAnswer(outcome: Outcome, state: State, org: OrgState, now: Micros): Check {
  const names = Object.values(state.operations).flatMap((o) => (o.price === null ? [] : [o.name]))
  const live = org.grants.filter((g) => isSpendable(g, now))
  const alternatives = subsets(unsettled(org, now)).map((counted): Json => {
    const rows = [...live, ...counted]
    return {
      org_id: org.id,
      overage_limit: org.overageLimit,
      overage: org.overage,
      available: rows.reduce((sum, g) => sum + g.remaining, 0) - org.overage,
      has_usage_credits: flagOf(rows, names, org.overage, org.overageLimit),
    }
  })
  return expectAnswer(outcome, ...alternatives)
}

function findGrant(org: OrgState, source: string, ref: string): Grant | undefined {
  return org.grants.find((g) => g.source === source && g.externalRef === ref)
}

function observedGrant(ctx: StepContext, orgIndex: number, source: string, ref: string): DbGrant | undefined {
  return ctx.snapshot.grants.find((g) => g.org === orgIndex && g.source === source && g.external_ref === ref)
}

const SLACK: Micros = 2_000_000

function within(label: string, value: Micros | null, from: Micros, to: Micros): Check {
  if (value === null || value < from - SLACK || value > to + SLACK) {
    return [`${label}: ${value === null ? 'null' : new Date(value / 1000).toISOString()} not within ${new Date(from / 1000).toISOString()} .. ${new Date(to / 1000).toISOString()}`]
  }
  return []
}

/**
 * The cron job's release of an org's holds past their TTL, in its order (request id), each
 * settling the org's due grants first and recording the balance after its own release.
 */
export function releaseStaleHolds(state: State, orgIndex: number, now: Micros): void {
  const org = state.orgs[orgIndex]!
  const stale = Object.values(org.requests)
    .filter((r) => isStale(r, now))
    .sort((a, b) => (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0))
  for (const r of stale) {
    settleDue(org, now)
    const back = returnCredits(org, r.allocations, r.reserved, state.reached)
    org.held -= r.reserved
    r.allocations = back.kept
    r.status = 'expired'
    r.charged = 0
    r.balanceAfter = netAvailable(org, now)
  }
}

export function hasStaleHolds(state: State, orgIndex: number, now: Micros): boolean {
  return Object.values(state.orgs[orgIndex]!.requests).some((r) => isStale(r, now))
}

/** Applies one call to the model, given what the database answered; returns the mismatches. */
export function applyCall(state: State, call: Call, outcome: Outcome, ctx: StepContext): Check {
  const { op } = call
  const now = ctx.now
  switch (op.t) {
    case 'grant': {
      const org = state.orgs[op.org]!
      const malformed = (names: Array<string | null>) => names.length === 0 || names.length > 100 || names.some((n) => n === null || !OPERATION_FORMAT.test(n))
      if (op.amount < 1) {
        // Two bad parameters: either may be named first.
        const refused = expectError(outcome, '22023', 'invalid_amount')
        if (refused.length === 0 || op.operations === null || !malformed(operationNames(state, op.operations))) return refused
        return expectError(outcome, '22023', 'invalid_operations')
      }
      let operations: string[] | null = null
      if (op.operations !== null) {
        const names = operationNames(state, op.operations)
        if (malformed(names)) return expectError(outcome, '22023', 'invalid_operations')
        operations = [...new Set(names as string[])].sort()
        const priced = new Set(Object.values(state.operations).flatMap((o) => (o.price === null ? [] : [o.name])))
        const unknown = operations.filter((n) => !priced.has(n))
        if (unknown.length > 0) {
          // Looked up in the price list: before or after the replay check, both are fair.
          const refused = expectError(outcome, 'PT404', 'unknown_operation', { operations: unknown })
          if (refused.length === 0 || !findGrant(org, op.source, op.ref)) return refused
          return expectError(outcome, 'PT409', 'idempotency_conflict')
        }
      }
      const existing = findGrant(org, op.source, op.ref)
      if (existing) {
        if (existing.amount !== op.amount || !isDeepStrictEqual(existing.operations, operations)) return expectError(outcome, 'PT409', 'idempotency_conflict')
        return expectGrantAnswer(outcome, org, existing, true, now, false)
      }
      const expiresAt = call.expiresAt ?? null
      if (expiresAt !== null && expiresAt <= ctx.startedAt) return expectError(outcome, '22023', 'invalid_expiry')
      const row = observedGrant(ctx, op.org, op.source, op.ref)
      if (!row) return [`grant ${op.source}:${op.ref} answered ${show(outcome)} but is not in credit_grants`]
      const g: Grant = {
        id: row.id,
        source: op.source,
        externalRef: op.ref,
        amount: op.amount,
        remaining: op.amount,
        expiredAmount: 0,
        revokedAmount: 0,
        status: op.pending ? 'pending' : 'active',
        wasPending: op.pending,
        operations,
        overageRepaid: 0,
        activatedAt: op.pending ? null : row.activated_at,
        priority: op.priority,
        expiresAt,
        createdAt: row.created_at,
      }
      org.grants.push(g)
      payDebt(org, g)
      return expectGrantAnswer(outcome, org, g, false, now, false)
    }

    case 'activate': {
      const org = state.orgs[op.org]!
      const g = findGrant(org, op.source, op.ref)
      if (!g) return expectError(outcome, 'PT404', 'unknown_grant')
      if (g.status !== 'pending') {
        if ((g.status === 'active' || g.status === 'expired') && g.wasPending) return expectGrantAnswer(outcome, org, g, true, now, false)
        return expectError(outcome, 'PT409', 'grant_not_pending')
      }
      g.status = 'active'
      g.activatedAt = ctx.snapshot.grants.find((x) => x.id === g.id)?.activated_at ?? null
      // Credited: an unscoped grant pays the debt first. README: a grant whose expiry passed
      // while it was pending is credited and expired at once.
      payDebt(org, g)
      settleDue(org, now)
      return [...within(`${g.source}:${g.externalRef}.activated_at`, g.activatedAt, ctx.startedAt, ctx.endedAt), ...expectGrantAnswer(outcome, org, g, false, now, true)]
    }

    case 'void': {
      const org = state.orgs[op.org]!
      const g = findGrant(org, op.source, op.ref)
      if (!g) return expectError(outcome, 'PT404', 'unknown_grant')
      if (g.status === 'voided') return expectGrantAnswer(outcome, org, g, true, now, false)
      if (g.status !== 'pending') return expectError(outcome, 'PT409', 'grant_not_pending')
      g.status = 'voided'
      g.remaining = 0
      return expectGrantAnswer(outcome, org, g, false, now, false)
    }

    case 'consume':
    case 'reserve': {
      const org = state.orgs[op.org]!
      const kind = op.t === 'consume' ? 'consume' : 'hold'
      if (op.quantity < 1 || op.quantity > 1_000_000) return expectError(outcome, '22023', 'invalid_quantity')
      const existing = org.requests[op.rid]
      if (existing) {
        if (existing.kind !== kind || existing.operation !== state.operations[op.operation]!.name || existing.quantity !== op.quantity) {
          return expectError(outcome, 'PT409', 'idempotency_conflict')
        }
        // "A replay returns the first result with replayed: true"; the current code answers the
        // request's state now. Either is a replay; what matters is that nothing moves.
        return expectAnswer(outcome, { ...(existing.firstAnswer as Record<string, Json>), replayed: true }, requestAnswer(org, existing, true))
      }
      const { name: operation, price } = state.operations[op.operation]!
      if (price === null) return expectError(outcome, 'PT404', 'unknown_operation')
      const cost = price * op.quantity
      // README: a charge expires the org's due grants first, so the balance it reports and refuses
      // on is the spendable one. It may use the grants covering its operation, net of the debt,
      // and the overage limit beyond that.
      const before = netAvailable(org, now)
      const usable = covering(org, operation, now)
      // README: an operation that costs nothing is never refused.
      if (cost > 0 && cost > usable - org.overage + org.overageLimit) {
        // README: the details carry the overage figures for an org with a limit or a debt (and
        // leave them out otherwise).
        const inOverage = org.overage > 0 || org.overageLimit > 0
        return expectError(outcome, 'PT402', 'insufficient_credits', {
          required: cost,
          available: usable - org.overage,
          operation,
          quantity: op.quantity,
          overage: inOverage ? org.overage : null,
          overage_limit: inOverage ? org.overageLimit : null,
        })
      }
      const fromGrants = Math.min(cost, usable)
      const debt = cost - fromGrants
      const allocations = burn(org, fromGrants, now, operation)
      if (debt > 0) {
        allocations.push({ grantId: null, amount: debt })
        org.overage += debt
      }
      let holdExpiresAt: Micros | null = null
      const problems: Check = []
      if (op.t === 'reserve') {
        org.held += cost
        const row = ctx.snapshot.requests.find((r) => r.org === op.org && r.request_id === op.rid)
        holdExpiresAt = row?.hold_expires_at ?? null
        const ttl = op.ttlHours * HOUR
        problems.push(...within(`${op.rid}.hold_expires_at`, holdExpiresAt, ctx.startedAt + ttl, ctx.endedAt + ttl))
      }
      const r: Request = {
        requestId: op.rid,
        kind,
        operation,
        quantity: op.quantity,
        unitPrice: price,
        reserved: kind === 'hold' ? cost : 0,
        charged: kind === 'consume' ? cost : 0,
        refunded: 0,
        status: kind === 'consume' ? 'charged' : 'held',
        allocations,
        balanceBefore: before,
        balanceAfter: before - cost,
        overage: debt,
        holdExpiresAt,
        firstAnswer: null,
      }
      r.firstAnswer = requestAnswer(org, r, false)
      org.requests[op.rid] = r
      return [...problems, ...expectAnswer(outcome, r.firstAnswer)]
    }

    case 'capture': {
      const org = state.orgs[op.org]!
      const r = org.requests[op.rid]
      if (!r) return expectError(outcome, 'PT404', 'unknown_request')
      if (r.kind !== 'hold') return expectError(outcome, 'PT409', 'not_a_hold')
      if (op.quantity !== null && (op.quantity < 0 || op.quantity > r.quantity)) return expectError(outcome, '22023', 'invalid_quantity')
      const charge = r.unitPrice * (op.quantity ?? r.quantity)
      if (r.status === 'captured') {
        if (r.charged !== charge) return expectError(outcome, 'PT409', 'idempotency_conflict')
        return expectAnswer(outcome, requestAnswer(org, r, true))
      }
      if (r.status !== 'held' && r.status !== 'expired') return expectError(outcome, 'PT409', 'hold_not_active')
      if (r.status === 'expired' || isStale(r, now)) return expectError(outcome, 'PT409', 'hold_expired')
      settleDue(org, now)
      const back = returnCredits(org, r.allocations, r.reserved - charge, state.reached)
      org.held -= r.reserved
      r.allocations = back.kept
      r.status = 'captured'
      r.charged = charge
      r.balanceAfter = netAvailable(org, now)
      return expectAnswer(outcome, requestAnswer(org, r, false))
    }

    case 'release': {
      const org = state.orgs[op.org]!
      const r = org.requests[op.rid]
      if (!r) return expectError(outcome, 'PT404', 'unknown_request')
      if (r.kind !== 'hold') return expectError(outcome, 'PT409', 'not_a_hold')
      // README: releasing a hold that its TTL already released replays.
      if (r.status === 'released' || r.status === 'expired') return expectAnswer(outcome, requestAnswer(org, r, true))
      if (r.status !== 'held') return expectError(outcome, 'PT409', 'hold_not_active')
      settleDue(org, now)
      const back = returnCredits(org, r.allocations, r.reserved, state.reached)
      org.held -= r.reserved
      r.allocations = back.kept
      r.status = 'released'
      r.balanceAfter = netAvailable(org, now)
      return expectAnswer(outcome, requestAnswer(org, r, false))
    }

    case 'refund': {
      const org = state.orgs[op.org]!
      const r = org.requests[op.rid]
      if (!r) return expectError(outcome, 'PT404', 'unknown_request')
      if (r.status === 'refunded') return expectAnswer(outcome, requestAnswer(org, r, true))
      if ((r.status !== 'charged' && r.status !== 'captured') || r.charged === 0) return expectError(outcome, 'PT409', 'not_refundable')
      settleDue(org, now)
      const back = returnCredits(org, r.allocations, r.charged, state.reached)
      const problems: Check = []
      if (back.expired > 0) {
        // README: credits whose grant has expired come back as a new grant (source refund,
        // priority 0, expiring 7 days after the refund) covering what they could buy: the union
        // of the expired grants' operations, or any operation when one of them was unscoped
        // (grants that repaid debt are). Like any new grant, when unscoped it pays what debt is
        // left first.
        const row = observedGrant(ctx, op.org, 'refund', op.rid)
        if (!row) return [`refund ${op.rid}: ${back.expired} credits of expired grants should come back as a refund grant; none in credit_grants`]
        problems.push(...within(`refund grant ${op.rid}.expires_at`, row.expires_at, ctx.startedAt + REFUND_GRANT_LIFETIME, ctx.endedAt + REFUND_GRANT_LIFETIME))
        const scopes = back.expiredScopes.map((x) => x.operations)
        const union = scopes.includes(null) ? null : [...new Set(scopes.flatMap((x) => x!))].sort()
        if (!isDeepStrictEqual(union, row.operations)) problems.push(`refund grant ${op.rid}: operations ${show(row.operations)}, expected ${show(union)}`)
        const g: Grant = {
          id: row.id,
          source: 'refund',
          externalRef: op.rid,
          amount: back.expired,
          remaining: back.expired,
          expiredAmount: 0,
          revokedAmount: 0,
          status: 'active',
          wasPending: false,
          operations: union,
          overageRepaid: 0,
          activatedAt: row.activated_at,
          priority: 0,
          expiresAt: row.expires_at,
          createdAt: row.created_at,
        }
        org.grants.push(g)
        payDebt(org, g)
        if (g.overageRepaid > 0) note(state.reached, 'a refund grant paid the debt')
      }
      r.allocations = back.kept
      r.status = 'refunded'
      r.refunded = r.charged
      r.balanceAfter = netAvailable(org, now)
      return [...problems, ...expectAnswer(outcome, requestAnswer(org, r, false))]
    }

    case 'revoke': {
      const org = state.orgs[op.org]!
      if (op.amount < 1) return expectError(outcome, '22023', 'invalid_amount')
      const grantId = call.grantId ?? null
      const existing = org.revocations[op.ref]
      if (existing) {
        if (existing.amount !== op.amount || existing.grantId !== grantId) return expectError(outcome, 'PT409', 'idempotency_conflict')
        return expectRevocationAnswer(outcome, org, existing, true)
      }
      const named = grantId === null ? undefined : org.grants.find((g) => g.id === grantId)
      if (grantId !== null && !named) return expectError(outcome, 'PT404', 'unknown_grant')
      settleDue(org, now)
      let allocations: Allocation[]
      let debt = 0
      let restored = 0
      if (!named) {
        // Burn-down order over every grant whatever its scope, then as debt up to the overage room.
        allocations = burn(org, Math.min(op.amount, spendable(org, now)), now, null)
        const fromGrants = allocations.reduce((sum, a) => sum + a.amount, 0)
        debt = Math.min(op.amount - fromGrants, Math.max(0, org.overageLimit - org.overage))
        org.overage += debt
      } else {
        const take = named.status === 'active' ? Math.min(op.amount, named.remaining) : 0
        named.remaining -= take
        allocations = take > 0 ? [{ grantId: named.id, amount: take }] : []
        // README: beyond its credits, what the grant had paid of the debt comes back as debt
        // (its payment refunded or disputed), whatever the limit.
        restored = Math.min(op.amount - take, named.overageRepaid)
        named.overageRepaid -= restored
        named.revokedAmount += restored
        org.overage += restored
        if (restored > 0) note(state.reached, 'a named revocation brought the debt back')
      }
      for (const a of allocations) org.grants.find((g) => g.id === a.grantId)!.revokedAmount += a.amount
      const revoked = allocations.reduce((sum, a) => sum + a.amount, 0) + debt + restored
      const v: Revocation = {
        externalRef: op.ref,
        amount: op.amount,
        grantId,
        reason: 'model',
        revoked,
        overage: debt,
        overageRestored: restored,
        shortfall: op.amount - revoked,
        allocations,
        balanceAfter: netAvailable(org, now),
      }
      org.revocations[op.ref] = v
      return expectRevocationAnswer(outcome, org, v, false)
    }

    case 'overageLimit': {
      if (op.limit < 0 || op.limit > 1e12) return expectError(outcome, '22023', 'invalid_limit')
      if (op.unknownOrg) return expectError(outcome, 'PT404', 'unknown_org')
      const org = state.orgs[op.org]!
      if (op.limit < org.overage) note(state.reached, 'a limit set below the debt')
      org.overageLimit = op.limit
      return expectOverageAnswer(outcome, state, org, now)
    }

    case 'expireGrants': {
      for (const org of state.orgs) settleDue(org, now)
      // The count covers every org in the database (and pg_cron may have been first): a number.
      return outcome.ok && typeof outcome.data === 'number' && outcome.data >= 0 ? [] : [`expected a count, got ${show(outcome)}`]
    }

    case 'expireHolds': {
      for (let i = 0; i < state.orgs.length; i++) releaseStaleHolds(state, i, now)
      return outcome.ok && typeof outcome.data === 'number' && outcome.data >= 0 ? [] : [`expected a count, got ${show(outcome)}`]
    }
  }
}

// Comparing with the database ----------------------------------------------------------------------

/**
 * Compares the model with the database's rows. A due grant the model has not settled may read
 * either way; when its row reads expired, the model follows (that is what `settled` lists).
 */
export function compareWithDatabase(state: State, ctx: StepContext): { problems: Check; settled: string[] } {
  const { snapshot, now } = ctx
  const problems: Check = []
  const settled: string[] = []
  state.orgs.forEach((org, i) => {
    const db = snapshot.orgs[i]!
    const where = `o${i}`
    // Grants.
    const rows = snapshot.grants.filter((g) => g.org === i)
    for (const g of org.grants) {
      const row = rows.find((x) => x.id === g.id)
      if (!row) {
        problems.push(`${where} grant ${g.source}:${g.externalRef}: missing from credit_grants`)
        continue
      }
      const expected = {
        amount: g.amount,
        remaining: g.remaining,
        status: g.status,
        expired_amount: g.expiredAmount,
        revoked_amount: g.revokedAmount,
        operations: g.operations,
        overage_repaid: g.overageRepaid,
        priority: g.priority,
        expires_at: g.expiresAt,
      }
      const got = {
        amount: row.amount,
        remaining: row.remaining,
        status: row.status,
        expired_amount: row.expired_amount,
        revoked_amount: row.revoked_amount,
        operations: row.operations,
        overage_repaid: row.overage_repaid,
        priority: row.priority,
        expires_at: row.expires_at,
      }
      const settledRow = { ...expected, status: 'expired', remaining: 0, expired_amount: g.expiredAmount + g.remaining }
      if (isDeepStrictEqual(got, expected)) continue
      if (isDue(g, now) && isDeepStrictEqual(got, settledRow)) {
        settled.push(g.id)
        continue
      }
      problems.push(`${where} grant ${g.source}:${g.externalRef}: expected ${show(expected)}${isDue(g, now) ? ` or ${show(settledRow)}` : ''}, got ${show(got)}`)
    }
    for (const row of rows) {
      if (!org.grants.some((g) => g.id === row.id)) problems.push(`${where}: unexpected grant ${show(row)}`)
    }
    // Requests.
    const requestRows = snapshot.requests.filter((r) => r.org === i)
    for (const r of Object.values(org.requests)) {
      const row = requestRows.find((x) => x.request_id === r.requestId)
      const expected = {
        kind: r.kind,
        operation: r.operation,
        quantity: r.quantity,
        status: r.status,
        charged: r.charged,
        reserved: r.reserved,
        refunded: r.refunded,
        balance_before: r.balanceBefore,
        balance_after: r.balanceAfter,
        hold_expires_at: r.holdExpiresAt,
        // Where its credits still are; the debt piece, if any, last.
        allocations: r.allocations.map((a) => ({ grant_id: a.grantId, amount: a.amount })),
      }
      if (!row) {
        problems.push(`${where} request ${r.requestId}: missing from credit_requests (expected ${show(expected)})`)
        continue
      }
      const { org: _org, request_id: _id, ...got } = row
      if (!isDeepStrictEqual(got, expected)) problems.push(`${where} request ${r.requestId}: expected ${show(expected)}, got ${show(got)}`)
    }
    for (const row of requestRows) {
      if (!org.requests[row.request_id]) problems.push(`${where}: unexpected request ${show(row)}`)
    }
    // Revocations.
    const revocationRows = snapshot.revocations.filter((v) => v.org === i)
    for (const v of Object.values(org.revocations)) {
      const row = revocationRows.find((x) => x.external_ref === v.externalRef)
      const expected = { amount: v.amount, grant_id: v.grantId, revoked: v.revoked, overage: v.overage, overage_restored: v.overageRestored, shortfall: v.shortfall }
      if (!row) {
        problems.push(`${where} revocation ${v.externalRef}: missing (expected ${show(expected)})`)
        continue
      }
      const { org: _org, external_ref: _ref, ...got } = row
      if (!isDeepStrictEqual(got, expected)) problems.push(`${where} revocation ${v.externalRef}: expected ${show(expected)}, got ${show(got)}`)
    }
    for (const row of revocationRows) {
      if (!org.revocations[row.external_ref]) problems.push(`${where}: unexpected revocation ${show(row)}`)
    }
    // Balances: the row is the sum of its active grants (due ones still unsettled included) net
    // of the debt, the ledger sums to the row (amounts, held, overage), held is the open holds,
    // the flag says whether some operation can still be paid for (overage included), and the
    // member's balance is what can be spent.
    const heldByRequests = Object.values(org.requests).reduce((sum, r) => sum + (r.status === 'held' ? r.reserved : 0), 0)
    if (heldByRequests !== org.held) problems.push(`model: o${i} held ${org.held} but its holds reserve ${heldByRequests}`)
    const activeRemaining = rows.reduce((sum, g) => sum + (g.status === 'active' ? g.remaining : 0), 0)
    const names = Object.values(state.operations).flatMap((o) => (o.price === null ? [] : [o.name]))
    const want = {
      available: activeRemaining - org.overage,
      held: org.held,
      overage: org.overage,
      overage_limit: org.overageLimit,
      flag: flagOf(rows, names, org.overage, org.overageLimit),
      ledger_amount: activeRemaining - org.overage,
      ledger_held: org.held,
      ledger_overage: org.overage,
    }
    const { balance, ...gotBalance } = db
    if (!isDeepStrictEqual(gotBalance, want)) problems.push(`${where} balance row / ledger sums: expected ${show(want)}, got ${show(gotBalance)}`)
    const next = org.grants
      .filter((g) => isSpendable(g, now) && g.expiresAt !== null)
      .reduce<{ at: Micros | null; amount: number | null }>((acc, g) => {
        if (acc.at === null || g.expiresAt! < acc.at) return { at: g.expiresAt, amount: g.remaining }
        if (g.expiresAt === acc.at) return { at: acc.at, amount: acc.amount! + g.remaining }
        return acc
      }, { at: null, amount: null })
    const wantBalance = {
      org_id: org.id,
      available: netAvailable(org, now),
      held: org.held,
      next_expiry_at: next.at,
      next_expiry_amount: next.amount,
      scheduled: 0,
      next_start_at: null,
      next_start_amount: null,
      overage: org.overage,
      overage_limit: org.overageLimit,
      scopes: scopesOf(org, now),
    }
    const gotMember = normalise(balance) as Record<string, Json>
    // A scope whose grants have nothing left may be listed with 0 or left out.
    if (Array.isArray(gotMember.scopes)) gotMember.scopes = gotMember.scopes.filter((x) => (x as { available?: Json }).available !== 0)
    if (!isDeepStrictEqual(gotMember, wantBalance)) problems.push(`${where} get_credit_balance: expected ${show(wantBalance)}, got ${show(gotMember)}`)
  })
  return { problems, settled }
}

/**
 * get_credit_balance's scopes: spendable credits by operation set, the unscoped group first,
 * then by operations (as PostgreSQL orders text[]: element by element, a prefix first).
 */
function scopesOf(org: OrgState, now: Micros): Json[] {
  const groups = new Map<string, { operations: string[] | null; available: number }>()
  for (const g of org.grants) {
    if (!isSpendable(g, now)) continue
    const key = JSON.stringify(g.operations)
    const group = groups.get(key) ?? { operations: g.operations, available: 0 }
    group.available += g.remaining
    groups.set(key, group)
  }
  const order = (a: string[] | null, b: string[] | null): number => {
    if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
    return a.length - b.length
  }
  return [...groups.values()].sort((a, b) => order(a.operations, b.operations)).map((x) => ({ operations: x.operations, available: x.available }))
}

/** The model follows the rows of due grants that something (pg_cron, a charge) has settled. */
export function absorbSettled(state: State, settled: string[]): void {
  for (const org of state.orgs) {
    for (const g of org.grants) {
      if (settled.includes(g.id)) {
        g.status = 'expired'
        g.expiredAmount += g.remaining
        g.remaining = 0
      }
    }
  }
}

// Serial orders ------------------------------------------------------------------------------------

function permutations(n: number): number[][] {
  if (n <= 1) return [[...Array(n).keys()]]
  const out: number[][] = []
  for (const rest of permutations(n - 1)) {
    for (let at = 0; at <= rest.length; at++) out.push([...rest.slice(0, at), n - 1, ...rest.slice(at)])
  }
  // Identity first: it is the order a one-call step has, and the first one reported.
  return out.sort((a, b) => a.join().localeCompare(b.join()))
}

/** An event of a serial order: one of the step's calls, or pg_cron releasing an org's stale holds. */
type Event = { call: number } | { cronHolds: number }

export interface StepVerdict {
  state?: State
  /** Orgs whose stale holds pg_cron released during the step, in the serial order accepted. */
  cronReleased?: number[]
  /** Why no serial order explains what the database answered and holds (the closest one). */
  report?: string
}

/**
 * Accepts a step when some serial order of its calls (the database serialises calls on an
 * org's balance lock, in an order we do not see), with pg_cron's release of stale holds at any
 * point of it or not yet, gives exactly the answers and the rows observed.
 */
export function verifyStep(state: State, calls: Call[], outcomes: Outcome[], ctx: StepContext): StepVerdict {
  const staleOrgs = state.orgs.map((_, i) => i).filter((i) => hasStaleHolds(state, i, ctx.now))
  // For each org with stale holds: pg_cron releases them before call k (k = 0..n), or not yet (-1).
  const placements: number[][] = [[]]
  for (const _ of staleOrgs) {
    const next: number[][] = []
    for (const p of placements) for (let k = -1; k <= calls.length; k++) next.push([...p, k])
    placements.splice(0, placements.length, ...next)
  }
  let best: { order: Event[]; problems: Check } | undefined
  for (const order of permutations(calls.length)) {
    for (const placement of placements) {
      const events: Event[] = []
      for (let k = 0; k <= calls.length; k++) {
        staleOrgs.forEach((org, j) => {
          if (placement[j] === k) events.push({ cronHolds: org })
        })
        if (k < calls.length) events.push({ call: order[k]! })
      }
      const trial = structuredClone(state)
      const problems: Check = []
      for (const event of events) {
        if ('call' in event) {
          for (const p of applyCall(trial, calls[event.call]!, outcomes[event.call]!, ctx)) problems.push(`${describeOp(calls[event.call]!.op)}: ${p}`)
        } else {
          releaseStaleHolds(trial, event.cronHolds, ctx.now)
        }
      }
      if (problems.length === 0) {
        const compared = compareWithDatabase(trial, ctx)
        if (compared.problems.length === 0) {
          absorbSettled(trial, compared.settled)
          return { state: trial, cronReleased: events.flatMap((e) => ('cronHolds' in e ? [e.cronHolds] : [])) }
        }
        problems.push(...compared.problems)
      }
      if (!best || problems.length < best.problems.length) best = { order: events, problems }
    }
  }
  const order = best!.order.map((e) => ('call' in e ? describeOp(calls[e.call]!.op) : `pg_cron releases o${e.cronHolds}'s stale holds`))
  const answers = calls.map((c, i) => `  ${describeOp(c.op)} [${c.via}] → ${show(outcomes[i])}`)
  return {
    report: [
      'the database disagrees with the model',
      'answers:',
      ...answers,
      `closest serial order: ${order.join(' ; ') || '(no calls)'}`,
      'mismatches:',
      ...best!.problems.map((p) => `  - ${p}`),
    ].join('\n'),
  }
}

/** Moves the clock: every expiry and hold TTL of the run comes `hours` closer. */
export function shiftClock(state: State, hours: number): void {
  for (const org of state.orgs) {
    for (const g of org.grants) if (g.expiresAt !== null) g.expiresAt -= hours * HOUR
    for (const r of Object.values(org.requests)) if (r.holdExpiresAt !== null) r.holdExpiresAt -= hours * HOUR
  }
}
