import { createClient, type SupabaseClient } from '@supabase/supabase-js'
import fc from 'fast-check'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { userJwt } from '@tollgate/local-stack'
import { supabaseOptions } from '../support/clients.ts'
import {
  describeOp,
  INVALID_NAME,
  operationNames,
  shiftClock,
  verifyStep,
  type Call,
  type Json,
  type Micros,
  type Op,
  type Outcome,
  type Snapshot,
  type State,
  type Via,
} from '../support/credit-model.ts'
import { env } from '../support/env.ts'
import { scale } from './own-stack.ts'

// Model-based test of the money core. fast-check generates sequences of steps over three orgs:
// grants (expiring or not, of several priorities, pending then activated or voided, spendable on
// anything or scoped to some of the run's operations), overage limits raised and lowered (below
// the debt too), charges, holds captured in full or in part, released, refunded (into and out of
// overage), revocations, replays of the same id, idempotency conflicts, the two expiry jobs and
// moves of the clock. A step is one call, or a
// few sent at once on separate connections (pg sessions as PostgREST opens them, or PostgREST
// itself). After every step the database is checked against the reference model
// (tests/support/credit-model.ts): every answer exactly (balances before and after, charged,
// replayed, error keys and SQLSTATEs), every grant's remaining and status, every request's and
// revocation's state, the balance row against its grants, the ledger sums, the member's
// get_credit_balance; reconcile_credits() at the end of each sequence and every so many steps.
// Parallel calls pass when some serial order of them (and of pg_cron's own runs) explains what
// the database answered and holds.
//
// Only public RPCs and reads of the credit tables are used, with one exception: moving the
// clock. No RPC takes a past expiry, and waiting for one is too slow, so a clock move shifts
// every expires_at and hold_expires_at of the run's orgs back by whole hours, as the owner
// (postgres), under the orgs' balance locks (the lock every money path takes first). Expiries
// and TTLs are whole hours ahead of the clock, so a sequence never races the real clock.
//
// Scale: FAULTS_SCALE=short (npm test) runs a few thousand calls; full (npm run test:faults)
// many more. MODEL_RUNS and MODEL_COMMANDS override either. A failure prints the shrunk
// sequence and `{ seed, path }`; replay it with MODEL_SEED=<seed> MODEL_PATH=<path> (and
// MODEL_REPLAY_PATH=<replayPath from the counterexample>).

const runs = Number(process.env.MODEL_RUNS ?? (scale === 'full' ? 100 : 20))
/** Sequences are up to this long (about half of it on average). */
const maxCommands = Number(process.env.MODEL_COMMANDS ?? (scale === 'full' ? 300 : 240))
/**
 * reconcile_credits() checks every org of the database (0.1-0.3 ms each here): after every
 * sequence and every this many steps. The per-step checks cover the run's orgs meanwhile.
 */
const reconcileEvery = Number(process.env.MODEL_RECONCILE_EVERY ?? 200)
/** For the whole property, shrinking included. */
const timeLimitMs = scale === 'full' ? 3_000_000 : 240_000
const LANES = 4
const ORGS = 3

const nowMicros = (): Micros => Date.now() * 1000

// Connections --------------------------------------------------------------------------------------

/** The owner's session: setup, snapshots, clock moves and reconcile. */
let admin: pg.Client
/** One session per parallel lane, as PostgREST would hold them. */
const lanes: pg.Client[] = []
let serviceRest: SupabaseClient
let operations: State['operations']

interface Run {
  orgIds: string[]
  userId: string
  userRest: SupabaseClient
  steps: number
}

/** What the property did, printed at the end: counts, coverage and where the time went. */
const stats = {
  runs: 0,
  steps: 0,
  calls: 0,
  parallelSteps: 0,
  clockMoves: 0,
  reconciles: 0,
  cronReleases: 0,
  failures: 0,
  outcomes: new Map<string, number>(),
  covered: new Map<string, number>(),
  ms: { calls: 0, snapshot: 0, model: 0, reconcile: 0, setup: 0 },
}

async function timed<T>(what: keyof typeof stats.ms, work: () => Promise<T>): Promise<T> {
  const start = performance.now()
  try {
    return await work()
  } finally {
    stats.ms[what] += performance.now() - start
  }
}

