import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { SupabaseClient } from '@supabase/supabase-js'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createUser, serviceClient, type TestUser } from '../support/clients.ts'
import { primaryDb } from '../support/db.ts'
import { env } from '../support/env.ts'
import { createApp } from '../support/plugin.ts'
import { scale } from './own-stack.ts'

// Property: whatever a caller sends to an RPC it may call, the answer is a success or one of our
// documented errors (or, for a value that does not fit a parameter's type or parameters that
// match no RPC, PostgreSQL's or PostgREST's own refusal), never a 500, XX000 or an SQLSTATE we do
// not document; a rejected call changes nothing; and balances and the ledger still reconcile.
//
// The calls are made from the RPCs' real signatures (read from the catalog: every function in
// `public` the role may execute), so a new RPC or parameter is fuzzed without editing this file,
// and nearly every call reaches our code: the values are hostile but fit the parameter's type
// (huge, negative and zero numbers, unicode, long strings, odd JSON, other orgs' ids, nulls,
// NUL bytes where the type holds them), with a small share of misspelled names and ill-typed values.
// Each run prints how the calls ended; `FUZZ_DEBUG=<file>` also writes every call and its outcome
// there (tab-separated), to see which values stop where.

const full = scale === 'full'
/** Calls per RPC: user RPCs as a signed-in user, service RPCs as service_role on a throwaway org. */
const callsPerRpc = { user: full ? 120 : 12, service: full ? 40 : 5 }
/** Share of calls that break the signature on purpose (a wrong name, a missing parameter, a wrong type). */
const brokenShare = 0.08
/** At least this share of all calls must reach our code (a success or one of our keys). */
const minReachedShare = 0.8

// ---------------------------------------------------------------------------------------------
// What the answers may be

/** Our error keys and their SQLSTATEs: the error catalog, as `npm run gen:errors` writes it for the edge functions. */
const catalog = JSON.parse(
  fs.readFileSync(path.join(import.meta.dirname, '../../supabase/functions/_shared/errors/catalog.json'), 'utf8'),
) as { errors: Record<string, { sqlstate: string; raised_by: string }> }
const documented = new Map(Object.entries(catalog.errors).filter(([, e]) => e.raised_by === 'database').map(([key, e]) => [key, e.sqlstate]))

/** Our key's SQLSTATE, or undefined when `message` is not one of our documented keys. */
function ourSqlstate(message: string): string | undefined {
  return documented.get(message)
}

/**
 * Refused before our code runs (README "Errors"): a value that does not fit the parameter's type
 * (22P02 invalid text, 22003 out of range, 22007 / 22008 a date that is no date or out of range,
 * 22P05 / 22021 text PostgreSQL cannot store, such as \u0000), or parameters that match no function
 * (PGRST202).
 */
const platform = new Set(['22P02', '22003', '22007', '22008', '22P05', '22021', 'PGRST202'])

type Outcome = { reached: true; label: string } | { reached: false; label: string }

/** Classifies one answer; fails the test on anything outside the contract. */
function classify(fn: string, args: Record<string, unknown>, status: number, error: { code: string; message: string; details?: string | null } | null): Outcome {
  const where = `${fn}(${JSON.stringify(args, (_, v) => (typeof v === 'string' && v.length > 200 ? `${v.slice(0, 200)}…(${v.length})` : v))})`
  expect(status, `${where} answered HTTP ${status}: ${JSON.stringify(error)}`).toBeLessThan(500)
  if (!error) return { reached: true, label: 'ok' }
  expect(error.code, `${where}: ${error.message}`).not.toBe('XX000')
  const ours = ourSqlstate(error.message)
  if (ours) {
    expect(error.code, `${where}: key ${error.message} with SQLSTATE ${error.code}, documented as ${ours}`).toBe(ours)
    return { reached: true, label: error.message }
  }
  expect(platform.has(error.code), `${where}: undocumented error ${error.code}: ${error.message} ${error.details ?? ''}`).toBe(true)
  return { reached: false, label: error.code }
}

// ---------------------------------------------------------------------------------------------
// The RPCs, from the catalog

interface Param {
  name: string
  type: string
  optional: boolean
}
interface Rpc {
  name: string
  params: Param[]
}

