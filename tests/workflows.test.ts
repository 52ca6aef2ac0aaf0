import { describe, expect, it } from 'vitest'
import { primaryDb } from './support/db.ts'
import {
  balanceOf,
  expectBooksBalanced,
  expectReconciled,
  expectRpcError,
  flagOf,
  grantCredits,
  ledgerOf,
  ledgerOfRequest,
  randomId,
  requestCountOf,
  userTracker,
} from './support/credits.ts'

// The charge is part of the business operation. Without the credits there is no
// workflow; concurrent creations never overdraw.
// Prices are the migration's defaults: workflow_create 5, workflow_execute 3.
describe('workflows charged in the same transaction', () => {
  const { orgs, newUser } = userTracker()

  async function workflowsOf(orgId: string): Promise<Array<{ name: string; request_id: string }>> {
    const { rows } = await primaryDb.query('select name, request_id from public.workflows where org_id = $1 order by created_at, id', [orgId])
    return rows
  }

  it('uses the default workflow prices', async () => {
    const { rows } = await primaryDb.query(
      `select operation, credits::int as credits from public.credit_prices where operation in ('workflow_create', 'workflow_execute') and active order by operation`,
    )
    expect(rows).toEqual([
      { operation: 'workflow_create', credits: 5 },
      { operation: 'workflow_execute', credits: 3 },
    ])
  })

  it('creates no workflow and writes no ledger entry when credits are short', async () => {
    const user = await newUser('wfpoor')
    const org = user.personalOrgId
    await grantCredits(org, 4)
    const ledgerBefore = await ledgerOf(org)
    expect(ledgerBefore.entries).toBe(1)

    const result = await user.client.rpc('create_workflow', { p_name: 'nightly report', p_request_id: `wf-${randomId()}` })
    const details = expectRpcError(result, 'PT402', 'insufficient_credits')
    expect(details).toMatchObject({ required: 5, available: 4, operation: 'workflow_create', quantity: 1 })

    expect(await workflowsOf(org)).toEqual([])
    expect(await ledgerOf(org)).toEqual(ledgerBefore)
    expect(await requestCountOf(org)).toBe(0)
    expect(await balanceOf(org)).toEqual({ available: 4, held: 0 })
    expect(await flagOf(org)).toBe(true)
  })

  it('creates a workflow and charges 5; a retried request id returns the same workflow', async () => {
    const user = await newUser('wfrich')
    const org = user.personalOrgId
    await grantCredits(org, 12)
    const requestId = `wf-${randomId()}`

    const created = await user.client.rpc('create_workflow', { p_name: 'sync crm', p_request_id: requestId })
    expect(created.error).toBeNull()
    expect(created.data).toMatchObject({ org_id: org, charge: { charged: 5, balance_before: 12, balance_after: 7, replayed: false } })
    expect(await workflowsOf(org)).toEqual([{ name: 'sync crm', request_id: requestId }])
    expect(await balanceOf(org)).toEqual({ available: 7, held: 0 })
    expect(await ledgerOfRequest(org, requestId)).toEqual([['charge', -5, 0]])

    const retried = await user.client.rpc('create_workflow', { p_name: 'sync crm', p_request_id: requestId })
    expect(retried.error).toBeNull()
    expect(retried.data).toMatchObject({ workflow_id: created.data.workflow_id, charge: { charged: 5, replayed: true } })
    expect(await workflowsOf(org)).toHaveLength(1)
    expect(await expectBooksBalanced(org)).toEqual({ available: 7, held: 0 })
  })

  it('creates exactly 3 of 6 concurrent workflows on 15 credits', async () => {
    const user = await newUser('wfrace')
    const org = user.personalOrgId
    await grantCredits(org, 15)
    expect(await balanceOf(org)).toEqual({ available: 15, held: 0 })

    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => user.client.rpc('create_workflow', { p_name: `flow ${i}`, p_request_id: `wf-race-${i}` })),
    )

    const created = results.filter((r) => r.error === null)
    const refused = results.filter((r) => r.error !== null)
    expect({ created: created.length, refused: refused.length }).toEqual({ created: 3, refused: 3 })
    for (const r of refused) expect(expectRpcError(r, 'PT402', 'insufficient_credits')).toMatchObject({ required: 5, available: 0 })
    const rows = await workflowsOf(org)
    expect(rows).toHaveLength(3)
    expect(new Set(rows.map((w) => w.request_id))).toEqual(new Set(created.map((r) => r.data.charge.request_id)))
    expect(await ledgerOf(org)).toMatchObject({ entries: 4, amount: 0, kinds: { grant: 1, charge: 3 }, sums: { grant: 15, charge: -15 } })
    expect(await requestCountOf(org)).toBe(3)
    expect(await flagOf(org)).toBe(false)
    expect(await expectBooksBalanced(org)).toEqual({ available: 0, held: 0 })
  })

  it('charges 3 to execute a workflow, and nothing without the credits', async () => {
    const user = await newUser('wfexec')
    const org = user.personalOrgId
    await grantCredits(org, 10)
    const created = await user.client.rpc('create_workflow', { p_name: 'etl', p_request_id: `wf-${randomId()}` })
    expect(created.error).toBeNull()
    expect(await balanceOf(org)).toEqual({ available: 5, held: 0 })

    const requestId = `exec-${randomId()}`
    const executed = await user.client.rpc('execute_workflow', { p_workflow_id: created.data.workflow_id, p_input: { rows: 10 }, p_request_id: requestId })
    expect(executed.error).toBeNull()
    expect(executed.data).toMatchObject({
      workflow_id: created.data.workflow_id,
      charge: { operation: 'workflow_execute', charged: 3, balance_before: 5, balance_after: 2, replayed: false },
    })
    const { rows } = await primaryDb.query('select workflow_id, status, input from public.workflow_executions where org_id = $1', [org])
    expect(rows).toEqual([{ workflow_id: created.data.workflow_id, status: 'queued', input: { rows: 10 } }])
    expect(await ledgerOfRequest(org, requestId)).toEqual([['charge', -3, 0]])

    const broke = await user.client.rpc('execute_workflow', { p_workflow_id: created.data.workflow_id, p_request_id: `exec-${randomId()}` })
    expect(expectRpcError(broke, 'PT402', 'insufficient_credits')).toMatchObject({ required: 3, available: 2 })
    const { rows: after } = await primaryDb.query('select count(*)::int as n from public.workflow_executions where org_id = $1', [org])
    expect(after).toEqual([{ n: 1 }])

    // Someone else's workflow is not theirs to run (or to charge), and does not exist for them.
    const stranger = await newUser('wfstranger')
    await grantCredits(stranger.personalOrgId, 10)
    const foreign = await stranger.client.rpc('execute_workflow', { p_workflow_id: created.data.workflow_id })
    expectRpcError(foreign, 'PT404', 'unknown_workflow')
    expect(await balanceOf(stranger.personalOrgId)).toEqual({ available: 10, held: 0 })
    expect(await expectBooksBalanced(org)).toEqual({ available: 2, held: 0 })
  })

  it('leaves the books reconciled', async () => {
    await expectReconciled(orgs)
  })
})