function count(call: Call, outcome: Outcome): void {
  const data = outcome.ok && typeof outcome.data === 'object' && outcome.data !== null && !Array.isArray(outcome.data) ? outcome.data : {}
  const note = data.replayed === true
    ? ' (replayed)'
    : typeof data.overage === 'number' && data.overage > 0 && (call.op.t === 'consume' || call.op.t === 'reserve')
      ? ' (into overage)'
      : call.op.t === 'overageLimit' && typeof data.overage === 'number' && data.overage > (data.overage_limit as number)
        ? ' (below the debt)'
        : call.op.t === 'grant' && Array.isArray(data.operations)
          ? ' (scoped)'
          : ''
  const what = outcome.ok ? `${call.op.t}${note}` : `${call.op.t} → ${outcome.key}`
  stats.outcomes.set(what, (stats.outcomes.get(what) ?? 0) + 1)
}

beforeAll(async () => {
  admin = new pg.Client({ connectionString: env.SUPABASE_DB_URL })
  await admin.connect()
  for (let i = 0; i < LANES; i++) {
    const lane = new pg.Client({ connectionString: env.SUPABASE_DB_URL })
    await lane.connect()
    lanes.push(lane)
  }
  serviceRest = createClient(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY, supabaseOptions(env.SUPABASE_SERVICE_ROLE_KEY))
  const prefix = `model_${crypto.randomUUID().slice(0, 8)}`
  operations = {
    a: { name: `${prefix}_a`, price: 1 },
    b: { name: `${prefix}_b`, price: 5 },
    z: { name: `${prefix}_z`, price: 0 },
    u: { name: `${prefix}_unpriced`, price: null },
  }
  for (const { name, price } of Object.values(operations)) {
    if (price !== null) await admin.query('insert into public.credit_prices (operation, credits) values ($1, $2)', [name, price])
  }
  const { rows } = await admin.query<{ n: number }>('select count(*)::int as n from public.credit_prices where operation like $1 and active', [`${prefix}%`])
  if (rows[0]!.n !== 3) throw new Error('setup: prices not in place')
})

afterAll(async () => {
  await Promise.all([admin, ...lanes].map((c) => c?.end().catch(() => {})))
})

// Calls ----------------------------------------------------------------------------------------------

function parseDetail(text: string | undefined | null): Record<string, Json> {
  if (!text) return {}
  try {
    const value = JSON.parse(text) as Json
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {}
  } catch {
    return {}
  }
}

/** A value as an SQL literal (the call is sent as one simple query: one round trip). */
function literal(client: pg.Client, value: unknown): string {
  if (value === null || value === undefined) return 'null'
  if (Array.isArray(value)) return `array[${value.map((v) => literal(client, v)).join(', ')}]::text[]`
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return client.escapeLiteral(String(value))
}

/** As PostgREST does it: role and claims local to a transaction, then the call. */
async function callPg(client: pg.Client, claims: Record<string, string>, fn: string, args: Record<string, unknown>): Promise<Outcome> {
  const params = Object.entries(args).map(([name, value]) => `${name} => ${literal(client, value)}`)
  try {
    const results = (await client.query(
      `begin; select set_config('role', ${literal(client, claims.role)}, true), set_config('request.jwt.claims', ${literal(client, JSON.stringify(claims))}, true);
       select public.${fn}(${params.join(', ')}) as r; commit;`,
    )) as unknown as pg.QueryResult<{ r: Json }>[]
    return { ok: true, data: results[2]!.rows[0]!.r }
  } catch (error) {
    await client.query('rollback')
    const e = error as pg.DatabaseError
    if (!e.code) throw error
    return { ok: false, code: e.code, key: e.message, detail: parseDetail(e.detail) }
  }
}

async function callRest(client: SupabaseClient, fn: string, args: Record<string, unknown>): Promise<Outcome> {
  const { data, error } = await client.rpc(fn, args)
  if (error) return { ok: false, code: error.code, key: error.message, detail: parseDetail(error.details) }
  return { ok: true, data: data as Json }
}

/**
 * Fixes what a call needs when it is sent: the absolute expiry, and the grant or request an op
 * aims at by position among those the model knows at that moment.
 */