/** Every function in `public` that `role` may execute, with its input parameters. */
async function rpcsCallableBy(role: 'authenticated' | 'service_role'): Promise<Rpc[]> {
  const { rows } = await primaryDb.query<{ name: string; names: string[]; types: string[]; defaults: number }>(
    `select p.proname::text as name, p.pronargdefaults as defaults,
            coalesce((select array_agg(a.name order by a.i)
                        from unnest(coalesce(p.proargnames, '{}'), coalesce(p.proargmodes::text[], array_fill('i'::text, array[cardinality(coalesce(p.proargnames, '{}'))])))
                             with ordinality as a(name, mode, i)
                       where a.mode in ('i', 'b', 'v')), '{}') as names,
            coalesce((select array_agg(pg_catalog.format_type(t.oid, null) order by t.i)
                        from unnest(p.proargtypes::oid[]) with ordinality as t(oid, i)), '{}') as types
       from pg_catalog.pg_proc p
      where p.pronamespace = 'public'::regnamespace and p.prokind = 'f' and has_function_privilege($1, p.oid, 'execute')
      order by 1`,
    [role],
  )
  return rows.map((r) => ({
    name: r.name,
    params: r.types.map((type, i) => ({ name: r.names[i] ?? `$${i + 1}`, type, optional: i >= r.types.length - r.defaults })),
  }))
}

// ---------------------------------------------------------------------------------------------
// Values: hostile, but of the parameter's type

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary })
const pick = <T>(...values: T[]) => fc.constantFrom(...values)

/** Text PostgreSQL can store (no \u0000), from tame to nasty. */
const hostileText: fc.Arbitrary<string> = fc.oneof(
  w(3, fc.string({ maxLength: 40 })),
  w(3, fc.string({ unit: 'grapheme', maxLength: 40 })),
  w(2, fc.string({ unit: 'binary', maxLength: 40 }).map((s) => s.replaceAll('\u0000', ''))),
  w(2, pick('', ' ', '\t\n', 'null', 'NaN', '-0', '1e309', '\\', '%', '_', "'; drop table public.credit_ledger; --", '1 or 1=1', '$$', '$1', '\u202egnp.exe', 'a\u200bb', '🧨💸', 'Ω≈ç√∫', 'ﷺ', 'İıſK')),
  w(1, pick('x'.repeat(201), 'x'.repeat(4096), 'é'.repeat(300), '𝕏'.repeat(1000), 'a'.repeat(100_000))),
)
const nulText = pick('a\u0000b', '\u0000')

const int32 = { min: -(2 ** 31), max: 2 ** 31 - 1 }
const hostileInt: fc.Arbitrary<number> = fc.oneof(
  w(2, pick(0, -1, 1, 2, int32.max, int32.min, int32.max - 1)),
  w(2, fc.integer({ min: -10, max: 1000 })),
  w(1, fc.integer(int32)),
)
/** bigint: JSON numbers up to 2^53, beyond that as strings (PostgREST casts them). */
const hostileBigint: fc.Arbitrary<number | string> = fc.oneof(
  w(2, pick<number | string>(0, -1, 1, 10 ** 12, 10 ** 12 + 1, Number.MAX_SAFE_INTEGER, '9223372036854775807', '-9223372036854775808')),
  w(2, fc.integer({ min: -10, max: 1000 })),
  w(1, fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)),
)
/** Timestamps never in the next day: nothing fuzzed may expire (by pg_cron) while the run lasts. */
const hostileTimestamp: fc.Arbitrary<string> = fc.oneof(
  pick('infinity', '-infinity', '1970-01-01T00:00:00Z', '0001-01-01T00:00:00Z', '4713-01-01 BC', '294276-12-31T23:59:59Z', '2000-02-29T12:00:00+14:00'),
  fc.date({ min: new Date('1900-01-01'), max: new Date(Date.now() - 60_000), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.date({ min: new Date(Date.now() + 2 * 86_400_000), max: new Date('2200-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
)
const deepJson = (depth: number): unknown => (depth === 0 ? 1 : { a: [deepJson(depth - 1)] })
const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  w(4, fc.jsonValue({ maxDepth: 3 }).filter((v) => !JSON.stringify(v).includes('\\u0000'))),
  w(2, pick<unknown>({}, [], '', 0, -0, 1e308, true, 'x', [null], { '': '' }, { 'ключ': '🧨' }, { latency_ms: -1, success: 'yes', output: 'x'.repeat(9000) })),
  w(1, pick<unknown>(deepJson(200), { big: 'x'.repeat(1024 * 1024) }, Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, i])))),
)
const smallObject = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }).filter((v) => !JSON.stringify(v).includes('\\u0000'))
/** p_result of a metered call, as a trusted server records it. */
const callRecord = fc.record(
  { latency_ms: fc.nat(100_000), success: fc.boolean(), backend_endpoint: pick('summarise', 'translate'), error_code: pick('timeout', 'upstream_5xx'), output: fc.jsonValue({ maxDepth: 2 }) },
  { requiredKeys: [] },
).filter((v) => !JSON.stringify(v).includes('\\u0000'))
const hostileBytea: fc.Arbitrary<string> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((bytes) => `\\x${Buffer.from(bytes).toString('hex')}`),
  pick('\\x', '\\x00', '\\x0000ff00', `\\x${'00'.repeat(32)}`, `\\x${'ab'.repeat(70_000)}`),
)
const randomUuid = fc.uuid()

