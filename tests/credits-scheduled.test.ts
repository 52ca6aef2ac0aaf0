import { describe, expect, it } from 'vitest'
import { createTollgateServer, IdempotencyConflictError, InvalidInputError } from '@tollgate/client/server'
import { serviceClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import {
  balanceOf,
  createPrice,
  expectBooksBalanced,
  expectDenied,
  expectReconciled,
  expectRpcError,
  flagOf,
  grantCredits,
  ledgerOf,
  randomId,
  shuffle,
  sleep,
  userTracker,
} from './support/credits.ts'

// Scheduled grants through PostgREST: grant_credits(p_effective_at) in the future is neither
// spendable nor in available until activate_scheduled_grants() (the minute job) credits it.
// No test waits for the cron: grants start a second or two ahead and the tests run the job
// themselves once the start has passed (the cron may beat them to it; the outcome is the same).

const service = () => serviceClient()

async function grantRow(grantId: string): Promise<{ status: string; remaining: number; activated_at: Date | null; effective_at: Date | null }> {
  const { rows } = await primaryDb.query(
    'select status, remaining::int as remaining, activated_at, effective_at from public.credit_grants where id = $1',
    [grantId],
  )
  return rows[0]
}

async function runActivationJob(): Promise<void> {
  const { error } = await service().rpc('activate_scheduled_grants')
  expect(error).toBeNull()
}

/** Waits until the database clock has passed `at` (the start a grant was given). */
async function untilPast(at: Date): Promise<void> {
  for (;;) {
    const { rows } = await primaryDb.query<{ past: boolean }>('select now() > $1::timestamptz as past', [at.toISOString()])
    if (rows[0]!.past) return
    await sleep(100)
  }
}

describe('scheduled grants', () => {
  const { orgs, newUser } = userTracker()

  it('keeps a grant out of available until it starts; the job credits it and the flag flips then', async () => {
    const user = await newUser('sched')
    const org = user.personalOrgId
    const operation = await createPrice(10, 'sched')
    const startsAt = new Date(Date.now() + 2_000)

    const granted = await service().rpc('grant_credits', {
      p_org_id: org, p_amount: 100, p_source: 'promotion', p_external_ref: `next-${randomId()}`, p_effective_at: startsAt.toISOString(),
    })
    expect(granted.error).toBeNull()
    expect(granted.data).toMatchObject({ status: 'scheduled', amount: 100, remaining: 100, balance_after: 0, replayed: false })
    expect(new Date(granted.data.effective_at).getTime()).toBe(startsAt.getTime())
    const grantId = granted.data.grant_id as string

    expect(await balanceOf(org)).toEqual({ available: 0, held: 0 })
    expect(await flagOf(org)).toBe(false)
    expect((await ledgerOf(org)).entries).toBe(0)
    const balance = await user.client.rpc('get_credit_balance')
    expect(balance.error).toBeNull()
    expect(balance.data).toMatchObject({ available: 0, scheduled: 100, next_start_amount: 100 })
    expect(new Date(balance.data.next_start_at).getTime()).toBe(startsAt.getTime())
    const early = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: `early-${randomId()}` })
    expect(expectRpcError(early, 'PT402', 'insufficient_credits')).toMatchObject({ required: 10, available: 0 })

    // The job before the start leaves it alone.
    await runActivationJob()
    expect(await grantRow(grantId)).toMatchObject({ status: 'scheduled', activated_at: null })
    expect(await flagOf(org)).toBe(false)

    await untilPast(startsAt)
    await runActivationJob()
    const row = await grantRow(grantId)
    expect(row).toMatchObject({ status: 'active', remaining: 100 })
    expect(row.activated_at!.getTime()).toBeGreaterThanOrEqual(startsAt.getTime())
    expect(await flagOf(org)).toBe(true)
    // Its ledger entry is dated at activation, not at creation.
    const { rows: entries } = await primaryDb.query<{ kind: string; amount: number; created_at: Date }>(
      'select kind, amount::int as amount, created_at from public.credit_ledger where grant_id = $1', [grantId])
    expect(entries).toHaveLength(1)
    expect(entries[0]).toMatchObject({ kind: 'grant', amount: 100 })
    expect(entries[0]!.created_at.getTime()).toBe(row.activated_at!.getTime())

    const charged = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: `late-${randomId()}` })
    expect(charged.error).toBeNull()
    expect(charged.data).toMatchObject({ charged: 10, balance_after: 90 })
    expect((await user.client.rpc('get_credit_balance')).data).toMatchObject({ available: 90, scheduled: 0, next_start_at: null })
    await runActivationJob()
    expect(await expectBooksBalanced(org)).toEqual({ available: 90, held: 0 })
  })

  it('keeps old callers working, by name through PostgREST and through the client package', async () => {
    const user = await newUser('compat')
    const org = user.personalOrgId
    // The arguments callers passed before p_effective_at existed.
    const old = await service().rpc('grant_credits', {
      p_org_id: org, p_amount: 30, p_source: 'purchase', p_external_ref: `pi_${randomId()}`,
      p_expires_at: new Date(Date.now() + 86_400_000).toISOString(), p_metadata: { plan: 'pro' }, p_priority: 50, p_pending: false,
    })
    expect(old.error).toBeNull()
    expect(old.data).toMatchObject({ status: 'active', balance_after: 30, effective_at: null })
    expect(await grantCredits(org, 5)).toMatchObject({ status: 'active', balance_after: 35 })

    const server = createTollgateServer(serviceClient())
    expect(await server.grant({ orgId: org, amount: 5, source: 'promotion' })).toMatchObject({ status: 'active', effectiveAt: null, balanceAfter: 40 })
    const ref = `sched-${randomId()}`
    const startsAt = new Date(Date.now() + 3_600_000)
    const scheduled = await server.grant({ orgId: org, amount: 60, source: 'promotion', externalRef: ref, effectiveAt: startsAt })
    expect(scheduled).toMatchObject({ status: 'scheduled', remaining: 60, balanceAfter: 40, replayed: false })
    expect(new Date(scheduled.effectiveAt!).getTime()).toBe(startsAt.getTime())
    expect(await server.grant({ orgId: org, amount: 60, source: 'promotion', externalRef: ref, effectiveAt: startsAt }))
      .toMatchObject({ grantId: scheduled.grantId, replayed: true })
    await expect(server.grant({ orgId: org, amount: 60, source: 'promotion', externalRef: ref, effectiveAt: new Date(startsAt.getTime() + 1000) }))
      .rejects.toBeInstanceOf(IdempotencyConflictError)
    await expect(server.grant({ orgId: org, amount: 60, source: 'promotion', externalRef: ref }))
      .rejects.toBeInstanceOf(IdempotencyConflictError)
    await expect(server.grant({ orgId: org, amount: 1, source: 'promotion', effectiveAt: startsAt, expiresAt: new Date(startsAt.getTime() - 1000) }))
      .rejects.toMatchObject({ code: '22023', key: 'invalid_effective_at' })
    await expect(server.grant({ orgId: org, amount: 1, source: 'promotion', effectiveAt: startsAt, expiresAt: new Date(startsAt.getTime() - 1000) }))
      .rejects.toBeInstanceOf(InvalidInputError)

    const balance = await createTollgateServer(serviceClient()).grant({ orgId: org, amount: 2, source: 'promotion', effectiveAt: new Date(Date.now() - 60_000) })
    expect(balance).toMatchObject({ status: 'active', balanceAfter: 42 })

    // Cancelled before it starts: voided, never credited.
    expect(await server.voidGrant({ orgId: org, source: 'promotion', externalRef: ref })).toMatchObject({ status: 'voided', remaining: 0, balanceAfter: 42 })
    const grants = await user.client.from('credit_grants').select('status, effective_at').eq('org_id', org).eq('external_ref', ref)
    expect(grants.data).toEqual([{ status: 'voided', effective_at: expect.any(String) }])
    expect(await expectBooksBalanced(org)).toEqual({ available: 42, held: 0 })
  })

  it('answers errors through PostgREST and keeps the job to the service role', async () => {
    const user = await newUser('errs')
    const org = user.personalOrgId
    const startsAt = new Date(Date.now() + 86_400_000)
    const tooEarly = await service().rpc('grant_credits', {
      p_org_id: org, p_amount: 10, p_source: 'promotion', p_effective_at: startsAt.toISOString(), p_expires_at: startsAt.toISOString(),
    })
    expect(expectRpcError(tooEarly, '22023', 'invalid_effective_at')).toMatchObject({ pending: false })
    const pendingLater = await service().rpc('grant_credits', {
      p_org_id: org, p_amount: 10, p_source: 'purchase', p_external_ref: `cs_${randomId()}`, p_pending: true, p_effective_at: startsAt.toISOString(),
    })
    expect(expectRpcError(pendingLater, '22023', 'invalid_effective_at')).toMatchObject({ pending: true })
    expectDenied(await user.client.rpc('activate_scheduled_grants'))
    expectRpcError(await service().rpc('activate_scheduled_grants', { p_batch_size: 0 }), '22023', 'invalid_batch_size')
    expect(await balanceOf(org)).toEqual({ available: 0, held: 0 })
  })

  it('charges running while the activation job runs end with exact balances, ledgers and flags', async () => {
    const operation = await createPrice(1, 'schedconc')
    const users = await Promise.all([0, 1, 2].map((i) => newUser(`schedconc${i}`)))
    const startsAt = new Date(Date.now() + 1_500)
    const grantIds: string[] = []
    for (const user of users) {
      await grantCredits(user.personalOrgId, 20)
      const g = await service().rpc('grant_credits', {
        p_org_id: user.personalOrgId, p_amount: 30, p_source: 'promotion', p_external_ref: `conc-${randomId()}`, p_effective_at: startsAt.toISOString(),
      })
      expect(g.error).toBeNull()
      grantIds.push(g.data.grant_id)
      expect(await balanceOf(user.personalOrgId)).toEqual({ available: 20, held: 0 })
    }

    // Six waves of 15 one-credit charges per org, half a second apart, across the start; the
    // activation job runs every 150 ms from just before the start until after the last wave.
    let requests = 0
    const waves = Array.from({ length: 6 }, (_, wave) => (async () => {
      await sleep(wave * 500)
      const calls = shuffle(users.flatMap((user) => Array.from({ length: 15 }, () => ({ user, id: `w${wave}-${requests++}-${randomId(6)}` }))))
      return Promise.all(calls.map(async ({ user, id }) => ({ org: user.personalOrgId, result: await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: id }) })))
    })())
    const job = (async () => {
      await sleep(1_200)
      const until = Date.now() + 2_500
      while (Date.now() < until) {
        await runActivationJob()
        await sleep(150)
      }
    })()
    const [results] = await Promise.all([Promise.all(waves).then((w) => w.flat()), job])
    await untilPast(startsAt)
    await runActivationJob()

    for (const [i, user] of users.entries()) {
      const org = user.personalOrgId
      const mine = results.filter((r) => r.org === org)
      for (const r of mine) if (r.result.error !== null) expectRpcError(r.result, 'PT402', 'insufficient_credits')
      expect(await grantRow(grantIds[i]!)).toMatchObject({ status: 'active', activated_at: expect.any(Date) })
      // Whatever the storm left is spendable now, and nothing more: charge until refused.
      let drained = 0
      for (;;) {
        const r = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: `drain-${randomId()}` })
        if (r.error !== null) {
          expectRpcError(r, 'PT402', 'insufficient_credits')
          break
        }
        drained++
      }
      // 20 active + 30 scheduled credits: exactly 50 charges in all, never more.
      expect(mine.filter((r) => r.result.error === null).length + drained).toBe(50)
      expect(await grantRow(grantIds[i]!)).toMatchObject({ status: 'active', remaining: 0 })

      // The ledger in order: every balance_after is the running sum (never below zero), and the
      // charges written before the scheduled grant was credited spent only the 20 active credits.
      const { rows } = await primaryDb.query<{ kind: string; amount: number; balance_after: number; grant_id: string | null }>(
        'select kind, amount::int as amount, balance_after::int as balance_after, grant_id from public.credit_ledger where org_id = $1 order by id', [org])
      let running = 0
      for (const e of rows) {
        running += e.amount
        expect(e.balance_after).toBe(running)
      }
      const start = rows.findIndex((e) => e.grant_id === grantIds[i])
      expect(rows[start]).toMatchObject({ kind: 'grant', amount: 30 })
      const chargedBefore = rows.slice(0, start).filter((e) => e.kind === 'charge').length
      expect(chargedBefore).toBeGreaterThan(0)
      expect(chargedBefore).toBeLessThanOrEqual(20)
      expect(await ledgerOf(org)).toMatchObject({ amount: 0, kinds: { grant: 2, charge: 50 }, sums: { grant: 50, charge: -50 } })
      expect(await expectBooksBalanced(org)).toEqual({ available: 0, held: 0 })
      expect(await flagOf(org)).toBe(false)
    }
    await expectReconciled(users.map((u) => u.personalOrgId))
  })

  it('leaves the books reconciled', async () => {
    await expectReconciled(orgs)
  })
})