function prepare(op: Op, via: Via, state: State): Call {
  switch (op.t) {
    case 'grant':
      return { op, via, expiresAt: op.expiresInHours === null ? null : Math.floor(Date.now() + op.expiresInHours * 3_600_000) * 1000 }
    case 'activate':
    case 'void': {
      if (op.pick === null) return { op, via }
      const pending = state.orgs[op.org]!.grants.filter((g) => g.status === 'pending')
      const g = pending[op.pick % Math.max(1, pending.length)]
      return { op: { ...op, pick: null, ...(g ? { source: g.source, ref: g.externalRef } : {}) }, via }
    }
    case 'capture':
    case 'release':
    case 'refund': {
      if (op.pick === null) return { op, via }
      const ids = Object.values(state.orgs[op.org]!.requests)
        .filter((r) => op.t === 'refund' || r.kind === 'hold')
        .map((r) => r.requestId)
        .sort()
      return { op: { ...op, pick: null, rid: ids[op.pick % Math.max(1, ids.length)] ?? op.rid }, via }
    }
    case 'revoke': {
      if (!op.grant) return { op, via, grantId: null }
      const orgIndex = op.grant.from === 'own' ? op.org : (op.org + 1) % state.orgs.length
      const grants = op.grant.from === 'nowhere' ? [] : state.orgs[orgIndex]!.grants
      const g = grants[op.grant.pick % Math.max(1, grants.length)]
      return { op: { ...op, grantLabel: g ? `o${orgIndex}:${g.source}:${g.externalRef}` : 'none' }, via, grantId: g?.id ?? crypto.randomUUID() }
    }
    default:
      return { op, via }
  }
}

function rpcOf(call: Call, run: Run): { fn: string; args: Record<string, unknown>; asUser: boolean } {
  const { op } = call
  const orgId = 'org' in op ? run.orgIds[op.org]! : ''
  switch (op.t) {
    case 'grant':
      return {
        fn: 'grant_credits',
        asUser: false,
        args: {
          p_org_id: orgId,
          p_amount: op.amount,
          p_source: op.source,
          p_external_ref: op.ref,
          p_expires_at: call.expiresAt == null ? null : new Date(call.expiresAt / 1000).toISOString(),
          p_priority: op.priority,
          p_pending: op.pending,
          // Left out: the default, any operation.
          ...(op.operations === null ? {} : { p_operations: operationNames({ operations }, op.operations) }),
        },
      }
    case 'overageLimit':
      return {
        fn: 'set_overage_limit',
        asUser: false,
        args: { p_org_id: op.unknownOrg ? crypto.randomUUID() : orgId, p_limit: op.limit },
      }
    case 'activate':
      return { fn: 'activate_credit_grant', asUser: false, args: { p_org_id: orgId, p_source: op.source, p_external_ref: op.ref } }
    case 'void':
      return { fn: 'void_credit_grant', asUser: false, args: { p_org_id: orgId, p_source: op.source, p_external_ref: op.ref } }
    case 'consume':
      return {
        fn: 'consume_credits',
        asUser: true,
        args: { p_operation: operations[op.operation]!.name, p_request_id: op.rid, p_quantity: op.quantity, p_org_id: op.defaultOrg ? null : orgId },
      }
    case 'reserve':
      return {
        fn: 'reserve_credits',
        asUser: false,
        args: {
          p_org_id: orgId,
          p_user_id: op.withUser ? run.userId : null,
          p_operation: operations[op.operation]!.name,
          p_request_id: op.rid,
          p_quantity: op.quantity,
          p_ttl_seconds: op.ttlHours * 3600,
        },
      }
    case 'capture':
      return { fn: 'capture_credits', asUser: false, args: { p_org_id: orgId, p_request_id: op.rid, p_quantity: op.quantity } }
    case 'release':
      return { fn: 'release_credits', asUser: false, args: { p_org_id: orgId, p_request_id: op.rid, p_backend_error: op.backendError } }
    case 'refund':
      return { fn: 'refund_credits', asUser: false, args: { p_org_id: orgId, p_request_id: op.rid, p_reason: 'model test refund' } }
    case 'revoke':
      return {
        fn: 'revoke_credits',
        asUser: false,
        args: { p_org_id: orgId, p_amount: op.amount, p_reason: 'model test revocation', p_external_ref: op.ref, p_grant_id: call.grantId ?? null },
      }
    case 'expireGrants':
      return { fn: 'expire_credit_grants', asUser: false, args: { p_batch_size: 10000 } }
    case 'expireHolds':
      return { fn: 'expire_stale_holds', asUser: false, args: { p_batch_size: 10000 } }
  }
}