/** The fallback for a parameter this file knows nothing about: any value of its type. */
function byType(type: string, uuids: fc.Arbitrary<string | null>): fc.Arbitrary<unknown> {
  switch (type) {
    case 'text':
      return hostileText
    case 'integer':
    case 'smallint':
      return hostileInt
    case 'bigint':
    case 'numeric':
      return hostileBigint
    case 'boolean':
      return fc.boolean()
    case 'uuid':
      return uuids
    case 'jsonb':
    case 'json':
      return hostileJson
    case 'timestamp with time zone':
      return hostileTimestamp
    case 'bytea':
      return hostileBytea
    case 'text[]':
      return fc.array(hostileText, { maxLength: 5 })
    case 'uuid[]':
      return fc.array(uuids, { maxLength: 5 })
    default:
      throw new Error(`fuzz: no values for parameter type ${type}; add it to byType`)
  }
}

/** A value of the parameter's type that breaks it (for the share of broken calls), if it has one. */
function illTyped(type: string): fc.Arbitrary<unknown> | undefined {
  switch (type) {
    case 'integer':
    case 'smallint':
      return pick<unknown>(1.5, 'abc', 2 ** 40, -(2 ** 40), '1e3')
    case 'bigint':
      return pick<unknown>('abc', 1e30, '9223372036854775808', 0.5)
    case 'uuid':
      return pick('not-a-uuid', '', '00000000-0000-0000-0000-00000000000g', '{}')
    case 'boolean':
      return pick<unknown>('maybe', 2, 'yes please')
    case 'text':
      return nulText
    case 'timestamp with time zone':
      return pick('not a date', '2020-13-45', '294277-01-01T00:00:00Z', '')
    default:
      return undefined // jsonb takes any JSON; bytea takes any text
  }
}

/** Everything the value domains draw on: the fuzzed orgs, users and the things in them. */
interface Fixtures {
  run: string
  /** Orgs to name: `good` the ones the caller may act on, `bad` others' orgs (random uuids are added). */
  orgs: { good: fc.Arbitrary<string | null>; bad: fc.Arbitrary<string | null> }
  users: { good: fc.Arbitrary<string | null>; bad: fc.Arbitrary<string | null> }
  operations: string[]
  /** Workflows and apps: `good` the caller's, `bad` another org's. */
  workflows: { good: string[]; bad: string[] }
  grants: string[]
  apps: { good: string[]; bad: string[] }
}

/**
 * A parameter's values: `good` ones that get past validation (so a call reaches the money paths
 * and their states: replays, conflicts, holds captured, refunds), and `bad` ones, hostile but of
 * the parameter's type.
 */
interface Domain {
  good: fc.Arbitrary<unknown>
  bad: fc.Arbitrary<unknown>
}

