import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { createUser, type TestUser } from '../support/clients.ts'
import { primaryDb } from '../support/db.ts'
import { env } from '../support/env.ts'
import { scale } from './own-stack.ts'

// Property: whatever a client sends, a user-callable RPC or a plugin endpoint answers with a
// documented error (or a read), never a 500, and a rejected call changes nothing.

const runs = scale === 'full' ? 1500 : 150

/** Our error keys (message) with their SQLSTATE (code): README "Errors". */
const documented: Record<string, string> = {
  insufficient_credits: 'PT402',
  idempotency_conflict: 'PT409',
  unknown_operation: 'PT404',
  unknown_org: 'PT404',
  unknown_workflow: 'PT404',
  not_a_member: '42501',
  forbidden: '42501',
  invalid_quantity: '22023',
  invalid_request_id: '22023',
  invalid_metadata: '22023',
  invalid_days: '22023',
  invalid_name: '22023',
  invalid_description: '22023',
  invalid_priority: '22023',
  invalid_specification: '22023',
  invalid_input: '22023',
  unknown_app: 'PT404',
  unknown_channel: 'PT404',
  invalid_device_id: '22023',
}
/**
 * Rejected before our code runs (README "Errors"): a value that does not fit the parameter's
 * type (22P02 invalid text, 22003 out of range, 22P05 / 22021 text PostgreSQL cannot store,
 * such as \u0000), or parameters that match no function (PGRST202).
 */
const platform = new Set(['22P02', '22003', '22P05', '22021', 'PGRST202'])

const sqlFragments = ["'; drop table public.credit_ledger; --", '1 or 1=1', '$$', '\\', '%', 'null', 'NaN', '-0', '1e309']
const value = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
  fc.double(),
  fc.boolean(),
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.uuid(),
  fc.constantFrom(...sqlFragments),
  fc.jsonValue({ maxDepth: 3 }),
  fc.constant({ big: 'x'.repeat(1024 * 1024) }),
)

const rpcs: Record<string, string[]> = {
  consume_credits: ['p_operation', 'p_request_id', 'p_quantity', 'p_org_id', 'p_metadata'],
  get_credit_balance: ['p_org_id'],
  get_usage_stats: ['p_days', 'p_org_id'],
  get_daily_usage: ['p_days', 'p_org_id'],
  create_workflow: ['p_name', 'p_description', 'p_specification', 'p_priority', 'p_request_id', 'p_org_id'],
  execute_workflow: ['p_workflow_id', 'p_input', 'p_request_id'],
  list_my_orgs: [],
  pin_device_channel: ['p_app_id', 'p_device_id', 'p_channel'],
}

const call = fc.constantFrom(...Object.keys(rpcs)).chain((fn) =>
  fc.record({
    fn: fc.constant(fn),
    args: fc.dictionary(fc.constantFrom(...rpcs[fn]!, 'p_unknown'), value, { maxKeys: rpcs[fn]!.length + 1 }),
  }),
)

let user: TestUser
let op: string

async function snapshot(orgId: string) {
  const { rows } = await primaryDb.query(
    `select (select available::text || '/' || held::text from public.credit_balances where org_id = $1) as balance,
            (select count(*)::int from public.credit_requests where org_id = $1 or user_id = $2) as requests,
            (select count(*)::int from public.credit_ledger where org_id = $1 or actor_user_id = $2) as ledger,
            (select count(*)::int from public.credit_grants where org_id = $1) as grants,
            (select count(*)::int from public.workflows where org_id = $1 or created_by = $2) as workflows,
            (select count(*)::int from public.workflow_executions where created_by = $2) as executions,
            (select has_usage_credits from public.orgs where id = $1) as flag`,
    [orgId, user.id],
  )
  return rows[0]
}

beforeAll(async () => {
  // An org without credits: every charge is rejected, so nothing may change.
  user = await createUser('fuzz')
  op = `fuzz_${randomUUID().slice(0, 8)}`
  await primaryDb.query('insert into public.credit_prices (operation, credits) values ($1, 1)', [op])
})

describe('fuzzing the user RPCs', () => {
  it('answers only documented errors and never changes anything for a rejected call', async () => {
    const before = await snapshot(user.personalOrgId)
    const seen = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(call, async ({ fn, args }) => {
        // Half the time aim at the real operation, so the charge path itself is exercised.
        if (fn === 'consume_credits' && typeof args.p_quantity === 'number' && args.p_operation === undefined) args.p_operation = op
        const { error, status } = await user.client.rpc(fn, args)
        expect(status).toBeLessThan(500)
        if (!error) return
        const ours = documented[error.message]
        const key = ours ? error.message : error.code
        seen.set(key, (seen.get(key) ?? 0) + 1)
        if (ours) expect(error.code).toBe(ours)
        else expect(platform.has(error.code), `undocumented error ${error.code}: ${error.message}`).toBe(true)
      }),
      { numRuns: runs },
    )
    expect(await snapshot(user.personalOrgId)).toEqual(before)
    console.log(`fuzz rpc: ${runs} calls, errors seen: ${JSON.stringify(Object.fromEntries(seen))}`)
  }, 120_000)
})

describe('fuzzing the plugin endpoints', () => {
  it('answers 4xx with a documented key, never a 500, and writes nothing', async () => {
    const appId = `com.fuzz${randomUUID().replaceAll('-', '').slice(0, 10)}.app`
    await primaryDb.query(`insert into public.apps (app_id, org_id, name) values ($1, $2, 'fuzz')`, [appId, user.personalOrgId])
    const valid = { app_id: appId, device_id: 'd1', version_name: '1.0.0', version_build: '1', platform: 'ios', plugin_version: '6', is_emulator: false, is_prod: true, action: 'app_ready', channel: 'beta' }
    const body = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string(),
      fc.record({ field: fc.constantFrom(...Object.keys(valid)), to: value }).map(({ field, to }) => JSON.stringify({ ...valid, [field]: to })),
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
      { numRuns: runs },
    )
    expect(await count()).toBe(before)
  }, 120_000)
})