async function execute(call: Call, run: Run, lane: number): Promise<Outcome> {
  const { fn, args, asUser } = rpcOf(call, run)
  if (call.via === 'rest') return callRest(asUser ? run.userRest : serviceRest, fn, args)
  const claims: Record<string, string> = asUser ? { sub: run.userId, role: 'authenticated' } : { role: 'service_role' }
  return callPg(lanes[lane]!, claims, fn, args)
}

// Reading the database -----------------------------------------------------------------------------

const micros = (column: string) => `(extract(epoch from ${column}) * 1000000)::bigint`

const SNAPSHOT_SQL = `
with o as (select org_id, (n - 1)::int as idx from unnest($1::uuid[]) with ordinality as t(org_id, n))
select
  (select jsonb_agg(jsonb_build_object('available', b.available, 'held', b.held, 'overage', b.overage,
            'overage_limit', b.overage_limit, 'flag', org.has_usage_credits, 'ledger_amount', l.amount, 'ledger_held', l.held,
            'ledger_overage', l.overage, 'balance', public.get_credit_balance(o.org_id)) order by o.idx)
     from o
     join public.credit_balances b on b.org_id = o.org_id
     join public.orgs org on org.id = o.org_id
     cross join lateral (select coalesce(sum(x.amount), 0) as amount, coalesce(sum(x.held_delta), 0) as held,
                                coalesce(sum(x.overage_delta), 0) as overage
                         from public.credit_ledger x where x.org_id = o.org_id) l) as orgs,
  (select coalesce(jsonb_agg(jsonb_build_object('org', o.idx, 'id', g.id, 'source', g.source, 'external_ref', g.external_ref,
            'amount', g.amount, 'remaining', g.remaining, 'status', g.status, 'expired_amount', g.expired_amount,
            'revoked_amount', g.revoked_amount, 'operations', g.operations, 'overage_repaid', g.overage_repaid, 'priority', g.priority,
            'expires_at', ${micros('g.expires_at')}, 'created_at', ${micros('g.created_at')}, 'activated_at', ${micros('g.activated_at')})), '[]')
     from o join public.credit_grants g on g.org_id = o.org_id) as grants,
  (select coalesce(jsonb_agg(jsonb_build_object('org', o.idx, 'request_id', r.request_id, 'kind', r.kind, 'operation', r.operation,
            'quantity', r.quantity, 'status', r.status, 'charged', r.charged, 'reserved', r.reserved, 'refunded', r.refunded,
            'balance_before', r.balance_before, 'balance_after', r.balance_after, 'hold_expires_at', ${micros('r.hold_expires_at')},
            'allocations', r.allocations)), '[]')
     from o join public.credit_requests r on r.org_id = o.org_id) as requests,
  (select coalesce(jsonb_agg(jsonb_build_object('org', o.idx, 'external_ref', v.external_ref, 'amount', v.amount,
            'grant_id', v.grant_id, 'revoked', v.revoked, 'overage', v.overage, 'overage_restored', v.overage_restored,
            'shortfall', v.shortfall)), '[]')
     from o join public.credit_revocations v on v.org_id = o.org_id) as revocations`

/**
 * The run's rows and each org's get_credit_balance, in one statement (one snapshot). The admin
 * session carries the run's member in request.jwt.claims, so get_credit_balance resolves the
 * org by that user's membership.
 */
async function readSnapshot(run: Run): Promise<Snapshot> {
  const { rows } = await admin.query<Snapshot>(SNAPSHOT_SQL, [run.orgIds])
  return rows[0]!
}

async function reconcile(run: Run): Promise<void> {
  stats.reconciles++
  const { rows } = await admin.query<{ issues: number; run_id: string }>(
    `select public.reconcile_credits() as issues, currval(pg_get_serial_sequence('public.credit_reconciliation_runs', 'id')) as run_id`,
  )
  const { rows: issues } = await admin.query(
    `select org_id, check_name, expected, actual, detail from public.credit_reconciliation_issues
     where run_id = $1 and check_name <> 'payment_exception' order by id`,
    [rows[0]!.run_id],
  )
  const ours = issues.filter((i) => run.orgIds.includes(i.org_id))
  if (ours.length > 0 || rows[0]!.issues !== 0) {
    throw new Error(`reconcile_credits() = ${rows[0]!.issues}; for this sequence's orgs: ${JSON.stringify(ours)}; all: ${JSON.stringify(issues.slice(0, 10))}`)
  }
}