/** Domains by parameter name; a parameter this file does not know gets any value of its type. */
function domainOf(param: Param, fx: Fixtures): Domain {
  const typed = param.type === 'bigint' ? hostileBigint : param.type === 'integer' ? hostileInt : hostileText
  const of = (good: fc.Arbitrary<unknown>, bad: fc.Arbitrary<unknown> = typed): Domain => ({ good, bad })
  // A few ids per run, so calls meet each other's rows (replays, conflicts, holds to capture),
  // and fresh ones, so charges keep succeeding.
  const ids = (prefix: string, fresh = 0) =>
    of(fc.oneof(w(3, pick(...[1, 2, 3, 4, 5, 6, 7, 8].map((i) => `${prefix}${fx.run}_${i}`))), w(fresh, fc.uuid().map((u) => `${prefix}${u.replaceAll('-', '')}`))))
  const range = (min: number, max: number, bad: fc.Arbitrary<unknown> = typed) => of(fc.integer({ min, max }), bad)
  switch (param.name) {
    case 'p_org_id':
      return of(fx.orgs.good, fc.oneof(fx.orgs.bad, randomUuid))
    case 'p_user_id':
      return of(fx.users.good, fc.oneof(fx.users.bad, randomUuid))
    case 'p_operation':
      return of(pick(...fx.operations), fc.oneof(pick(`fuzz_unknown_${fx.run}`, 'fuzz_Upper', 'fuzz op'), hostileText))
    case 'p_request_id':
      return ids('req_', 2)
    case 'p_external_ref':
      return ids('ref_', 1)
    case 'p_event_id':
      return of(fc.integer({ min: 1, max: 1_000_000 }).map((i) => `evt_${fx.run}_${i}`))
    case 'p_session_id':
      return ids('cs_')
    case 'p_payment_intent_id':
      return ids('pi_')
    case 'p_dispute_id':
      return ids('dp_')
    case 'p_quantity':
      return range(1, 5)
    case 'p_monthly_cap':
      return range(500, 10_000)
    case 'p_amount':
    case 'p_credits':
    case 'p_threshold':
    case 'p_amount_refunded':
    case 'p_dispute_amount':
      return range(1, 500)
    case 'p_days':
      return range(1, 366)
    case 'p_priority':
      return range(1, 10)
    case 'p_batch_size':
    case 'p_limit':
      return range(1, 100)
    case 'p_ttl_seconds':
      // A valid TTL at least an hour long: no hold may lapse (and be released by pg_cron) during the run.
      return range(3600, 86_400, pick(0, -1, int32.max, int32.min, 86_401, 10 ** 6))
    case 'p_wait_ms':
      return range(0, 50, pick(-1, 60_001, int32.max, int32.min))
    case 'p_timeout_ms':
      return range(100, 120_000)
    case 'p_status':
    case 'p_status_code':
      if (param.type === 'text') return of(pick('submitted', 'succeeded', 'failed', 'pending', 'processing'))
      return range(100, 599)
    case 'p_expires_at':
      return of(hostileTimestamp, hostileTimestamp)
    case 'p_source':
      return of(pick('purchase', 'promotion', 'manual'), fc.oneof(pick('onboarding', 'refund', 'auto_top_up', 'Purchase'), hostileText))
    case 'p_currency':
      return of(pick('usd', 'eur'), fc.oneof(pick('USD', 'us', 'usdd'), hostileText))
    case 'p_outcome':
      return of(pick('paid', 'unpaid', 'failed', 'no_payment_required'))
    case 'p_event_type':
      return of(pick('checkout.session.completed', 'checkout.session.async_payment_succeeded', 'checkout.session.async_payment_failed', 'charge.refunded', 'charge.dispute.created', 'charge.dispute.closed', 'payment_intent.succeeded'))
    case 'p_dispute_status':
      return of(pick('needs_response', 'under_review', 'lost', 'won', 'warning_closed', 'prevented'))
    case 'p_stripe_customer_id':
      return ids('cus_')
    case 'p_stripe_payment_method_id':
      return ids('pm_')
    case 'p_object_id':
      return ids('obj_')
    case 'p_metadata':
    case 'p_specification':
    case 'p_input':
    case 'p_detail':
      return of(smallObject, hostileJson)
    case 'p_result':
      return of(callRecord, hostileJson)
    case 'p_reason':
      return of(pick('backend_failed', 'duplicate_charge', 'fraud'))
    case 'p_name':
    case 'p_description':
      return of(pick('fuzz', 'Ω fuzz 🧨'))
    case 'p_content_type':
      return of(pick('application/json', 'text/plain; charset=utf-8'))
    case 'p_error':
      return of(pick('card_declined', 'timeout'))
    case 'p_url':
      // Only addresses that are refused, or the local stack's closed discard port: nothing
      // fuzzed here may ever make a delivery leave the machine.
      return of(pick('http://127.0.0.1:9/fuzz'), pick('https://127.0.0.1:9/fuzz', 'https://10.0.0.1/hook', 'https://169.254.169.254/latest/meta-data', 'https://localhost/hook',
        'https://metadata.google.internal/', 'https://intranet/hook', 'https://[::1]/x', 'https://2130706433/x', 'https://0x7f.1/x', 'https://[::ffff:127.0.0.1]/x',
        'https://user:pass@127.0.0.1:9/x', 'ftp://127.0.0.1/x', 'javascript:alert(1)', '', ' ', 'not a url', 'https://ünï.localhost/x', `https://127.0.0.1:9/${'a'.repeat(1200)}`, 'https://127.0.0.1:0/x', 'https://127.0.0.1:65536/x'))
    case 'p_workflow_id':
      return of(pick(...fx.workflows.good), fc.oneof(pick(...fx.workflows.bad), randomUuid))
    case 'p_grant_id':
      return of(pick(...fx.grants), randomUuid)
    case 'p_app_id':
      return of(pick(...fx.apps.good), fc.oneof(pick(...fx.apps.bad, 'com.fuzz.nosuchapp', 'Com.Upper.App', 'a'), hostileText))
    case 'p_device_id':
      return of(pick('dev-1', 'dev-2', 'dev:3.x_y'))
    case 'p_channel':
      return of(pick('production', 'beta', null), fc.oneof(pick('nosuchchannel'), hostileText))
    case 'p_fingerprint':
      return of(fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `\\x${Buffer.from(b).toString('hex')}`), hostileBytea)
    case 'p_id':
      // Ids of other tests' rows are small positive numbers: never those.
      if (param.type === 'bigint') {
        const notOurs = pick<number | string>(0, -1, Number.MAX_SAFE_INTEGER, '9223372036854775807', '-9223372036854775808')
        return of(notOurs, notOurs)
      }
  }
  const any = byType(param.type, fc.oneof(randomUuid, fx.orgs.good))
  return of(any, any)
}

