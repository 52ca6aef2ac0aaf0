import { describe, expect, it } from 'vitest'
import { serviceClient } from './support/clients.ts'
import { eventually, primaryDb } from './support/db.ts'
import {
  balanceOf,
  createPrice,
  expectBooksBalanced,
  expectReconciled,
  expectRpcError,
  flagOf,
  grantCredits,
  ledgerOfRequest,
  randomId,
  requestOf,
  sleep,
  userTracker,
} from './support/credits.ts'

// Pre-authorisation: reserve, then capture (up to the hold) or release (nothing
// charged); a hold nobody comes back for expires.
describe('credit holds', () => {
  const { orgs, newUser } = userTracker()
  const service = serviceClient()

  it('captures part of a hold: charges unit price × captured quantity and releases the rest', async () => {
    const user = await newUser('capture')
    const org = user.personalOrgId
    const operation = await createPrice(7, 'hold')
    await grantCredits(org, 100)
    const requestId = `hold-${randomId()}`

    const reserve = await service.rpc('reserve_credits', {
      p_org_id: org,
      p_user_id: user.id,
      p_operation: operation,
      p_request_id: requestId,
      p_quantity: 5,
    })
    expect(reserve.error).toBeNull()
    expect(reserve.data).toMatchObject({ status: 'held', reserved: 35, charged: 0, balance_before: 100, balance_after: 65, replayed: false })
    expect(await balanceOf(org)).toEqual({ available: 65, held: 35 })

    const capture = await service.rpc('capture_credits', {
      p_org_id: org,
      p_request_id: requestId,
      p_quantity: 2,
      p_result: { latency_ms: 120, backend_endpoint: '/v1/generate' },
    })
    expect(capture.error).toBeNull()
    expect(capture.data).toMatchObject({ status: 'captured', charged: 14, reserved: 35, balance_after: 86, replayed: false })
    expect(await balanceOf(org)).toEqual({ available: 86, held: 0 })
    expect(await ledgerOfRequest(org, requestId)).toEqual([
      ['hold', -35, 35],
      ['capture', 0, -14],
      ['release', 21, -21],
    ])
    expect(await requestOf(org, requestId)).toMatchObject({
      kind: 'hold',
      quantity: 5,
      unit_price: 7,
      charged: 14,
      status: 'captured',
      success: true,
      backend_error: false,
      latency_ms: 120,
    })

    // A retried capture with the same quantity replays; another quantity conflicts.
    const again = await service.rpc('capture_credits', { p_org_id: org, p_request_id: requestId, p_quantity: 2 })
    expect(again.error).toBeNull()
    expect(again.data).toMatchObject({ status: 'captured', charged: 14, replayed: true })
    expectRpcError(await service.rpc('capture_credits', { p_org_id: org, p_request_id: requestId, p_quantity: 3 }), 'PT409', 'idempotency_conflict')
    expect(await balanceOf(org)).toEqual({ available: 86, held: 0 })
    await expectBooksBalanced(org)
  })

  it('releases a hold: nothing charged, backend_error recorded', async () => {
    const user = await newUser('release')
    const org = user.personalOrgId
    const operation = await createPrice(4, 'hold')
    await grantCredits(org, 10)
    const requestId = `hold-${randomId()}`

    const reserve = await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: requestId, p_quantity: 2 })
    expect(reserve.error).toBeNull()
    expect(await balanceOf(org)).toEqual({ available: 2, held: 8 })
    // Held credits are not spendable.
    const spend = await user.client.rpc('consume_credits', { p_operation: operation, p_request_id: `spend-${randomId()}` })
    const details = expectRpcError(spend, 'PT402', 'insufficient_credits')
    expect({ required: details.required, available: details.available }).toEqual({ required: 4, available: 2 })

    const release = await service.rpc('release_credits', {
      p_org_id: org,
      p_request_id: requestId,
      p_result: { error_code: 'upstream_timeout', latency_ms: 3000 },
    })
    expect(release.error).toBeNull()
    expect(release.data).toMatchObject({ status: 'released', charged: 0, reserved: 8, balance_after: 10, replayed: false })
    expect(await balanceOf(org)).toEqual({ available: 10, held: 0 })
    expect(await ledgerOfRequest(org, requestId)).toEqual([
      ['hold', -8, 8],
      ['release', 8, -8],
    ])
    expect(await requestOf(org, requestId)).toMatchObject({
      status: 'released',
      charged: 0,
      success: false,
      backend_error: true,
      error_code: 'upstream_timeout',
      latency_ms: 3000,
    })

    const again = await service.rpc('release_credits', { p_org_id: org, p_request_id: requestId })
    expect(again.error).toBeNull()
    expect(again.data).toMatchObject({ status: 'released', replayed: true })
    expectRpcError(await service.rpc('capture_credits', { p_org_id: org, p_request_id: requestId }), 'PT409', 'hold_not_active')
    expect(await balanceOf(org)).toEqual({ available: 10, held: 0 })
    await expectBooksBalanced(org)
  })

  it('expires a hold past its TTL through expire_stale_holds()', async () => {
    const user = await newUser('ttl')
    const org = user.personalOrgId
    const operation = await createPrice(3, 'hold')
    await grantCredits(org, 3)
    const requestId = `hold-${randomId()}`

    const reserve = await service.rpc('reserve_credits', {
      p_org_id: org,
      p_user_id: user.id,
      p_operation: operation,
      p_request_id: requestId,
      p_ttl_seconds: 1,
    })
    expect(reserve.error).toBeNull()
    expect(await balanceOf(org)).toEqual({ available: 0, held: 3 })
    expect(await flagOf(org)).toBe(false)
    const { rows } = await primaryDb.query<{ ttl_ms: number }>(
      `select (extract(epoch from hold_expires_at - created_at) * 1000)::int as ttl_ms from public.credit_requests where org_id = $1 and request_id = $2`,
      [org, requestId],
    )
    expect(rows).toEqual([{ ttl_ms: 1000 }])

    await sleep(1500)
    // Counts every org's stale holds (and the pg_cron job may have run first), so the count is
    // not ours to assert; the hold's state is.
    const expire = await service.rpc('expire_stale_holds')
    expect(expire.error).toBeNull()
    expect(typeof expire.data).toBe('number')

    expect(await requestOf(org, requestId)).toMatchObject({ status: 'expired', charged: 0, success: false })
    expect(await balanceOf(org)).toEqual({ available: 3, held: 0 })
    expect(await flagOf(org)).toBe(true)
    expect(await ledgerOfRequest(org, requestId)).toEqual([
      ['hold', -3, 3],
      ['release', 3, -3],
    ])
    expectRpcError(await service.rpc('capture_credits', { p_org_id: org, p_request_id: requestId }), 'PT409', 'hold_expired')
    await expectBooksBalanced(org)
  })

  it('lets exactly one of a concurrent capture and release of the same hold win', async () => {
    const user = await newUser('race')
    const org = user.personalOrgId
    const operation = await createPrice(5, 'hold')
    await grantCredits(org, 200)
    const rounds = 10

    const holds = Array.from({ length: rounds }, () => `race-${randomId()}`)
    for (const requestId of holds) {
      const r = await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: requestId, p_quantity: 3 })
      expect(r.error).toBeNull()
    }
    expect(await balanceOf(org)).toEqual({ available: 50, held: 150 })

    let captures = 0
    for (const requestId of holds) {
      const [capture, release] = await Promise.all([
        service.rpc('capture_credits', { p_org_id: org, p_request_id: requestId, p_quantity: 3 }),
        service.rpc('release_credits', { p_org_id: org, p_request_id: requestId, p_backend_error: false }),
      ])
      expect([capture.error, release.error].filter((e) => e === null)).toHaveLength(1)
      const loser = capture.error === null ? release : capture
      expectRpcError(loser, 'PT409', 'hold_not_active')
      const state = await requestOf(org, requestId)
      if (capture.error === null) {
        captures++
        expect(capture.data).toMatchObject({ status: 'captured', charged: 15, replayed: false })
        expect(state).toMatchObject({ status: 'captured', charged: 15 })
        expect(await ledgerOfRequest(org, requestId)).toEqual([
          ['hold', -15, 15],
          ['capture', 0, -15],
        ])
      } else {
        expect(release.data).toMatchObject({ status: 'released', charged: 0, replayed: false })
        expect(state).toMatchObject({ status: 'released', charged: 0, backend_error: false })
        expect(await ledgerOfRequest(org, requestId)).toEqual([
          ['hold', -15, 15],
          ['release', 15, -15],
        ])
      }
    }

    expect(await balanceOf(org)).toEqual({ available: 200 - 15 * captures, held: 0 })
    await expectBooksBalanced(org)
  })

  it('reserves exactly what the balance covers under 30 parallel holds', async () => {
    const user = await newUser('holdstorm')
    const org = user.personalOrgId
    const operation = await createPrice(5, 'hold')
    await grantCredits(org, 100)

    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: `storm-${i}` }),
      ),
    )
    const held = results.filter((r) => r.error === null)
    expect(held).toHaveLength(20)
    for (const r of results.filter((r) => r.error !== null)) {
      const details = expectRpcError(r, 'PT402', 'insufficient_credits')
      expect({ required: details.required, available: details.available }).toEqual({ required: 5, available: 0 })
    }
    expect(await balanceOf(org)).toEqual({ available: 0, held: 100 })
    expect(await flagOf(org)).toBe(false)
    await expectBooksBalanced(org)
  })

  it('captures a hold whose grant expired while held: the released part expires with it', async () => {
    const user = await newUser('holdexpiry')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'hold')
    const expiresAt = new Date(Date.now() + 2_000)
    const grant = await grantCredits(org, 10, { expiresAt })
    const requestId = `hold-${randomId()}`
    const reserve = await service.rpc('reserve_credits', { p_org_id: org, p_user_id: user.id, p_operation: operation, p_request_id: requestId, p_quantity: 4 })
    expect(reserve.error).toBeNull()
    expect(await balanceOf(org)).toEqual({ available: 6, held: 4 })

    await eventually('the grant is due on the database clock', async () => {
      const { rows } = await primaryDb.query<{ due: boolean }>('select now() >= $1::timestamptz as due', [expiresAt.toISOString()])
      return rows[0]!.due ? true : undefined
    })
    expect((await service.rpc('expire_credit_grants')).error).toBeNull()
    expect(await balanceOf(org)).toEqual({ available: 0, held: 4 })

    const capture = await service.rpc('capture_credits', { p_org_id: org, p_request_id: requestId, p_quantity: 1 })
    expect(capture.error).toBeNull()
    expect(capture.data).toMatchObject({ status: 'captured', charged: 1, balance_after: 0 })
    expect(await ledgerOfRequest(org, requestId)).toEqual([
      ['hold', -4, 4],
      ['capture', 0, -1],
      ['release', 3, -3],
      ['expire', -3, 0],
    ])
    const { rows } = await primaryDb.query(
      'select status, remaining::int as remaining, expired_amount::int as expired_amount from public.credit_grants where id = $1',
      [grant.grant_id],
    )
    expect(rows).toEqual([{ status: 'expired', remaining: 0, expired_amount: 9 }])
    expect(await expectBooksBalanced(org)).toEqual({ available: 0, held: 0 })
  })

  it('leaves the books reconciled', async () => {
    await expectReconciled(orgs)
  })
})
