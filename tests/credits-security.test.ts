import { describe, expect, it } from 'vitest'
import { anonClient, serviceClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import {
  balanceOf,
  createPrice,
  expectBooksBalanced,
  expectDenied,
  expectReconciled,
  expectRpcError,
  grantCredits,
  ledgerOf,
  randomId,
  requestCountOf,
  userTracker,
} from './support/credits.ts'

/** Everything a write could have changed for an org. */
async function snapshotOf(orgId: string): Promise<unknown> {
  const { rows } = await primaryDb.query(
    `select (select count(*)::int from public.credit_grants where org_id = $1) as grants,
            (select coalesce(sum(remaining), 0)::int from public.credit_grants where org_id = $1) as remaining,
            (select count(*)::int from public.workflows where org_id = $1) as workflows,
            (select has_usage_credits from public.orgs where id = $1) as flag`,
    [orgId],
  )
  return { ...rows[0], balance: await balanceOf(orgId), ledger: await ledgerOf(orgId), requests: await requestCountOf(orgId) }
}

// A user moves money only through consume_credits and the workflow RPCs, on orgs they belong
// to; releases, refunds, grants and maintenance belong to the service role.
describe('credit security through PostgREST', () => {
  const { orgs, newUser } = userTracker()
  const service = serviceClient()

  it('refuses every service-role RPC to a signed-in user', async () => {
    const user = await newUser('sneaky')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'sec')
    await grantCredits(org, 20)
    const charge = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'charged' })
    expect(charge.error).toBeNull()
    const hold = await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: 'held' })
    expect(hold.error).toBeNull()
    const pendingRef = `pi_${randomId()}`
    await grantCredits(org, 100, { externalRef: pendingRef, pending: true })
    const before = await snapshotOf(org)
    expect(before).toMatchObject({ grants: 2, balance: { available: 16, held: 2 }, requests: 2 })

    const calls: Array<[string, Record<string, unknown>]> = [
      ['release_credits', { p_org_id: org, p_request_id: 'held' }],
      ['capture_credits', { p_org_id: org, p_request_id: 'held' }],
      ['refund_credits', { p_org_id: org, p_request_id: 'charged', p_reason: 'I want it back' }],
      ['grant_credits', { p_org_id: org, p_amount: 1000, p_source: 'purchase' }],
      ['activate_credit_grant', { p_org_id: org, p_source: 'purchase', p_external_ref: pendingRef }],
      ['void_credit_grant', { p_org_id: org, p_source: 'purchase', p_external_ref: pendingRef }],
      ['grant_onboarding_credits', { p_user_id: user.id, p_amount: 1000 }],
      ['reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: 'mine' }],
      ['expire_credit_grants', {}],
      ['expire_stale_holds', {}],
      ['refresh_orgs_has_usage_credits', {}],
      ['reconcile_credits', {}],
      ['revoke_credits', { p_org_id: org, p_amount: 16, p_reason: 'mine', p_external_ref: 'mine' }],
      ['apply_checkout_event', { p_event_id: 'evt_mine', p_event_type: 'checkout.session.completed', p_session_id: 'cs_mine', p_org_id: org, p_credits: 1000, p_outcome: 'paid' }],
      ['apply_charge_event', { p_event_id: 'evt_mine', p_event_type: 'charge.refunded', p_payment_intent_id: 'pi_mine', p_amount: 100, p_amount_refunded: 0 }],
      ['record_payment_exception', { p_event_id: 'evt_mine', p_event_type: 'x', p_object_id: null, p_reason: 'mine' }],
      ['resolve_payment_exception', { p_id: 1, p_resolution: 'mine' }],
    ]
    for (const [fn, args] of calls) {
      const result = await user.client.rpc(fn, args)
      expect({ fn, code: result.error?.code, status: result.status }).toEqual({ fn, code: '42501', status: 403 })
      expect(result.data).toBeNull()
    }
    expect(await snapshotOf(org)).toEqual(before)
  })

  it('refuses direct writes to credit tables and workflows through .from()', async () => {
    const user = await newUser('writer')
    const org = user.personalOrgId
    await grantCredits(org, 10)
    const created = await user.client.rpc('create_workflow', { p_name: 'mine' })
    expect(created.error).toBeNull()
    const before = await snapshotOf(org)
    expect(before).toMatchObject({ workflows: 1, balance: { available: 5, held: 0 } })
    const { rows: prices } = await primaryDb.query(`select credits::int as credits from public.credit_prices where operation = 'workflow_create'`)
    expect(prices).toEqual([{ credits: 5 }])

    const inserts: Record<string, Record<string, unknown>> = {
      credit_grants: { org_id: org, amount: 1000, remaining: 1000, source: 'purchase' },
      credit_balances: { org_id: org, available: 1000 },
      credit_ledger: { org_id: org, kind: 'grant', amount: 1000, balance_after: 1000, held_after: 0, actor_role: 'authenticated' },
      credit_requests: { org_id: org, request_id: 'forged', kind: 'consume', operation: 'workflow_create', quantity: 1, unit_price: 0, status: 'charged', balance_before: 0, balance_after: 0 },
      credit_prices: { operation: `free_${randomId()}`, credits: 0 },
      workflows: { org_id: org, name: 'free', request_id: 'forged' },
    }
    const updates: Record<string, [Record<string, unknown>, string, string]> = {
      credit_grants: [{ remaining: 1000 }, 'org_id', org],
      credit_balances: [{ available: 1000 }, 'org_id', org],
      credit_ledger: [{ amount: 1000 }, 'org_id', org],
      credit_requests: [{ charged: 0 }, 'org_id', org],
      credit_prices: [{ credits: 0 }, 'operation', 'workflow_create'],
      workflows: [{ name: 'renamed' }, 'org_id', org],
    }
    for (const table of Object.keys(inserts)) {
      const insert = await user.client.from(table).insert(inserts[table]!)
      expect({ table, op: 'insert', code: insert.error?.code }).toEqual({ table, op: 'insert', code: '42501' })
      const [values, column, value] = updates[table]!
      const update = await user.client.from(table).update(values).eq(column, value)
      expect({ table, op: 'update', code: update.error?.code }).toEqual({ table, op: 'update', code: '42501' })
      const remove = await user.client.from(table).delete().eq(column, value)
      expect({ table, op: 'delete', code: remove.error?.code }).toEqual({ table, op: 'delete', code: '42501' })
    }

    expect(await snapshotOf(org)).toEqual(before)
    const { rows: pricesAfter } = await primaryDb.query(`select credits::int as credits from public.credit_prices where operation = 'workflow_create'`)
    expect(pricesAfter).toEqual([{ credits: 5 }])
    // The reconciliation tables are not even readable.
    expectDenied(await user.client.from('credit_reconciliation_issues').select('id'))
  })

  it('keeps other orgs\' balances out of reach', async () => {
    const alice = await newUser('alice')
    const bob = await newUser('bob')
    const operation = await createPrice(1, 'sec')
    await grantCredits(alice.personalOrgId, 11)
    await grantCredits(bob.personalOrgId, 22)

    const peek = await alice.client.rpc('get_credit_balance', { p_org_id: bob.personalOrgId })
    expect(expectRpcError(peek, '42501', 'not_a_member')).toEqual({ org_id: bob.personalOrgId })
    const spend = await alice.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'on-bob', p_org_id: bob.personalOrgId })
    expect(expectRpcError(spend, '42501', 'not_a_member')).toEqual({ org_id: bob.personalOrgId })
    const stats = await alice.client.rpc('get_usage_stats', { p_org_id: bob.personalOrgId })
    expectRpcError(stats, '42501', 'not_a_member')
    expect(await balanceOf(bob.personalOrgId)).toEqual({ available: 22, held: 0 })
    expect(await requestCountOf(bob.personalOrgId)).toBe(0)

    const own = await alice.client.rpc('get_credit_balance')
    expect(own.error).toBeNull()
    expect(own.data).toMatchObject({ org_id: alice.personalOrgId, available: 11, held: 0 })

    for (const table of ['credit_balances', 'credit_grants', 'credit_ledger']) {
      const { data, error } = await alice.client.from(table).select('org_id')
      expect(error).toBeNull()
      expect({ table, orgs: [...new Set((data ?? []).map((r) => r.org_id))] }).toEqual({ table, orgs: [alice.personalOrgId] })
    }
    const { data } = await alice.client.from('credit_balances').select('org_id, available, held')
    expect(data).toEqual([{ org_id: alice.personalOrgId, available: 11, held: 0 }])
  })

  it('refuses anon callers', async () => {
    const user = await newUser('anonvictim')
    const operation = await createPrice(1, 'sec')
    await grantCredits(user.personalOrgId, 5)
    const before = await snapshotOf(user.personalOrgId)

    const anon = anonClient()
    const consume = await anon.rpc('consume_credits', { p_operation: operation, p_request_id: 'anon', p_org_id: user.personalOrgId })
    expect({ code: consume.error?.code, status: consume.status }).toEqual({ code: '42501', status: 401 })
    const balance = await anon.rpc('get_credit_balance', { p_org_id: user.personalOrgId })
    expect({ code: balance.error?.code, status: balance.status }).toEqual({ code: '42501', status: 401 })
    expectDenied(await anon.from('credit_balances').select('org_id'))
    expect(await snapshotOf(user.personalOrgId)).toEqual(before)
  })

  it('rejects invalid inputs with 22023 and writes nothing', async () => {
    const user = await newUser('fuzz')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'sec')
    await grantCredits(org, 50)
    const ok = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'ok', p_quantity: 2 })
    expect(ok.error).toBeNull()
    const before = await snapshotOf(org)
    expect(before).toMatchObject({ balance: { available: 48, held: 0 }, requests: 1 })
    const consume = (args: Record<string, unknown>) => user.client.rpc('consume_credits', { p_operation: operation, p_request_id: `bad-${randomId()}`, ...args })

    expect(expectRpcError(await consume({ p_quantity: 0 }), '22023', 'invalid_quantity')).toEqual({ quantity: 0, min: 1, max: 1_000_000 })
    expect(expectRpcError(await consume({ p_quantity: -1 }), '22023', 'invalid_quantity')).toEqual({ quantity: -1, min: 1, max: 1_000_000 })
    expect(expectRpcError(await consume({ p_quantity: 1_000_001 }), '22023', 'invalid_quantity')).toEqual({ quantity: 1_000_001, min: 1, max: 1_000_000 })
    // p_quantity is `integer` (DESIGN.md's signature): a value that does not fit the type is
    // rejected by PostgreSQL before the function runs, with 22003 — documented in the README's
    // error table as a type error. Still HTTP 400 and nothing is written.
    const huge = await consume({ p_quantity: 2 ** 31 })
    expect({ code: huge.error?.code, status: huge.status, data: huge.data }).toEqual({ code: '22003', status: 400, data: null })
    expectRpcError(await consume({ p_request_id: null }), '22023', 'invalid_request_id')
    expectRpcError(await consume({ p_request_id: '' }), '22023', 'invalid_request_id')
    expectRpcError(await consume({ p_request_id: 'x'.repeat(201) }), '22023', 'invalid_request_id')
    expect(expectRpcError(await consume({ p_metadata: { blob: 'x'.repeat(1 << 20) } }), '22023', 'invalid_metadata')).toEqual({ max_bytes: 8192 })
    expectRpcError(await consume({ p_metadata: ['not', 'an', 'object'] }), '22023', 'invalid_metadata')
    expect(expectRpcError(await consume({ p_operation: `nope_${randomId()}` }), 'PT404', 'unknown_operation')).toHaveProperty('operation')
    // A used request id with other parameters is a conflict, not a second charge.
    expectRpcError(await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'ok', p_quantity: 3 }), 'PT409', 'idempotency_conflict')

    const grant = (args: Record<string, unknown>) => service.rpc('grant_credits', { p_org_id: org, p_amount: 10, p_source: 'purchase', ...args })
    expectRpcError(await grant({ p_amount: 0 }), '22023', 'invalid_amount')
    expectRpcError(await grant({ p_amount: -10 }), '22023', 'invalid_amount')
    expectRpcError(await grant({ p_source: 'refund' }), '22023', 'invalid_source')
    expectRpcError(await grant({ p_expires_at: new Date(Date.now() - 60_000).toISOString() }), '22023', 'invalid_expiry')
    expectRpcError(await grant({ p_metadata: { blob: 'x'.repeat(1 << 20) } }), '22023', 'invalid_metadata')
    const reserve = (args: Record<string, unknown>) =>
      service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: `bad-${randomId()}`, ...args })
    expectRpcError(await reserve({ p_ttl_seconds: 0 }), '22023', 'invalid_ttl')
    expectRpcError(await reserve({ p_quantity: 0 }), '22023', 'invalid_quantity')

    expect(await snapshotOf(org)).toEqual(before)
    await expectBooksBalanced(org)
  })

  it('leaves the books reconciled', async () => {
    await expectReconciled(orgs)
  })
})