interface Call {
  args: Record<string, unknown>
  /** How the call breaks the signature on purpose, or null for a call that fits it. */
  broken: string | null
}

/**
 * Calls of `rpc`. Each call has a hostility: none (every value good), some (a parameter in five
 * bad) or much (half of them); a bad value is null one time in five. Optional parameters are
 * left out a third of the time (their default applies). A `brokenShare` of calls break the
 * signature: an unknown parameter, a required one missing, or a value not of its type.
 */
function callsOf(rpc: Rpc, fx: Fixtures): fc.Arbitrary<Call> {
  const slots = rpc.params.map((param) => {
    const { good, bad } = domainOf(param, fx)
    return fc.record({
      good,
      bad: fc.oneof(w(4, bad), w(1, fc.constant(null))),
      // Unbiased: fast-check favours extremes, which would make nearly every value bad.
      coin: fc.noBias(fc.integer({ min: 0, max: 99 })),
      omit: param.optional ? fc.oneof(w(2, fc.constant(false)), w(1, fc.constant(true))) : fc.constant(false),
    })
  })
  const hostility = fc.oneof(w(3, fc.constant(0)), w(4, fc.constant(20)), w(3, fc.constant(50)))
  const wellTyped = fc.tuple(hostility, fc.tuple(...slots)).map(([level, values]) => {
    const args: Record<string, unknown> = {}
    rpc.params.forEach((param, i) => {
      const slot = values[i]!
      if (!slot.omit) args[param.name] = slot.coin < level ? slot.bad : slot.good
    })
    return { args, broken: null } as Call
  })
  const breaks: Array<fc.Arbitrary<(call: Call) => Call>> = [
    hostileText.map((v) => (call: Call) => ({ args: { ...call.args, p_unknown: v }, broken: 'unknown parameter' })),
  ]
  if (rpc.params.some((p) => !p.optional)) {
    breaks.push(pick(...rpc.params.filter((p) => !p.optional)).map((p) => (call: Call) => {
      const { [p.name]: _, ...args } = call.args
      return { args, broken: `without ${p.name}` }
    }))
  }
  for (const param of rpc.params) {
    const bad = illTyped(param.type)
    if (bad) breaks.push(bad.map((v) => (call: Call) => ({ args: { ...call.args, [param.name]: v }, broken: `ill-typed ${param.name}` })))
  }
  const broken = fc.tuple(wellTyped, fc.oneof(...breaks)).map(([call, breakIt]) => breakIt(call))
  const brokenWeight = Math.round(brokenShare * 100)
  return fc.oneof(w(100 - brokenWeight, wellTyped), w(brokenWeight, broken))
}

// ---------------------------------------------------------------------------------------------
// State checks

/**
 * What the fuzzed RPCs may write for these orgs (and this run's payment events and meter
 * backends), per table: how many rows, and the newest transaction that wrote one (a row's xmin,
 * which any insert or update renews). A rejected call must leave it as it was.
 */
async function digest(orgIds: string[], appIds: string[], operations: string[], run: string): Promise<string> {
  const sum = (table: string, where: string) => `(select count(*) || ':' || coalesce(max(x.xmin::text::bigint), 0) from public.${table} x where ${where})`
  const byOrg = ['orgs', 'credit_balances', 'credit_grants', 'credit_requests', 'credit_ledger', 'credit_revocations', 'workflows', 'workflow_executions',
    'credit_auto_topup_settings', 'org_alert_webhooks', 'credit_topup_requests', 'credit_alert_outbox', 'org_billing', 'meter_requests', 'org_members']
  const parts = [
    ...byOrg.map((t) => sum(t, t === 'orgs' ? 'x.id = any($1)' : 'x.org_id = any($1)')),
    sum('channel_devices', 'x.app_id = any($2)'),
    sum('meter_backends', 'x.operation = any($3)'),
    sum('payment_exceptions', "x.org_id = any($1) or x.event_id like '%' || $4 || '%'"),
    sum('stripe_payments', "x.org_id = any($1) or x.payment_intent_id like '%' || $4 || '%'"),
  ]
  const { rows } = await primaryDb.query<{ digest: string }>(`select concat_ws('|', ${parts.join(', ')}) as digest`, [orgIds, appIds, operations, run])
  return rows[0]!.digest
}

