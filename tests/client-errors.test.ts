import { describe, expect, it } from 'vitest'
import { createClient } from '@supabase/supabase-js'
import {
  ConflictError,
  createTollgateClient,
  ForbiddenError,
  HoldStateError,
  IdempotencyConflictError,
  InsufficientCreditsError,
  InvalidInputError,
  NetworkError,
  NotAMemberError,
  NotFoundError,
  TollgateError,
  toTollgateError,
  UnknownOperationError,
  UnknownOrgError,
  UnknownRequestError,
} from '@tollgate/client'
import { createTollgateServer } from '@tollgate/client/server'
import { anonClient, serviceClient, supabaseOptions } from './support/clients.ts'
import { env } from './support/env.ts'
import { balanceOf, createPrice, expectReconciled, grantCredits, randomId, requestCountOf, sleep, userTracker } from './support/credits.ts'
import { fastRetries } from './client-helpers.ts'

/** Runs `call`, expects it to throw, returns the error. */
async function failureOf(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call()
  } catch (error) {
    return error
  }
  throw new Error('expected the call to fail')
}

/** The error as plain data, for one readable assertion per case. */
const shape = (error: unknown) => {
  const e = error as TollgateError
  return { class: e.constructor.name, key: e.key, code: e.code, status: e.status, retryable: e.retryable, isTollgate: e instanceof TollgateError }
}

