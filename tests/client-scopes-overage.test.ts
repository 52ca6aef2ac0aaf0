import { describe, expect, it } from 'vitest'
import {
  createTollgateClient,
  ForbiddenError,
  IdempotencyConflictError,
  InsufficientCreditsError,
  InvalidInputError,
  TollgateError,
  UnknownOperationError,
  UnknownOrgError,
} from '@tollgate/client'
import { createTollgateServer } from '@tollgate/client/server'
import { serviceClient } from './support/clients.ts'
import { primaryDb } from './support/db.ts'
import { balanceOf, createPrice, expectReconciled, randomId, userTracker } from './support/credits.ts'
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

const shape = (error: unknown) => {
  const e = error as TollgateError
  return { class: e.constructor.name, key: e.key, code: e.code, status: e.status }
}

/** The balance row's debt and limit, and the ledger's sum of overage_delta, read directly. */
async function overageOf(orgId: string): Promise<{ overage: number; overageLimit: number; ledgerOverage: number }> {
  const { rows } = await primaryDb.query<{ overage: number; overage_limit: number; ledger_overage: number }>(
    `select b.overage::int as overage, b.overage_limit::int as overage_limit,
            (select coalesce(sum(l.overage_delta), 0)::int from public.credit_ledger l where l.org_id = b.org_id) as ledger_overage
     from public.credit_balances b where b.org_id = $1`,
    [orgId],
  )
  return { overage: rows[0]!.overage, overageLimit: rows[0]!.overage_limit, ledgerOverage: rows[0]!.ledger_overage }
}