/** Ledger sums equal balances, grants' remaining equals available, and nothing is negative. */
async function ledgerMatchesBalances(orgIds: string[]): Promise<unknown[]> {
  const { rows } = await primaryDb.query(
    `select b.org_id, b.available, b.held, l.amount, l.held_delta, g.remaining
       from public.credit_balances b
       cross join lateral (select coalesce(sum(amount), 0)::bigint as amount, coalesce(sum(held_delta), 0)::bigint as held_delta
                             from public.credit_ledger where org_id = b.org_id) l
       cross join lateral (select coalesce(sum(remaining), 0)::bigint as remaining
                             from public.credit_grants where org_id = b.org_id and status = 'active') g
      where b.org_id = any($1)
        and (b.available <> l.amount or b.held <> l.held_delta or b.available <> g.remaining or b.available < 0 or b.held < 0)`,
    [orgIds],
  )
  return rows
}

interface Tally {
  calls: number
  reached: number
  labels: Map<string, number>
  brokenReached: number
  brokenCalls: number
  /** Well-typed calls refused before our code: each is a value domain that does not fit its type. */
  wellTypedRefused: string[]
  perRpc: Map<string, { calls: number; reached: number; ok: number }>
}

/** Every call and its outcome, written to the file FUZZ_DEBUG names. */
const debug: string[] = []
afterAll(() => {
  if (process.env.FUZZ_DEBUG) fs.writeFileSync(process.env.FUZZ_DEBUG, debug.join('\n'))
})
const newTally = (): Tally => ({ calls: 0, reached: 0, labels: new Map(), brokenReached: 0, brokenCalls: 0, wellTypedRefused: [], perRpc: new Map() })

/** Fuzzes every RPC in `rpcs` as `client`, checking each answer, and a rejected call's effect. */
async function fuzz(
  label: string,
  client: SupabaseClient,
  rpcs: Rpc[],
  fx: Fixtures,
  perRpc: number,
  /** What a refused call must leave as it was. */
  watched: () => Promise<string>,
  /** What no call may change (another org's rows). */
  untouchable: () => Promise<string> = async () => '',
): Promise<Tally> {
  const tally = newTally()
  for (const rpc of rpcs) tally.perRpc.set(rpc.name, { calls: 0, reached: 0, ok: 0 })
  const one = async (rpc: Rpc, { args, broken }: Call) => {
    const stats = tally.perRpc.get(rpc.name)!
    const [before, others] = await Promise.all([watched(), untouchable()])
    const { error, status } = await client.rpc(rpc.name, args)
    const outcome = classify(rpc.name, args, status, error)
    if (error) expect(await watched(), `${rpc.name} was refused (${error.code} ${error.message}) but changed something`).toBe(before)
    expect(await untouchable(), `${rpc.name}(${JSON.stringify(args).slice(0, 300)}) changed another org's rows`).toBe(others)
    tally.calls++
    stats.calls++
    tally.labels.set(outcome.label, (tally.labels.get(outcome.label) ?? 0) + 1)
    if (outcome.reached) {
      tally.reached++
      stats.reached++
    }
    if (!error) stats.ok++
    if (process.env.FUZZ_DEBUG) debug.push(`${rpc.name}\t${outcome.label}\t${JSON.stringify(args).slice(0, 400)}`)
    if (broken) {
      tally.brokenCalls++
      if (outcome.reached) tally.brokenReached++
    } else if (!outcome.reached) {
      tally.wellTypedRefused.push(`${rpc.name} ${outcome.label}: ${error?.message} ${JSON.stringify(args).slice(0, 300)}`)
    }
  }
  // A run is a round: one call of every RPC, in a random order, so each RPC meets the rows the
  // others leave (a hold reserved before it is captured, released or refunded, and after).
  const indices = rpcs.map((_, i) => i)
  const round = fc.tuple(fc.tuple(...rpcs.map((rpc) => callsOf(rpc, fx))), fc.shuffledSubarray(indices, { minLength: indices.length, maxLength: indices.length }))
  await fc.assert(
    fc.asyncProperty(round, async ([calls, order]) => {
      for (const i of order) await one(rpcs[i]!, calls[i]!)
    }),
    { numRuns: perRpc, endOnFailure: true },
  )
  const share = (n: number) => `${((100 * n) / Math.max(tally.calls, 1)).toFixed(1)}%`
  const sorted = Object.fromEntries([...tally.labels].sort((a, b) => b[1] - a[1]))
  console.log(
    `fuzz ${label}: ${tally.calls} calls to ${rpcs.length} RPCs, ${tally.reached} reached our code (${share(tally.reached)}); ` +
      `${tally.brokenCalls} broke the signature on purpose (${tally.brokenReached} of them still reached it); outcomes: ${JSON.stringify(sorted)}` +
      `; successes per RPC: ${[...tally.perRpc].map(([name, s]) => `${name} ${s.ok}/${s.calls}`).join(', ')}`,
  )
  return tally
}