// Every error class, from real answers of the stack (PostgREST + Postgres), mapped by SQLSTATE
// and key only.
describe('@tollgate/client error mapping', () => {
  const { orgs, newUser } = userTracker()
  const server = createTollgateServer(serviceClient(), fastRetries)

  it('insufficient credits: InsufficientCreditsError with required and available, nothing written', async () => {
    const user = await newUser('poor')
    const operation = await createPrice(3, 'cerr')
    await grantCredits(user.personalOrgId, 5)
    const tollgate = createTollgateClient(user.client, fastRetries)

    const error = await failureOf(() => tollgate.consume({ operation, quantity: 2 }))
    expect(error).toBeInstanceOf(InsufficientCreditsError)
    expect(shape(error)).toEqual({ class: 'InsufficientCreditsError', key: 'insufficient_credits', code: 'PT402', status: 402, retryable: false, isTollgate: true })
    const insufficient = error as InsufficientCreditsError
    expect({ required: insufficient.required, available: insufficient.available, overage: insufficient.overage, overageLimit: insufficient.overageLimit }).toEqual({
      required: 6,
      available: 5,
      overage: 0,
      overageLimit: 0,
    })
    expect(insufficient.details).toMatchObject({ operation, quantity: 2 })
    expect(insufficient.message).toBe('insufficient_credits')
    expect(typeof insufficient.hint).toBe('string')
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 5, held: 0 })
    expect(await requestCountOf(user.personalOrgId)).toBe(0)
  })

  it('a request id reused with other parameters: IdempotencyConflictError', async () => {
    const user = await newUser('conflict')
    const operation = await createPrice(1, 'cerr')
    await grantCredits(user.personalOrgId, 10)
    const tollgate = createTollgateClient(user.client, fastRetries)
    const first = await tollgate.consume({ operation, quantity: 1 })

    const error = await failureOf(() => tollgate.consume({ operation, quantity: 2, requestId: first.requestId }))
    expect(error).toBeInstanceOf(IdempotencyConflictError)
    expect(error).toBeInstanceOf(ConflictError)
    expect(shape(error)).toMatchObject({ key: 'idempotency_conflict', code: 'PT409', status: 409 })
    expect((error as TollgateError).details).toMatchObject({ request_id: first.requestId, quantity: 1 })

    // Payment references too: the same reference with another amount.
    const ref = `pi_${randomId()}`
    await server.grant({ orgId: user.personalOrgId, amount: 10, source: 'purchase', externalRef: ref })
    expect(shape(await failureOf(() => server.grant({ orgId: user.personalOrgId, amount: 11, source: 'purchase', externalRef: ref })))).toMatchObject({
      class: 'IdempotencyConflictError',
      key: 'idempotency_conflict',
    })
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 19, held: 0 })
  })

  it("another org: NotAMemberError (a ForbiddenError), from RPCs and from the client's table reads", async () => {
    const alice = await newUser('alice')
    const bob = await newUser('bob')
    const operation = await createPrice(1, 'cerr')
    await grantCredits(bob.personalOrgId, 10)
    const tollgate = createTollgateClient(alice.client, fastRetries)
    const notMember = { class: 'NotAMemberError', key: 'not_a_member', code: '42501', status: 403, retryable: false, isTollgate: true }

    for (const call of [
      () => tollgate.balance(bob.personalOrgId),
      () => tollgate.consume({ operation, orgId: bob.personalOrgId }),
      () => tollgate.usageStats({ orgId: bob.personalOrgId }),
      () => tollgate.ledger({ orgId: bob.personalOrgId }),
      () => tollgate.grants({ orgId: bob.personalOrgId }),
    ]) {
      const error = await failureOf(call)
      expect(error).toBeInstanceOf(ForbiddenError)
      expect(shape(error)).toEqual(notMember)
      expect((error as TollgateError).details).toEqual({ org_id: bob.personalOrgId })
    }
    // Server half: reserving for a user who is not a member of the org.
    expect(shape(await failureOf(() => server.reserve({ orgId: bob.personalOrgId, userId: alice.id, operation })))).toEqual(notMember)
    expect(await balanceOf(bob.personalOrgId)).toEqual({ available: 10, held: 0 })
  })

  it('a role that may not call an RPC: ForbiddenError (403 for users, 401 for anon)', async () => {
    const user = await newUser('sneaky')
    const asUser = createTollgateServer(user.client, fastRetries)
    const error = await failureOf(() => asUser.grant({ orgId: user.personalOrgId, amount: 1000, source: 'purchase', externalRef: 'free' }))
    expect(error).toBeInstanceOf(ForbiddenError)
    expect(error).not.toBeInstanceOf(NotAMemberError)
    expect(shape(error)).toEqual({ class: 'ForbiddenError', key: 'forbidden', code: '42501', status: 403, retryable: false, isTollgate: true })

    const anon = createTollgateClient(anonClient(), fastRetries)
    expect(shape(await failureOf(() => anon.balance()))).toMatchObject({ class: 'ForbiddenError', key: 'forbidden', code: '42501', status: 401 })
    expect(await balanceOf(user.personalOrgId)).toEqual({ available: 0, held: 0 })
  })

  it('unknown operation, request, org, grant and user: the NotFoundError family', async () => {
    const user = await newUser('lost')
    const org = user.personalOrgId
    await grantCredits(org, 10)
    const tollgate = createTollgateClient(user.client, fastRetries)
    const missing = `nope_${randomId()}`

    const operation = await failureOf(() => tollgate.consume({ operation: missing }))
    expect(operation).toBeInstanceOf(UnknownOperationError)
    expect(shape(operation)).toMatchObject({ key: 'unknown_operation', code: 'PT404', status: 404 })
    expect((operation as TollgateError).details).toEqual({ operation: missing })

    const request = await failureOf(() => server.capture({ orgId: org, requestId: missing }))
    expect(request).toBeInstanceOf(UnknownRequestError)
    expect(shape(request)).toMatchObject({ key: 'unknown_request', code: 'PT404', status: 404 })

    const unknownOrg = await failureOf(() => server.grant({ orgId: crypto.randomUUID(), amount: 5, source: 'purchase', externalRef: missing }))
    expect(unknownOrg).toBeInstanceOf(UnknownOrgError)
    expect(shape(unknownOrg)).toMatchObject({ key: 'unknown_org', code: 'PT404', status: 404 })

    for (const [call, key] of [
      [() => server.activateGrant({ orgId: org, source: 'purchase', externalRef: missing }), 'unknown_grant'],
      [() => server.grantOnboarding({ userId: crypto.randomUUID(), amount: 5 }), 'unknown_user'],
    ] as const) {
      const error = await failureOf(call)
      expect(error).toBeInstanceOf(NotFoundError)
      expect(shape(error)).toEqual({ class: 'NotFoundError', key, code: 'PT404', status: 404, retryable: false, isTollgate: true })
    }
    expect(await balanceOf(org)).toEqual({ available: 10, held: 0 })
  })

  it('invalid input: InvalidInputError for every 22023 key and for values PostgreSQL refuses by type', async () => {
    const user = await newUser('sloppy')
    const org = user.personalOrgId
    const operation = await createPrice(1, 'cerr')
    await grantCredits(org, 10)
    const tollgate = createTollgateClient(user.client, fastRetries)

    const cases: Array<[string, () => Promise<unknown>, string, string]> = [
      ['quantity 0', () => tollgate.consume({ operation, quantity: 0 }), 'invalid_quantity', '22023'],
      ['empty request id', () => tollgate.consume({ operation, requestId: '' }), 'invalid_request_id', '22023'],
      ['metadata not an object', () => tollgate.consume({ operation, metadata: [1, 2] as never }), 'invalid_metadata', '22023'],
      ['days 0', () => tollgate.usageStats({ days: 0 }), 'invalid_days', '22023'],
      ['quantity 2^31', () => tollgate.consume({ operation, quantity: 2 ** 31 }), 'numeric_value_out_of_range', '22003'],
      ['quantity 1.5', () => tollgate.consume({ operation, quantity: 1.5 }), 'invalid_text_representation', '22P02'],
      ['malformed org id', () => tollgate.balance('not-a-uuid'), 'invalid_text_representation', '22P02'],
      ['text with NUL', () => tollgate.consume({ operation: 'a\u0000b' }), 'untranslatable_character', '22P05'],
      ['ledger limit 0 (client side)', () => tollgate.ledger({ limit: 0 }), 'invalid_limit', '22023'],
      ['grant amount 0', () => server.grant({ orgId: org, amount: 0, source: 'purchase' }), 'invalid_amount', '22023'],
      ['grant source refund', () => server.grant({ orgId: org, amount: 1, source: 'refund' }), 'invalid_source', '22023'],
      ['ttl 0', () => server.reserve({ orgId: org, operation, ttlSeconds: 0 }), 'invalid_ttl', '22023'],
      ['empty refund reason', () => server.refund({ orgId: org, requestId: 'x', reason: ' ' }), 'invalid_reason', '22023'],
      ['grant operations empty', () => server.grant({ orgId: org, amount: 1, source: 'promotion', operations: [] }), 'invalid_operations', '22023'],
      ['overage limit -1', () => server.setOverageLimit({ orgId: org, limit: -1 }), 'invalid_limit', '22023'],
    ]
    for (const [label, call, key, code] of cases) {
      const error = await failureOf(call)
      expect(error).toBeInstanceOf(InvalidInputError)
      expect({ label, ...shape(error) }).toEqual({ label, class: 'InvalidInputError', key, code, status: 400, retryable: false, isTollgate: true })
    }
    expect(await balanceOf(org)).toEqual({ available: 10, held: 0 })
    expect(await requestCountOf(org)).toBe(0)
  })

  it('holds and grants in the wrong state: HoldStateError for each key', async () => {
    const user = await newUser('holder')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'cerr')
    await grantCredits(org, 20)
    const tollgate = createTollgateClient(user.client, fastRetries)

    const released = await server.reserve({ orgId: org, userId: user.id, operation })
    await server.release({ orgId: org, requestId: released.requestId })
    const consumed = await tollgate.consume({ operation })
    const short = await server.reserve({ orgId: org, userId: user.id, operation, ttlSeconds: 1 })
    const ref = `pi_${randomId()}`
    await server.grant({ orgId: org, amount: 5, source: 'purchase', externalRef: ref })
    await sleep(1100) // `short` outlives its TTL

    const cases: Array<[() => Promise<unknown>, string]> = [
      [() => server.capture({ orgId: org, requestId: released.requestId }), 'hold_not_active'],
      [() => server.capture({ orgId: org, requestId: short.requestId }), 'hold_expired'],
      [() => server.release({ orgId: org, requestId: consumed.requestId }), 'not_a_hold'],
      [() => server.refund({ orgId: org, requestId: released.requestId, reason: 'test' }), 'not_refundable'],
      [() => server.voidGrant({ orgId: org, source: 'purchase', externalRef: ref }), 'grant_not_pending'],
    ]
    for (const [call, key] of cases) {
      const error = await failureOf(call)
      expect(error).toBeInstanceOf(HoldStateError)
      expect(error).toBeInstanceOf(ConflictError)
      expect(shape(error)).toEqual({ class: 'HoldStateError', key, code: 'PT409', status: 409, retryable: false, isTollgate: true })
    }
    // The expired hold is still held until the cron job (or a release) gives it back; release it.
    await server.release({ orgId: org, requestId: short.requestId, backendError: false })
    expect(await balanceOf(org)).toEqual({ available: 23, held: 0 })
  })

  it('no answer at all: NetworkError (status 0) after the retries', async () => {
    const attempts: number[] = []
    const offline = createClient('http://127.0.0.1:9', env.SUPABASE_ANON_KEY, supabaseOptions())
    const tollgate = createTollgateClient(offline, { ...fastRetries, retries: 2, onRetry: (event) => attempts.push(event.attempt) })
    const error = await failureOf(() => tollgate.balance())
    expect(error).toBeInstanceOf(NetworkError)
    expect(shape(error)).toEqual({ class: 'NetworkError', key: 'network_error', code: '', status: 0, retryable: true, isTollgate: true })
    expect(attempts).toEqual([1, 2])
  })

  it('toTollgateError: branches on code and key, never on prose', () => {
    const cases: Array<[Parameters<typeof toTollgateError>, string, string]> = [
      [[{ message: 'upstream on :3000 unavailable' }, 502], 'NetworkError', 'network_error'],
      [[{ code: 'PGRST002', message: 'Could not query the database for the schema cache. Retrying.' }, 503], 'NetworkError', 'network_error'],
      [[{ message: '<html>gateway timeout</html>' }, 504], 'NetworkError', 'network_error'],
      [[{ message: 'TypeError: fetch failed', code: '' }, 0], 'NetworkError', 'network_error'],
      [[{ code: 'XX000', message: 'balance_out_of_sync', details: '{"org_id": "x"}' }, 500], 'TollgateError', 'balance_out_of_sync'],
      [[{ code: 'PGRST202', message: 'Could not find the function public.consume_credits(p_x) in the schema cache' }, 404], 'TollgateError', 'unknown_rpc'],
      [[{ code: 'PGRST301', message: 'JWT expired' }, 401], 'ForbiddenError', 'invalid_jwt'],
      [[{ code: 'PT404', message: 'unknown_workflow' }, 404], 'NotFoundError', 'unknown_workflow'],
      [[{ code: 'PT409', message: 'something_new' }, 409], 'ConflictError', 'something_new'],
      [[{ code: 'PT402', message: 'insufficient_credits', details: 'not json' }, 402], 'InsufficientCreditsError', 'insufficient_credits'],
      // Prose that happens to look like a key does not change the class: the code decides.
      [[{ code: '23505', message: 'duplicate key value violates unique constraint' }, 409], 'TollgateError', 'unexpected_error'],
      [[{ code: '22023', message: 'insufficient_credits' }, 400], 'InvalidInputError', 'insufficient_credits'],
    ]
    for (const [args, className, key] of cases) {
      const error = toTollgateError(...args)
      expect({ args, class: error.constructor.name, key: error.key }).toEqual({ args, class: className, key })
    }
    const xx = toTollgateError({ code: 'XX000', message: 'balance_out_of_sync', details: '{"org_id": "x"}' }, 500)
    expect({ retryable: xx.retryable, details: xx.details }).toEqual({ retryable: false, details: { org_id: 'x' } })
    const garbled = toTollgateError({ code: 'PT402', message: 'insufficient_credits', details: 'not json' }, 402) as InsufficientCreditsError
    expect({ details: garbled.details, raw: garbled.rawDetails, required: garbled.required }).toEqual({ details: {}, raw: 'not json', required: Number.NaN })
  })

  it('InsufficientCreditsError carries the overage figures of its details (0 when absent)', () => {
    const details = JSON.stringify({ required: 12, available: -4, operation: 'x', quantity: 6, overage: 4, overage_limit: 10 })
    const error = toTollgateError({ code: 'PT402', message: 'insufficient_credits', details }, 402) as InsufficientCreditsError
    expect(error).toBeInstanceOf(InsufficientCreditsError)
    expect({ required: error.required, available: error.available, overage: error.overage, overageLimit: error.overageLimit }).toEqual({
      required: 12,
      available: -4,
      overage: 4,
      overageLimit: 10,
    })
    const older = toTollgateError({ code: 'PT402', message: 'insufficient_credits', details: '{"required": 3, "available": 1}' }, 402) as InsufficientCreditsError
    expect({ required: older.required, available: older.available, overage: older.overage, overageLimit: older.overageLimit }).toEqual({
      required: 3,
      available: 1,
      overage: 0,
      overageLimit: 0,
    })
  })

  it('leaves the books balanced', async () => {
    await expectReconciled(orgs)
  })
})