async function check(box: ModelBox, run: Run, calls: Call[], outcomes: Outcome[], startedAt: Micros, endedAt: Micros, label: string) {
  const now = nowMicros()
  const snapshot = await timed('snapshot', () => readSnapshot(run))
  const modelStart = performance.now()
  const verdict = verifyStep(box.state, calls, outcomes, { now, startedAt, endedAt, snapshot })
  stats.ms.model += performance.now() - modelStart
  if (!verdict.state) {
    const failure = `step ${run.steps} ${label}: ${verdict.report}`
    // Shrinking re-runs sequences against the database and can take a while: say what failed first.
    if (stats.failures++ === 0) console.error(`credit model: first failure, before shrinking:\n${failure}`)
    throw new Error(failure)
  }
  box.state = verdict.state
  stats.cronReleases += verdict.cronReleased?.length ?? 0
}

async function afterStep(run: Run): Promise<void> {
  run.steps++
  stats.steps++
  if (run.steps % reconcileEvery === 0) await timed('reconcile', () => reconcile(run))
}

// Commands ------------------------------------------------------------------------------------------

interface ModelBox {
  state: State
}

interface Planned {
  op: Op
  via: Via
}

const label = ({ op, via }: Planned) => `${describeOp(op)}${via === 'rest' ? ' via PostgREST' : ''}`

class Step implements fc.AsyncCommand<ModelBox, Run> {
  /** The calls as last sent (targets resolved), for the report. */
  private sent: Planned[] | undefined
  constructor(readonly planned: Planned[]) {}
  check = () => true
  async run(box: ModelBox, run: Run): Promise<void> {
    const calls = this.planned.map(({ op, via }) => prepare(op, via, box.state))
    this.sent = calls.map(({ op, via }) => ({ op, via }))
    const startedAt = nowMicros()
    const outcomes = await timed('calls', () => Promise.all(calls.map((call, lane) => execute(call, run, lane))))
    const endedAt = nowMicros()
    calls.forEach((call, i) => count(call, outcomes[i]!))
    stats.calls += calls.length
    if (calls.length > 1) stats.parallelSteps++
    await check(box, run, calls, outcomes, startedAt, endedAt, this.toString())
    await afterStep(run)
  }
  toString = () => {
    const calls = this.sent ?? this.planned
    return calls.length === 1 ? label(calls[0]!) : `parallel(${calls.map(label).join(' | ')})`
  }
}

class MoveClock implements fc.AsyncCommand<ModelBox, Run> {
  constructor(readonly hours: number) {}
  check = () => true
  async run(box: ModelBox, run: Run): Promise<void> {
    stats.clockMoves++
    await admin.query('begin')
    try {
      // Balance rows first, in org order, as every money path and the cron jobs lock them: while
      // they are held nothing moves in these orgs, so what pg_cron did before is seen here.
      await admin.query('select 1 from public.credit_balances where org_id = any($1::uuid[]) order by org_id for update', [run.orgIds])
      // Read in this transaction, under the locks.
      const at = nowMicros()
      await check(box, run, [], [], at, at, `${this} (before)`)
      const shift = `make_interval(hours => ${this.hours})`
      await admin.query(`update public.credit_grants set expires_at = expires_at - ${shift} where org_id = any($1::uuid[]) and expires_at is not null`, [run.orgIds])
      await admin.query(
        `update public.credit_requests set hold_expires_at = hold_expires_at - ${shift} where org_id = any($1::uuid[]) and hold_expires_at is not null`,
        [run.orgIds],
      )
      await admin.query('commit')
    } catch (error) {
      await admin.query('rollback')
      throw error
    }
    shiftClock(box.state, this.hours)
    const at = nowMicros()
    await check(box, run, [], [], at, at, `${this} (after)`)
    await afterStep(run)
  }
  toString = () => `clock +${this.hours}h`
}

// Generators -------------------------------------------------------------------------------------