// Scoped credits and overage through @tollgate/client, against the real stack: what the typed
// results and errors carry, in camelCase.
describe('@tollgate/client scoped credits and overage', () => {
  const { orgs, newUser } = userTracker()
  const server = createTollgateServer(serviceClient(), fastRetries)

  it('grant({ operations }): normalised, shown per scope in balance(), spent only on those operations', async () => {
    const user = await newUser('scoped')
    const org = user.personalOrgId
    const images = await createPrice(2, 'cscope')
    const text = await createPrice(1, 'cscope')
    const tollgate = createTollgateClient(user.client, fastRetries)
    const ref = `promo_${randomId()}`

    // Unsorted, with a duplicate: stored sorted and de-duplicated.
    const promo = await server.grant({ orgId: org, amount: 10, source: 'promotion', externalRef: ref, operations: [text, images, text] })
    expect(promo).toMatchObject({ amount: 10, remaining: 10, status: 'active', operations: [images, text].sort(), balanceAfter: 10, replayed: false })
    expect(await server.grant({ orgId: org, amount: 10, source: 'promotion', externalRef: ref, operations: [images, text] })).toMatchObject({
      grantId: promo.grantId,
      replayed: true,
    })
    const conflict = await failureOf(() => server.grant({ orgId: org, amount: 10, source: 'promotion', externalRef: ref, operations: [images] }))
    expect(conflict).toBeInstanceOf(IdempotencyConflictError)

    const onlyImages = await server.grant({ orgId: org, amount: 4, source: 'promotion', externalRef: `promo_${randomId()}`, operations: [images] })
    const any = await server.grant({ orgId: org, amount: 3, source: 'purchase', externalRef: `pi_${randomId()}` })
    expect(any.operations).toBeNull()

    const balance = await tollgate.balance()
    expect(balance).toMatchObject({ orgId: org, available: 17, held: 0, overage: 0, overageLimit: 0 })
    // The unscoped group first, then by operations as PostgreSQL orders text[] (a prefix first).
    const scoped = [
      { operations: [images], available: 4 },
      { operations: [images, text].sort(), available: 10 },
    ].sort((x, y) => (x.operations[0] === y.operations[0] ? x.operations.length - y.operations.length : x.operations[0]! < y.operations[0]! ? -1 : 1))
    expect(balance.scopes).toEqual([{ operations: null, available: 3 }, ...scoped])

    // `text` may use the unscoped grant and the promotion (13), not the images-only grant.
    const refused = await failureOf(() => tollgate.consume({ operation: text, quantity: 14 }))
    expect(refused).toBeInstanceOf(InsufficientCreditsError)
    const insufficient = refused as InsufficientCreditsError
    expect({ required: insufficient.required, available: insufficient.available, overage: insufficient.overage, overageLimit: insufficient.overageLimit }).toEqual({
      required: 14,
      available: 13,
      overage: 0,
      overageLimit: 0,
    })
    expect(insufficient.details).toMatchObject({ operation: text, quantity: 14 })

    const charge = await tollgate.consume({ operation: text, quantity: 13 })
    expect(charge).toMatchObject({ charged: 13, balanceBefore: 17, balanceAfter: 4, overage: 0, replayed: false })
    const grants = await tollgate.grants({ status: 'active' })
    expect(Object.fromEntries(grants.map((g) => [g.id, { remaining: g.remaining, operations: g.operations, overageRepaid: g.overageRepaid }]))).toEqual({
      [promo.grantId]: { remaining: 0, operations: [images, text].sort(), overageRepaid: 0 },
      [onlyImages.grantId]: { remaining: 4, operations: [images], overageRepaid: 0 },
      [any.grantId]: { remaining: 0, operations: null, overageRepaid: 0 },
    })
    expect((await tollgate.balance()).scopes.filter((s) => s.available > 0)).toEqual([{ operations: [images], available: 4 }])
    expect(await balanceOf(org)).toEqual({ available: 4, held: 0 })
  })

  it('grant({ operations }) refused: InvalidInputError invalid_operations, UnknownOperationError with the unknown names', async () => {
    const user = await newUser('scoped-bad')
    const org = user.personalOrgId
    const priced = await createPrice(1, 'cscope')
    const missing = `cscope_missing_${randomId()}`
    const grant = (operations: string[]) => () => server.grant({ orgId: org, amount: 5, source: 'promotion', externalRef: `promo_${randomId()}`, operations })

    for (const operations of [[], ['Not An Operation'], Array.from({ length: 101 }, (_, i) => `op_${i}`)]) {
      const error = await failureOf(grant(operations))
      expect(error).toBeInstanceOf(InvalidInputError)
      expect({ n: operations.length, ...shape(error) }).toEqual({ n: operations.length, class: 'InvalidInputError', key: 'invalid_operations', code: '22023', status: 400 })
    }
    const unknown = await failureOf(grant([priced, missing]))
    expect(unknown).toBeInstanceOf(UnknownOperationError)
    expect((unknown as TollgateError).details).toMatchObject({ operations: [missing] })
    expect(await balanceOf(org)).toEqual({ available: 0, held: 0 })
  })

  it('setOverageLimit: charges into overage up to the limit, the debt in every answer, repaid by the next unscoped grant', async () => {
    const user = await newUser('overage')
    const org = user.personalOrgId
    const operation = await createPrice(2, 'cover')
    const other = await createPrice(1, 'cover')
    const tollgate = createTollgateClient(user.client, fastRetries)
    await server.grant({ orgId: org, amount: 6, source: 'promotion', externalRef: `promo_${randomId()}`, operations: [other] })

    const none = await failureOf(() => tollgate.consume({ operation }))
    expect(none).toBeInstanceOf(InsufficientCreditsError)
    expect({ available: (none as InsufficientCreditsError).available, overageLimit: (none as InsufficientCreditsError).overageLimit }).toEqual({ available: 0, overageLimit: 0 })

    expect(await server.setOverageLimit({ orgId: org, limit: 5 })).toEqual({ orgId: org, overageLimit: 5, overage: 0, available: 6, hasUsageCredits: true })
    // Idempotent.
    expect(await server.setOverageLimit({ orgId: org, limit: 5 })).toEqual({ orgId: org, overageLimit: 5, overage: 0, available: 6, hasUsageCredits: true })

    const into = await tollgate.consume({ operation, quantity: 2 })
    expect(into).toMatchObject({ charged: 4, overage: 4, balanceBefore: 6, balanceAfter: 2 })
    expect(await tollgate.consume({ operation, quantity: 2, requestId: into.requestId })).toMatchObject({ replayed: true, charged: 4, overage: 4 })
    expect(await tollgate.balance()).toMatchObject({ available: 2, overage: 4, overageLimit: 5, scopes: [{ operations: [other], available: 6 }] })

    // For `operation`: no credits, a debt of 4, a limit of 5: one more credit at most.
    const beyond = await failureOf(() => tollgate.consume({ operation }))
    expect(beyond).toBeInstanceOf(InsufficientCreditsError)
    const e = beyond as InsufficientCreditsError
    expect({ required: e.required, available: e.available, overage: e.overage, overageLimit: e.overageLimit }).toEqual({ required: 2, available: -4, overage: 4, overageLimit: 5 })

    // A limit below the debt: the debt stays; `other` still has credits, so the org can spend.
    expect(await server.setOverageLimit({ orgId: org, limit: 2 })).toEqual({ orgId: org, overageLimit: 2, overage: 4, available: 2, hasUsageCredits: true })

    // A hold into overage, released: the debt goes back first.
    await server.setOverageLimit({ orgId: org, limit: 10 })
    const hold = await server.reserve({ orgId: org, userId: user.id, operation, quantity: 2 })
    expect(hold).toMatchObject({ status: 'held', reserved: 4, overage: 4, balanceAfter: -2 })
    expect(await server.release({ orgId: org, requestId: hold.requestId })).toMatchObject({ status: 'released', balanceAfter: 2 })
    expect(await overageOf(org)).toEqual({ overage: 4, overageLimit: 10, ledgerOverage: 4 })

    // The next unscoped grant pays the debt first: one ledger entry for the whole amount.
    const topUp = await server.grant({ orgId: org, amount: 10, source: 'purchase', externalRef: `pi_${randomId()}` })
    expect(topUp).toMatchObject({ amount: 10, remaining: 6, operations: null, balanceAfter: 12 })
    expect(await tollgate.balance()).toMatchObject({ available: 12, overage: 0, overageLimit: 10 })
    const [entry] = (await tollgate.ledger({ limit: 1 })).entries
    expect(entry).toMatchObject({ kind: 'grant', amount: 10, overageDelta: -4, overageAfter: 0, balanceAfter: 12, grantId: topUp.grantId })
    expect((await tollgate.grants()).find((g) => g.id === topUp.grantId)).toMatchObject({ remaining: 6, overageRepaid: 4 })
    expect(await overageOf(org)).toEqual({ overage: 0, overageLimit: 10, ledgerOverage: 0 })
    expect(await balanceOf(org)).toEqual({ available: 12, held: 0 })
  })

  it('setOverageLimit refused: invalid_limit, unknown_org, and not for users', async () => {
    const user = await newUser('overage-bad')
    const org = user.personalOrgId
    for (const limit of [-1, 1_000_000_000_001]) {
      const error = await failureOf(() => server.setOverageLimit({ orgId: org, limit }))
      expect({ limit, ...shape(error) }).toEqual({ limit, class: 'InvalidInputError', key: 'invalid_limit', code: '22023', status: 400 })
    }
    const unknown = await failureOf(() => server.setOverageLimit({ orgId: crypto.randomUUID(), limit: 5 }))
    expect(unknown).toBeInstanceOf(UnknownOrgError)
    // The server half with a user's session: the RPC is the service role's only.
    const asUser = createTollgateServer(user.client, fastRetries)
    const forbidden = await failureOf(() => asUser.setOverageLimit({ orgId: org, limit: 1000 }))
    expect(forbidden).toBeInstanceOf(ForbiddenError)
    expect(shape(forbidden)).toEqual({ class: 'ForbiddenError', key: 'forbidden', code: '42501', status: 403 })
    expect(await overageOf(org)).toEqual({ overage: 0, overageLimit: 0, ledgerOverage: 0 })
  })

  it('leaves the books balanced', async () => {
    await expectReconciled(orgs)
  })
})
