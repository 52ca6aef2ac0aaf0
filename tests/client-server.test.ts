import { describe, expect, it } from 'vitest'
import {
  ConflictError,
  createTollgateServer,
  HoldStateError,
  InsufficientCreditsError,
  InvalidInputError,
  RequestAlreadySettledError,
  RequestInProgressError,
  toTollgateError,
  UserError,
  type TollgateServerOptions,
} from '@tollgate/client/server'
import { serviceClient } from './support/clients.ts'
import { env } from './support/env.ts'
import {
  balanceOf,
  createPrice,
  expectBooksBalanced,
  expectReconciled,
  grantCredits,
  ledgerOfRequest,
  randomId,
  requestCountOf,
  requestOf,
  sleep,
  userTracker,
} from './support/credits.ts'
import { clientWithFetch, fastRetries, faultyFetch } from './client-helpers.ts'

// The server half (service role) against the real stack: grants, holds, refunds, withCredits.
describe('@tollgate/client/server', () => {
  const { orgs, newUser } = userTracker()
  const serverWith = (options: TollgateServerOptions = {}) => createTollgateServer(serviceClient(), { ...fastRetries, ...options })

  it('grants: idempotent by reference, pending → active / voided, onboarding once', async () => {
    const user = await newUser('grantee')
    const org = user.personalOrgId
    const server = serverWith()
    const ref = `pi_${randomId()}`
    const expiresAt = new Date(Date.now() + 3_600_000)

    const first = await server.grant({ orgId: org, amount: 100, source: 'purchase', externalRef: ref, expiresAt, metadata: { plan: 'pro' }, priority: 50 })
    expect(first).toEqual({
      grantId: expect.any(String),
      orgId: org,
      amount: 100,
      remaining: 100,
      status: 'active',
      source: 'purchase',
      externalRef: ref,
      priority: 50,
      expiresAt: expect.any(String),
      effectiveAt: null,
      operations: null,
      balanceAfter: 100,
      replayed: false,
    })
    expect(new Date(first.expiresAt!).getTime()).toBe(expiresAt.getTime())
    expect(await server.grant({ orgId: org, amount: 100, source: 'purchase', externalRef: ref })).toMatchObject({ grantId: first.grantId, replayed: true, balanceAfter: 100 })

    const pendingRef = `pi_${randomId()}`
    expect(await server.grant({ orgId: org, amount: 30, source: 'purchase', externalRef: pendingRef, pending: true })).toMatchObject({ status: 'pending', balanceAfter: 100 })
    expect(await server.activateGrant({ orgId: org, source: 'purchase', externalRef: pendingRef })).toMatchObject({ status: 'active', balanceAfter: 130, replayed: false })
    expect(await server.activateGrant({ orgId: org, source: 'purchase', externalRef: pendingRef })).toMatchObject({ status: 'active', balanceAfter: 130, replayed: true })

    const failedRef = `pi_${randomId()}`
    await server.grant({ orgId: org, amount: 70, source: 'purchase', externalRef: failedRef, pending: true })
    expect(await server.voidGrant({ orgId: org, source: 'purchase', externalRef: failedRef })).toMatchObject({ status: 'voided', remaining: 0, balanceAfter: 130 })
    expect(await server.voidGrant({ orgId: org, source: 'purchase', externalRef: failedRef })).toMatchObject({ status: 'voided', replayed: true })

    const onboarding = await server.grantOnboarding({ userId: user.id, amount: 20 })
    expect(onboarding).toMatchObject({ source: 'onboarding', externalRef: user.id, amount: 20, balanceAfter: 150, replayed: false })
    expect(await server.grantOnboarding({ userId: user.id, amount: 20 })).toMatchObject({ grantId: onboarding.grantId, replayed: true })
    expect(await expectBooksBalanced(org)).toEqual({ available: 150, held: 0 })
  })

  it('reserve, capture part, release, refund', async () => {
    const user = await newUser('holder')
    const org = user.personalOrgId
    const operation = await createPrice(5, 'csrv')
    await grantCredits(org, 100)
    const server = serverWith()

    const hold = await server.reserve({ orgId: org, userId: user.id, operation, quantity: 4, ttlSeconds: 120, metadata: { job: 1 } })
    expect(hold).toMatchObject({ orgId: org, operation, quantity: 4, status: 'held', reserved: 20, charged: 0, balanceBefore: 100, balanceAfter: 80, replayed: false })
    expect(hold.requestId).toMatch(/^[0-9a-f-]{36}$/)
    expect(new Date(hold.holdExpiresAt!).getTime() - Date.now()).toBeGreaterThan(100_000)
    expect(await balanceOf(org)).toEqual({ available: 80, held: 20 })

    const captured = await server.capture({
      orgId: org,
      requestId: hold.requestId,
      quantity: 3,
      result: { latencyMs: 42, backendEndpoint: 'gpu-1', output: { tokens: 300 } },
    })
    expect(captured).toMatchObject({ status: 'captured', charged: 15, reserved: 20, balanceAfter: 85 })
    expect(await requestOf(org, hold.requestId)).toMatchObject({ status: 'captured', charged: 15, success: true, backend_error: false, latency_ms: 42 })

    const other = await server.reserve({ orgId: org, operation, requestId: `job-${randomId()}` })
    const released = await server.release({ orgId: org, requestId: other.requestId, result: { errorCode: 'timeout', latencyMs: 900 } })
    expect(released).toMatchObject({ status: 'released', charged: 0, balanceAfter: 85 })
    expect(await requestOf(org, other.requestId)).toMatchObject({ status: 'released', backend_error: true, error_code: 'timeout', latency_ms: 900 })
    expect(await server.release({ orgId: org, requestId: other.requestId })).toMatchObject({ replayed: true })

    const refund = await server.refund({ orgId: org, requestId: hold.requestId, reason: 'bad output' })
    expect(refund).toMatchObject({ status: 'refunded', refunded: 15, balanceAfter: 100, replayed: false })
    expect(await server.refund({ orgId: org, requestId: hold.requestId, reason: 'bad output' })).toMatchObject({ replayed: true })
    expect(await expectBooksBalanced(org)).toEqual({ available: 100, held: 0 })
  })

  it('withCredits captures on success, with the latency and the result', async () => {
    const user = await newUser('metered')
    const org = user.personalOrgId
    const operation = await createPrice(3, 'csrv')
    await grantCredits(org, 50)
    const server = serverWith()

    let seen: { requestId: string; reserved: number } | undefined
    const { result, charge } = await server.withCredits(
      { orgId: org, userId: user.id, operation, quantity: 2, backendEndpoint: 'summarise' },
      async (hold) => {
        seen = { requestId: hold.requestId, reserved: hold.hold.reserved }
        expect(await balanceOf(org)).toEqual({ available: 44, held: 6 }) // reserved while fn runs
        await sleep(60)
        hold.setOutput({ words: 12 })
        return 'the summary'
      },
    )
    expect(result).toBe('the summary')
    expect(seen).toEqual({ requestId: charge.requestId, reserved: 6 })
    expect(charge).toMatchObject({ status: 'captured', charged: 6, balanceAfter: 44, replayed: false })
    const request = await requestOf(org, charge.requestId)
    expect(request).toMatchObject({ kind: 'hold', status: 'captured', charged: 6, success: true, backend_error: false, error_code: null })
    expect(request!.latency_ms as number).toBeGreaterThanOrEqual(55)
    expect(request!.latency_ms as number).toBeLessThan(5000)
    expect(await ledgerOfRequest(org, charge.requestId)).toEqual([['hold', -6, 6], ['capture', 0, -6]])

    // setQuantity: charge only what was used; an explicit request id is used as given.
    const requestId = `job-${randomId()}`
    const partial = await server.withCredits({ orgId: org, operation, quantity: 5, requestId }, (hold) => {
      expect(() => hold.setQuantity(6)).toThrow(InvalidInputError)
      hold.setQuantity(1)
      return 1
    })
    expect(partial.charge).toMatchObject({ requestId, charged: 3, reserved: 15, balanceAfter: 41 })
    expect(await expectBooksBalanced(org)).toEqual({ available: 41, held: 0 })
  })

  it('withCredits releases on a backend error: balance unchanged, backend_error recorded, error rethrown', async () => {
    const user = await newUser('unlucky')
    const org = user.personalOrgId
    const operation = await createPrice(4, 'csrv')
    await grantCredits(org, 20)
    const server = serverWith()
    const boom = Object.assign(new Error('model backend unavailable'), { code: 'ECONNRESET' })

    let requestId = ''
    const thrown = await server
      .withCredits({ orgId: org, userId: user.id, operation, quantity: 2 }, async (hold) => {
        requestId = hold.requestId
        await sleep(20)
        throw boom
      })
      .then(() => null, (error: unknown) => error)
    expect(thrown).toBe(boom) // the very same error object
    expect(await balanceOf(org)).toEqual({ available: 20, held: 0 })
    const request = await requestOf(org, requestId)
    expect(request).toMatchObject({ status: 'released', charged: 0, success: false, backend_error: true, error_code: 'ECONNRESET' })
    expect(request!.latency_ms as number).toBeGreaterThanOrEqual(15)
    expect(await ledgerOfRequest(org, requestId)).toEqual([['hold', -8, 8], ['release', 8, -8]])

    // A thrown non-Error is a backend failure too.
    await expect(server.withCredits({ orgId: org, operation }, () => Promise.reject('just a string'))).rejects.toBe('just a string')
    expect(await expectBooksBalanced(org)).toEqual({ available: 20, held: 0 })
  })

  it("withCredits captures on the user's fault (UserError or isUserError), then rethrows", async () => {
    const user = await newUser('careless')
    const org = user.personalOrgId
    const operation = await createPrice(4, 'csrv')
    await grantCredits(org, 20)

    let requestId = ''
    const userError = new UserError('prompt refused by policy', { code: 'content_policy' })
    await expect(
      serverWith().withCredits({ orgId: org, userId: user.id, operation }, (hold) => {
        requestId = hold.requestId
        throw userError
      }),
    ).rejects.toBe(userError)
    expect(await requestOf(org, requestId)).toMatchObject({ status: 'captured', charged: 4, success: false, backend_error: false, error_code: 'content_policy' })
    expect(await balanceOf(org)).toEqual({ available: 16, held: 0 })

    // The app's own error class, marked through isUserError.
    class BadRequest extends Error {}
    const server = serverWith({ isUserError: (error) => error instanceof BadRequest })
    const bad = new BadRequest('image too large')
    await expect(
      server.withCredits({ orgId: org, operation }, (hold) => {
        requestId = hold.requestId
        throw bad
      }),
    ).rejects.toBe(bad)
    expect(await requestOf(org, requestId)).toMatchObject({ status: 'captured', charged: 4, success: false, backend_error: false, error_code: 'Error' })
    // Still a backend error for anything else.
    await expect(server.withCredits({ orgId: org, operation }, () => Promise.reject(new TypeError('x')))).rejects.toBeInstanceOf(TypeError)
    expect(await expectBooksBalanced(org)).toEqual({ available: 12, held: 0 })
  })

  it('withCredits without credits: fn never runs, InsufficientCreditsError', async () => {
    const user = await newUser('broke')
    const operation = await createPrice(10, 'csrv')
    await grantCredits(user.personalOrgId, 9)
    let ran = false
    const error = await serverWith()
      .withCredits({ orgId: user.personalOrgId, operation }, () => {
        ran = true
      })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(InsufficientCreditsError)
    expect(error).toMatchObject({ required: 10, available: 9 })
    expect(ran).toBe(false)
    expect(await requestCountOf(user.personalOrgId)).toBe(0)
  })

  it('withCredits reports a failed settlement and still rethrows the callback error', async () => {
    const user = await newUser('slow')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'csrv')
    await grantCredits(org, 10)
    const settleErrors: Array<{ error: unknown; action: string }> = []
    const server = serverWith({ onSettleError: (error, info) => settleErrors.push({ error, action: info.action }) })

    const late = new UserError('bad input', { code: 'bad_input' })
    let requestId = ''
    await expect(
      server.withCredits({ orgId: org, operation, ttlSeconds: 1 }, async (hold) => {
        requestId = hold.requestId
        await sleep(1100) // outlives the hold: the capture is refused
        throw late
      }),
    ).rejects.toBe(late)
    expect(settleErrors).toHaveLength(1)
    expect(settleErrors[0]!.action).toBe('capture')
    expect(settleErrors[0]!.error).toBeInstanceOf(HoldStateError)
    expect((settleErrors[0]!.error as HoldStateError).key).toBe('hold_expired')

    // On success a refused capture is the caller's to see (the work is done, nothing was charged).
    let successId = ''
    const work = async (hold: { requestId: string }) => {
      successId = hold.requestId
      await sleep(1100)
    }
    await expect(server.withCredits({ orgId: org, operation, ttlSeconds: 1 }, work)).rejects.toMatchObject({ key: 'hold_expired' })
    expect(settleErrors).toHaveLength(1)
    // Expired holds are never charged: the cron sweep (or a release, as here) gives them back.
    for (const id of [requestId, successId]) {
      const released = await server.release({ orgId: org, requestId: id, backendError: false })
      expect({ charged: released.charged, settled: ['released', 'expired'].includes(released.status) }).toEqual({ charged: 0, settled: true })
    }
    expect(await expectBooksBalanced(org)).toEqual({ available: 10, held: 0 })
  })

  it('withCredits never re-runs a settled request id: 5 sequential calls, fn runs once, charged once', async () => {
    const user = await newUser('replayer')
    const org = user.personalOrgId
    const operation = await createPrice(3, 'csrv')
    await grantCredits(org, 50)
    const server = serverWith()
    const requestId = `job-${randomId()}`
    let runs = 0
    const work = async () => {
      runs += 1
      return `result ${runs}`
    }

    const first = await server.withCredits({ orgId: org, userId: user.id, operation, requestId }, work)
    expect(first).toMatchObject({ result: 'result 1', charge: { status: 'captured', charged: 3, replayed: false } })
    for (let i = 0; i < 4; i++) {
      const again = await server.withCredits({ orgId: org, userId: user.id, operation, requestId }, work).catch((e: unknown) => e)
      expect(again).toBeInstanceOf(RequestAlreadySettledError)
      expect(again).toBeInstanceOf(ConflictError)
      const settled = again as RequestAlreadySettledError
      expect({ key: settled.key, code: settled.code, status: settled.status }).toEqual({ key: 'request_already_settled', code: 'PT409', status: 409 })
      // The settled outcome: what the first run was charged, marked replayed.
      expect(settled.charge).toMatchObject({ requestId, status: 'captured', charged: 3, balanceAfter: 47, replayed: true })
    }
    expect(runs).toBe(1)
    expect(await ledgerOfRequest(org, requestId)).toEqual([['hold', -3, 3], ['capture', 0, -3]])

    // A released request id (our failure, nothing charged) is settled too: fn does not run again.
    const failedId = `job-${randomId()}`
    let failedRuns = 0
    const failing = () => {
      failedRuns += 1
      throw new Error('backend down')
    }
    await expect(server.withCredits({ orgId: org, operation, requestId: failedId }, failing)).rejects.toThrow('backend down')
    const retried = await server.withCredits({ orgId: org, operation, requestId: failedId }, failing).catch((e: unknown) => e)
    expect(retried).toBeInstanceOf(RequestAlreadySettledError)
    expect((retried as RequestAlreadySettledError).charge).toMatchObject({ status: 'released', charged: 0, replayed: true })
    expect(failedRuns).toBe(1)
    expect(await expectBooksBalanced(org)).toEqual({ available: 47, held: 0 })
  })

  it('withCredits runs fn once for 10 concurrent calls with one request id, charged once', async () => {
    const user = await newUser('stampede')
    const org = user.personalOrgId
    const operation = await createPrice(4, 'csrv')
    await grantCredits(org, 40)
    const server = serverWith()
    const requestId = `job-${randomId()}`
    let runs = 0
    let refused = 0
    // fn keeps its hold open until the 9 other calls have been refused (5 s at most), so each
    // of them meets the hold in flight.
    const work = async () => {
      runs += 1
      for (const started = Date.now(); refused < 9 && Date.now() - started < 5000; ) await sleep(10)
      return 'done'
    }
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        server.withCredits({ orgId: org, operation, requestId }, work).catch((error: unknown) => {
          refused += 1
          throw error
        }),
      ),
    )
    expect(runs).toBe(1)
    const fulfilled = outcomes.filter((o) => o.status === 'fulfilled')
    expect(fulfilled).toHaveLength(1)
    const refusals = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []))
    expect(refusals).toHaveLength(9)
    expect(refusals.every((r) => r instanceof RequestInProgressError)).toBe(true)
    const inProgress = refusals[0] as RequestInProgressError
    expect({ key: inProgress.key, code: inProgress.code, status: inProgress.status }).toEqual({ key: 'request_in_progress', code: 'PT409', status: 409 })
    // Once settled, the same id is settled for everyone.
    const late = await server.withCredits({ orgId: org, operation, requestId }, work).catch((e: unknown) => e)
    expect(late).toBeInstanceOf(RequestAlreadySettledError)
    expect(runs).toBe(1)
    expect(await expectBooksBalanced(org)).toEqual({ available: 36, held: 0 })
    expect(await ledgerOfRequest(org, requestId)).toEqual([['hold', -4, 4], ['capture', 0, -4]])
  })

  it('withCredits still runs its own hold when the reserve answer was lost and retried', async () => {
    const user = await newUser('lossy')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'csrv')
    await grantCredits(org, 10)
    const net = faultyFetch('/rpc/reserve_credits', ['drop-after'])
    const server = createTollgateServer(clientWithFetch(env.SUPABASE_SERVICE_ROLE_KEY, net.fetch, env.SUPABASE_SERVICE_ROLE_KEY), fastRetries)
    let runs = 0
    const { result, charge } = await server.withCredits({ orgId: org, operation }, () => ++runs)
    expect(net.sent).toHaveLength(2) // the reserve ran, its answer was lost, the retry replayed it
    expect({ result, runs, status: charge.status, charged: charge.charged }).toEqual({ result: 1, runs: 1, status: 'captured', charged: 2 })
    expect(await expectBooksBalanced(org)).toEqual({ available: 8, held: 0 })
  })

  it('maps request_in_progress and request_already_settled (PT409) to their classes', () => {
    const inProgress = toTollgateError({ code: 'PT409', message: 'request_in_progress', details: '{"request_id":"r-1"}' }, 409)
    expect(inProgress).toBeInstanceOf(RequestInProgressError)
    const settled = toTollgateError(
      { code: 'PT409', message: 'request_already_settled', details: JSON.stringify({ request_id: 'r-1', org_id: 'o', operation: 'x', quantity: 1, status: 'captured', charged: 5, replayed: true }) },
      409,
    )
    expect(settled).toBeInstanceOf(RequestAlreadySettledError)
    expect((settled as RequestAlreadySettledError).charge).toMatchObject({ requestId: 'r-1', status: 'captured', charged: 5, replayed: true })
  })

  it('leaves the books balanced', async () => {
    await expectReconciled(orgs)
  })
})