const org = fc.integer({ min: 0, max: ORGS - 1 })
const via = fc.constantFrom<Via>('pg', 'pg', 'pg', 'rest')
const consumeIds = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5']
const holdIds = ['h0', 'h1', 'h2', 'h3', 'h4']
/** Each request id's usual operation and quantity, so that retries are replays, not conflicts. */
const usual: Record<string, [string, number]> = {
  c0: ['a', 1], c1: ['b', 1], c2: ['a', 3], c3: ['z', 2], c4: ['b', 2], c5: ['a', 7],
  h0: ['a', 2], h1: ['b', 1], h2: ['a', 5], h3: ['z', 1], h4: ['b', 2],
}
const requestId = (mine: string[], other: string[]) =>
  fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...mine) }, { weight: 1, arbitrary: fc.constantFrom(...other) })
/** The request id with its usual operation and quantity, or now and then others (a conflict). */
const charge = (mine: string[], other: string[]) =>
  fc.tuple(requestId(mine, other), fc.nat({ max: 9 }), fc.constantFrom('a', 'b', 'z', 'u'), fc.integer({ min: 0, max: 4 })).map(
    ([rid, dice, operation, quantity]) => (dice > 0 ? { rid, operation: usual[rid]![0], quantity: usual[rid]![1] } : { rid, operation, quantity }),
  )
const source = fc.constantFrom('purchase', 'promotion')
const grantRef = fc.constantFrom('g0', 'g1', 'g2', 'g3', 'g4')
/**
 * A grant's operations: mostly any; often some of the priced operations (duplicates and any
 * order: stored sorted and de-duplicated); now and then a set the RPC refuses (empty, an
 * unpriced operation, a malformed name, a null element).
 */
const scope = fc.oneof(
  { weight: 12, arbitrary: fc.constant(null) },
  { weight: 6, arbitrary: fc.array(fc.constantFrom('a', 'a', 'b', 'b', 'z'), { minLength: 1, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom<Array<string | null>>([], ['u'], ['a', 'u'], [INVALID_NAME], ['b', null]) },
)
/** Mostly an existing target, by position; now and then the id or reference as generated. */
const pick = fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 15 }) }, { weight: 1, arbitrary: fc.constant(null) })

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('grant' as const),
      org,
      // Small grants too, so that orgs run out and go into overage.
      amount: fc.oneof(
        { weight: 12, arbitrary: fc.integer({ min: 1, max: 100 }) },
        { weight: 8, arbitrary: fc.integer({ min: 1, max: 20 }) },
        { weight: 1, arbitrary: fc.constant(0) },
      ),
      source,
      ref: grantRef,
      expiresInHours: fc.oneof(
        { weight: 4, arbitrary: fc.constant(null) },
        { weight: 4, arbitrary: fc.constantFrom(1, 2, 3, 24) },
        { weight: 1, arbitrary: fc.constant(-1) },
      ),
      priority: fc.constantFrom(0, 10, 100),
      pending: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      operations: scope,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('overageLimit' as const),
      org,
      limit: fc.oneof(
        { weight: 12, arbitrary: fc.constantFrom(0, 5, 20, 60, 300) },
        { weight: 1, arbitrary: fc.constantFrom(-1, 1_000_000_000_001) },
      ),
      unknownOrg: fc.oneof({ weight: 15, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constantFrom('activate' as const, 'activate' as const, 'void' as const), org, source, ref: grantRef, pick }) },
  {
    weight: 7,
    arbitrary: fc
      .tuple(org, charge(consumeIds, holdIds), fc.boolean())
      .map(([o, c, personal]) => ({ t: 'consume' as const, org: o, ...c, defaultOrg: o === 0 && personal })),
  },
  {
    weight: 4,
    arbitrary: fc
      .tuple(org, charge(holdIds, consumeIds), fc.constantFrom(1, 3, 24), fc.nat({ max: 5 }))
      .map(([o, c, ttlHours, dice]) => ({ t: 'reserve' as const, org: o, ...c, ttlHours, withUser: dice > 0 })),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('capture' as const),
      org,
      rid: requestId(holdIds, consumeIds),
      quantity: fc.oneof(
        { weight: 3, arbitrary: fc.constant(null) },
        { weight: 4, arbitrary: fc.integer({ min: 1, max: 2 }) },
        { weight: 1, arbitrary: fc.constant(0) },
        { weight: 1, arbitrary: fc.integer({ min: 3, max: 8 }) },
      ),
      pick,
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), org, rid: requestId(holdIds, consumeIds), backendError: fc.boolean(), pick }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('refund' as const), org, rid: fc.constantFrom(...consumeIds, ...holdIds), pick }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('revoke' as const),
      org,
      // Large ones too: beyond the grants, into the overage room.
      amount: fc.oneof(
        { weight: 14, arbitrary: fc.integer({ min: 1, max: 30 }) },
        { weight: 6, arbitrary: fc.integer({ min: 31, max: 150 }) },
        { weight: 1, arbitrary: fc.constant(0) },
      ),
      ref: fc.constantFrom('v0', 'v1', 'v2', 'v3'),
      grant: fc.oneof(
        { weight: 4, arbitrary: fc.constant(null) },
        { weight: 4, arbitrary: fc.record({ pick: fc.nat({ max: 15 }), from: fc.constant('own' as const) }) },
        { weight: 1, arbitrary: fc.record({ pick: fc.nat({ max: 15 }), from: fc.constantFrom('other' as const, 'nowhere' as const) }) },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: 'expireGrants' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'expireHolds' as const }) },
)