/** The tally's verdicts: enough calls reached our code, every RPC was reached, well-typed calls fit. */
function expectReached(tally: Tally): void {
  expect(tally.wellTypedRefused, 'well-typed calls refused before our code (a value domain that does not fit its type, or our code raising a type error)').toEqual([])
  expect(tally.reached / tally.calls).toBeGreaterThanOrEqual(minReachedShare)
  const unreached = [...tally.perRpc].filter(([, s]) => s.reached === 0).map(([name]) => name)
  expect(unreached, 'RPCs no call reached').toEqual([])
}

// ---------------------------------------------------------------------------------------------

const run = randomUUID().slice(0, 8)
const service = serviceClient()
const cleanup: Array<() => Promise<unknown>> = []

afterAll(async () => {
  for (const step of cleanup) await step()
})

/** A priced operation of this run (files run in parallel: fresh names). */
async function price(credits: number): Promise<string> {
  const operation = `fuzz_${run}_${credits}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, $2)', [operation, credits])
  return operation
}

async function grant(orgId: string, amount: number): Promise<string> {
  const { data, error } = await service.rpc('grant_credits', { p_org_id: orgId, p_amount: amount, p_source: 'promotion' })
  expect(error).toBeNull()
  return (data as { grant_id: string }).grant_id
}

/** An org with `user` as a member of `role`, created as an owner would have it. */
async function teamOrg(user: TestUser, role: 'owner' | 'admin' | 'member'): Promise<string> {
  const { rows } = await primaryDb.query<{ id: string }>(`insert into public.orgs (name) values ($1) returning id`, [`fuzz team ${run} ${role}`])
  const orgId = rows[0]!.id
  await primaryDb.query('insert into public.org_members (org_id, user_id, role) values ($1, $2, $3)', [orgId, user.id, role])
  return orgId
}

describe('fuzzing the RPCs from their signatures', () => {
  let user: TestUser
  let other: TestUser
  let operations: string[]

  beforeAll(async () => {
    user = await createUser('fuzz')
    other = await createUser('fuzz-other')
    operations = [await price(1), await price(7)]
    // What the fuzzed settings stored for later deliveries goes (nothing was sent: a refused or closed local address).
    cleanup.push(() => primaryDb.query(`delete from public.org_alert_webhooks where url like 'http://127.0.0.1:9/fuzz%'`))
    cleanup.push(() => primaryDb.query(`delete from public.meter_backends where url like 'http://127.0.0.1:9/fuzz%'`))
  })

  it('user RPCs, as a signed-in user: answers are successes or documented errors, a refusal changes nothing, another org is never touched, the ledger reconciles', async () => {
    const rpcs = await rpcsCallableBy('authenticated')
    expect(rpcs.map((r) => r.name)).toEqual(expect.arrayContaining(['consume_credits', 'get_credit_balance', 'get_usage_stats', 'create_workflow', 'execute_workflow', 'list_my_orgs']))
    const admin = await teamOrg(user, 'admin')
    const member = await teamOrg(user, 'member')
    const orgIds = [user.personalOrgId, admin, member, other.personalOrgId]
    const grants = [await grant(user.personalOrgId, 100_000), await grant(admin, 1000), await grant(member, 1000), await grant(other.personalOrgId, 1000)]
    const app = await createApp(user)
    const foreignApp = await createApp(other)
    const workflow = await user.client.rpc('create_workflow', { p_name: 'fuzz', p_request_id: `wf-${run}` })
    expect(workflow.error).toBeNull()
    const foreignWorkflow = await other.client.rpc('create_workflow', { p_name: 'fuzz', p_request_id: `wf-${run}` })
    expect(foreignWorkflow.error).toBeNull()
    const fx: Fixtures = {
      run,
      // null: the personal org; the member-only team org is good for reads, bad for settings.
      orgs: { good: fc.oneof(w(4, fc.constant(user.personalOrgId)), w(2, pick(admin, member)), w(1, fc.constant(null))), bad: fc.constant(other.personalOrgId) },
      users: { good: fc.constant(user.id), bad: fc.constant(other.id) },
      operations,
      workflows: { good: [(workflow.data as { workflow_id: string }).workflow_id], bad: [(foreignWorkflow.data as { workflow_id: string }).workflow_id] },
      grants,
      apps: { good: [app.appId], bad: [foreignApp.appId] },
    }
    const tally = await fuzz('user RPCs (authenticated)', user.client, rpcs, fx, callsPerRpc.user,
      () => digest(orgIds, [app.appId, foreignApp.appId], operations, run),
      () => digest([other.personalOrgId], [foreignApp.appId], [], `foreign-${run}`))
    expectReached(tally)

    expect((await service.rpc('reconcile_credits')).data).toBe(0)
    expect(await ledgerMatchesBalances(orgIds)).toEqual([])
  }, 240_000)

  it('service RPCs, as service_role on a throwaway org: answers are successes or documented errors, a refusal changes nothing, the ledger reconciles', async () => {
    // The outbox claims lease due rows of every org (another test's included): they are not
    // org-scoped, so they are left to the outbox tests.
    const global = new Set(['claim_credit_alerts', 'claim_topup_requests'])
    const rpcs = (await rpcsCallableBy('service_role')).filter((r) => !global.has(r.name))
    expect(rpcs.map((r) => r.name)).toEqual(expect.arrayContaining(['grant_credits', 'reserve_credits', 'capture_credits', 'release_credits', 'refund_credits', 'revoke_credits', 'reconcile_credits']))
    const owner = await createUser('fuzz-svc')
    const outsider = await createUser('fuzz-svc-outsider')
    const orgId = owner.personalOrgId
    const grants = [await grant(orgId, 5000), await grant(orgId, 300)]
    const fx: Fixtures = {
      run,
      orgs: { good: fc.constant(orgId), bad: fc.constant(null) },
      users: { good: fc.constant(owner.id), bad: fc.constant(outsider.id) },
      operations,
      workflows: { good: [randomUUID()], bad: [randomUUID()] },
      grants,
      apps: { good: ['com.fuzz.nosuchapp'], bad: ['com.fuzz.nosuchapp'] },
    }
    const tally = await fuzz('service RPCs (service_role)', service, rpcs, fx, callsPerRpc.service, () => digest([orgId], [], operations, run))
    expectReached(tally)

    expect((await service.rpc('reconcile_credits')).data).toBe(0)
    expect(await ledgerMatchesBalances([orgId, owner.personalOrgId])).toEqual([])
  }, 240_000)
})

describe('fuzzing the plugin endpoints', () => {
  it('answers 4xx with a documented key, never a 500, and writes nothing', async () => {
    const owner = await createUser('fuzz-plugin')
    const appId = `com.fuzz${randomUUID().replaceAll('-', '').slice(0, 10)}.app`
    await primaryDb.query(`insert into public.apps (app_id, org_id, name) values ($1, $2, 'fuzz')`, [appId, owner.personalOrgId])
    const valid = { app_id: appId, device_id: 'd1', version_name: '1.0.0', version_build: '1', platform: 'ios', plugin_version: '6', is_emulator: false, is_prod: true, action: 'app_ready', channel: 'beta' }
    const anyValue = fc.oneof(fc.constant(null), hostileInt, hostileBigint, fc.double(), fc.boolean(), hostileText, fc.uuid(), hostileJson)
    const body = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string(),
      fc.record({ field: fc.constantFrom(...Object.keys(valid)), to: anyValue }).map(({ field, to }) => JSON.stringify({ ...valid, [field]: to })),
      fc.constant(JSON.stringify(valid)),
      fc.array(fc.constant(valid), { maxLength: 120 }).map((list) => JSON.stringify(list)),
    )
    const keys = new Set(['invalid_request', 'unknown_app', 'no_usage_credits', 'method_not_allowed'])
    const count = async () =>
      (await primaryDb.query<{ n: number }>(
        `select (select count(*) from public.device_events where app_id = $1) + (select count(*) from public.channel_devices where app_id = $1) as n`,
        [appId],
      )).rows[0]!.n
    const before = await count()
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('updates', 'stats', 'channel_self'), fc.constantFrom('POST', 'PUT', 'DELETE', 'PATCH'), body, async (fn, method, payload) => {
        const res = await fetch(`${env.SUPABASE_URL}/functions/v1/${fn}`, { method, body: payload, headers: { 'content-type': 'application/json' } })
        const answer = await res.json()
        expect([400, 404, 405, 429]).toContain(res.status)
        expect(keys.has(answer.error), JSON.stringify(answer)).toBe(true)
      }),
      { numRuns: full ? 1500 : 150 },
    )
    expect(await count()).toBe(before)
  }, 120_000)
})