const planned: fc.Arbitrary<Planned> = fc.record({ op: opArb, via })

const stepArb = fc.oneof(
  { weight: 6, arbitrary: planned.map((p) => [p]) },
  // (Parallel steps may shrink to one call.)
  { weight: 3, arbitrary: fc.array(planned, { minLength: 1, maxLength: LANES }) },
  // The same call sent several times at once: a retry storm must charge once.
  {
    weight: 1,
    arbitrary: fc
      .tuple(planned, fc.array(via, { minLength: 0, maxLength: LANES - 1 }))
      .map(([p, vias]) => [p, ...vias.map((v) => ({ op: p.op, via: v }))]),
  },
)

const commandArbs = [
  fc.oneof(
    { weight: 20, arbitrary: stepArb.map((ps): fc.AsyncCommand<ModelBox, Run> => new Step(ps)) },
    { weight: 1, arbitrary: fc.constantFrom(1, 2, 3, 24, 170).map((h): fc.AsyncCommand<ModelBox, Run> => new MoveClock(h)) },
  ),
]

/** What a sequence reached (printed as counts, to see that the generators reach the rules). */
function covered(state: State): string[] {
  const grants = state.orgs.flatMap((o) => o.grants)
  const requests = state.orgs.flatMap((o) => Object.values(o.requests))
  const revocations = state.orgs.flatMap((o) => Object.values(o.revocations))
  const found: [string, boolean][] = [
    ['a grant expired with credits left', grants.some((g) => g.status === 'expired' && g.expiredAmount > 0)],
    ['a pending grant activated', grants.some((g) => g.wasPending && g.status !== 'pending' && g.status !== 'voided')],
    ['a pending grant voided', grants.some((g) => g.status === 'voided')],
    ['a charge refunded', requests.some((r) => r.kind === 'consume' && r.status === 'refunded')],
    ['a capture refunded', requests.some((r) => r.kind === 'hold' && r.status === 'refunded')],
    ['expired credits refunded as a new grant', grants.some((g) => g.source === 'refund')],
    ['expired scoped credits refunded as a scoped grant', grants.some((g) => g.source === 'refund' && g.operations !== null)],
    ['a partial capture', requests.some((r) => r.status !== 'held' && r.kind === 'hold' && r.charged > 0 && r.charged < r.reserved)],
    ['a hold released', requests.some((r) => r.status === 'released')],
    ['a hold released by its TTL', requests.some((r) => r.status === 'expired')],
    ['a revocation with a shortfall', revocations.some((v) => v.shortfall > 0)],
    ['a named grant revoked', revocations.some((v) => v.grantId !== null && v.revoked > 0)],
    ['a scoped grant spent', grants.some((g) => g.operations !== null && g.remaining + g.expiredAmount + g.revokedAmount < g.amount)],
    ['a charge into overage', requests.some((r) => r.overage > 0)],
    ['a hold into overage released or captured in part', requests.some((r) => r.kind === 'hold' && r.overage > 0 && r.status !== 'held' && r.charged < r.reserved)],
    ['a charge into overage refunded', requests.some((r) => r.overage > 0 && r.status === 'refunded')],
    ['debt repaid by a grant', grants.some((g) => g.overageRepaid > 0)],
    ['debt repaid by an activated pending grant', grants.some((g) => g.overageRepaid > 0 && g.wasPending)],
    ['a revocation into overage', revocations.some((v) => v.overage > 0)],
    ['an org still in debt', state.orgs.some((o) => o.overage > 0)],
    ['a debt above the limit with scoped credits left (the flag from the grants)', state.orgs.some((o) => o.overage > o.overageLimit && o.grants.some((g) => g.operations !== null && g.status === 'active' && g.remaining > 0))],
    ...state.reached.map((what): [string, boolean] => [what, true]),
  ]
  return found.filter(([, yes]) => yes).map(([what]) => what)
}

// Setup -----------------------------------------------------------------------------------------

async function newRun(): Promise<{ model: ModelBox; real: Run }> {
  const userId = crypto.randomUUID()
  await admin.query(`insert into auth.users (id, aud, role, email) values ($1, 'authenticated', 'authenticated', $2)`, [
    userId,
    `model-${userId.slice(0, 8)}@example.test`,
  ])
  const personal = await admin.query<{ id: string }>('select id from public.orgs where personal_user_id = $1', [userId])
  const teams = await admin.query<{ id: string }>(`insert into public.orgs (name) select 'model team ' || n from generate_series(1, $1::int) n returning id`, [
    ORGS - 1,
  ])
  const orgIds = [personal.rows[0]!.id, ...teams.rows.map((r) => r.id)]
  await admin.query(`insert into public.org_members (org_id, user_id, role) select unnest($1::uuid[]), $2, 'member'`, [orgIds.slice(1), userId])
  await admin.query(`select set_config('request.jwt.claims', $1, false)`, [JSON.stringify({ sub: userId, role: 'authenticated' })])
  const jwt = await userJwt(userId, env.SUPABASE_JWT_SECRET)
  const real: Run = { orgIds, userId, userRest: createClient(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, supabaseOptions(jwt)), steps: 0 }
  const model: ModelBox = {
    state: { orgs: orgIds.map((id) => ({ id, held: 0, overage: 0, overageLimit: 0, grants: [], requests: {}, revocations: {} })), operations, reached: [] },
  }
  // The fresh orgs are empty, with their balance rows, and the user is a member of each.
  const at = nowMicros()
  await check(model, real, [], [], at, at, 'setup')
  stats.runs++
  return { model, real }
}

describe('money core against a reference model', () => {
  it(
    'answers and books every sequence of grants, charges, holds, refunds, revocations, expiries and cron runs as the model does',
    async () => {
      const replay = process.env.MODEL_SEED
        ? { seed: Number(process.env.MODEL_SEED), path: process.env.MODEL_PATH, endOnFailure: true }
        : {}
      await fc.assert(
        fc.asyncProperty(fc.commands(commandArbs, { maxCommands, size: 'max', replayPath: process.env.MODEL_REPLAY_PATH }), async (commands) => {
          let run: { model: ModelBox; real: Run } | undefined
          await fc.asyncModelRun(async () => (run = await timed('setup', newRun)), commands)
          await timed('reconcile', () => reconcile(run!.real))
          for (const what of covered(run!.model.state)) stats.covered.set(what, (stats.covered.get(what) ?? 0) + 1)
        }),
        // Shrinking re-runs sequences against the database: bounded, so that a failure is always
        // reported (with the sequence shrunk so far) before the test's timeout.
        { numRuns: runs, interruptAfterTimeLimit: timeLimitMs, ...replay },
      )
      const list = (counts: Map<string, number>) => [...counts.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k}: ${n}`)
      const ms = Object.fromEntries(Object.entries(stats.ms).map(([k, v]) => [k, Math.round(v)]))
      console.log(
        [
          `credit model: ${stats.runs} sequences, ${stats.steps} steps (${stats.parallelSteps} parallel, ${stats.clockMoves} clock moves), ${stats.calls} calls,`,
          `${stats.reconciles} reconciliations, ${stats.cronReleases} releases of stale holds by pg_cron met; ms spent: ${JSON.stringify(ms)}`,
          'sequences that reached:',
          ...list(stats.covered),
          'answers:',
          ...list(stats.outcomes),
        ].join('\n'),
      )
      expect(stats.steps).toBeGreaterThan(0)
    },
    timeLimitMs + 60_000,
  )
})
