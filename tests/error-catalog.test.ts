import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ConflictError,
  errorClassesByKey,
  ForbiddenError,
  InvalidInputError,
  NetworkError,
  NotFoundError,
  TollgateError,
  toTollgateError,
} from '@tollgate/client'
import {
  catalogFile,
  catalogJson,
  committedReadmeTable,
  readCatalog,
  readmeFile,
  readmeTable,
  type CatalogEntry,
} from '../packages/client/scripts/gen-errors.ts'
import { anonClient } from './support/clients.ts'
import { createPrice, expectReconciled, grantCredits, userTracker } from './support/credits.ts'
import { env } from './support/env.ts'

// The error catalog (private.error_catalog) is the one list of error keys. The README's table
// and the edge functions' catalog.json are generated from it (`npm run gen:errors`); the client's
// error classes are held to it here; the functions' mapping in catalog_test.ts (Deno).
describe('error catalog', () => {
  let catalog: CatalogEntry[] = []
  beforeAll(async () => {
    catalog = await readCatalog(env.SUPABASE_DB_URL)
  })
  const byKey = () => new Map(catalog.map((e) => [e.key, e]))

  it('is filled by the migrations', () => {
    expect(catalog.length).toBeGreaterThan(60)
    expect(byKey().get('insufficient_credits')).toMatchObject({ sqlstate: 'PT402', http_status: 402 })
  })

  it('README: every catalog key is documented, and every documented key is in the catalog', () => {
    const committed = committedReadmeTable(fs.readFileSync(readmeFile, 'utf8'))
    const documented = [...committed.matchAll(/^\| `([a-z][a-z0-9_]*)` \|/gm)].map((m) => m[1]!)
    const keys = catalog.map((e) => e.key)
    expect({
      undocumented: keys.filter((k) => !documented.includes(k)),
      notInCatalog: documented.filter((k) => !keys.includes(k)),
    }).toEqual({ undocumented: [], notInCatalog: [] })
    if (committed !== readmeTable(catalog)) {
      expect.fail('the Errors table of README.md is stale (a SQLSTATE, status or meaning changed): run `npm run gen:errors` against a stack with the current migrations')
    }
  })

  it('supabase/functions/_shared/errors/catalog.json is the catalog as generated', () => {
    const committed = fs.readFileSync(catalogFile, 'utf8')
    if (committed !== catalogJson(catalog)) {
      expect.fail(`${path.relative(process.cwd(), catalogFile)} is stale: run \`npm run gen:errors\` against a stack with the current migrations`)
    }
  })

  // The class a key falls to when it has none of its own, by SQLSTATE (what the client README's
  // Errors table says). Internal errors (5xx) are plain TollgateErrors, never retried.
  const familyOf: Record<string, typeof TollgateError> = {
    PT402: TollgateError,
    PT404: NotFoundError,
    PT409: ConflictError,
    '42501': ForbiddenError,
    '22023': InvalidInputError,
  }

  it('@tollgate/client: every catalog key becomes an error of its class, with its key, SQLSTATE and status', () => {
    const wrong: string[] = []
    for (const { key, sqlstate, http_status } of catalog) {
      const error = toTollgateError({ code: sqlstate, message: key, details: '{"n": 1}', hint: null }, http_status)
      const expected = errorClassesByKey.get(key)?.errorClass ?? (http_status >= 500 ? TollgateError : familyOf[sqlstate])
      const shape = { class: error.constructor.name, key: error.key, code: error.code, status: error.status, retryable: error.retryable, details: error.details }
      const want = { class: expected?.name, key, code: sqlstate, status: http_status, retryable: false, details: { n: 1 } }
      if (JSON.stringify(shape) !== JSON.stringify(want)) wrong.push(`${key}: got ${JSON.stringify(shape)}, want ${JSON.stringify(want)}`)
      if (!(error instanceof TollgateError) || error instanceof NetworkError) wrong.push(`${key}: not a TollgateError, or taken for a network error`)
    }
    expect(wrong).toEqual([])
  })

  it('@tollgate/client: every key with a class of its own is a catalog key with the SQLSTATE the class expects', () => {
    const catalogKeys = byKey()
    const disagreements = [...errorClassesByKey].flatMap(([key, { code, errorClass }]) => {
      const entry = catalogKeys.get(key)
      if (!entry) return [`${key} (${errorClass.name}): not in the catalog`]
      return entry.sqlstate === code ? [] : [`${key} (${errorClass.name}): the client expects ${code}, the catalog says ${entry.sqlstate}`]
    })
    expect(disagreements).toEqual([])
  })

  it('@tollgate/client: a 42501 key is a ForbiddenError whether the answer is 403 (signed in) or 401 (anon)', () => {
    for (const { key } of catalog.filter((e) => e.sqlstate === '42501')) {
      expect(toTollgateError({ code: '42501', message: key }, 401)).toBeInstanceOf(ForbiddenError)
    }
  })
})

// The HTTP column holds through the real API: PostgREST's status for real errors equals the
// catalog's, and 42501 is 401 for anon (the one rule the README states).
describe('error catalog through PostgREST', () => {
  const { orgs, newUser } = userTracker()
  let catalog = new Map<string, CatalogEntry>()
  beforeAll(async () => {
    catalog = new Map((await readCatalog(env.SUPABASE_DB_URL)).map((e) => [e.key, e]))
  })
  afterAll(async () => {
    await expectReconciled(orgs)
  })

  it('answers each error with the catalog\'s SQLSTATE and HTTP status', async () => {
    const user = await newUser('errcat')
    const other = await newUser('errcat-other')
    const operation = await createPrice(5, 'errcat')
    await grantCredits(user.personalOrgId, 3)
    const calls: Array<[string, PromiseLike<{ error: { code: string; message: string } | null; status: number }>]> = [
      ['insufficient_credits', user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'errcat-1' })],
      ['unknown_operation', user.client.rpc('consume_credits', { p_operation: 'errcat_no_such_operation', p_request_id: 'errcat-2' })],
      ['invalid_quantity', user.client.rpc('consume_credits', { p_operation: operation, p_request_id: 'errcat-3', p_quantity: 0 })],
      ['not_a_member', user.client.rpc('get_credit_balance', { p_org_id: other.personalOrgId })],
      ['invalid_days', user.client.rpc('get_usage_stats', { p_days: 0 })],
    ]
    for (const [key, call] of calls) {
      const { error, status } = await call
      expect({ key, code: error?.code, message: error?.message, status }).toEqual({
        key, code: catalog.get(key)?.sqlstate, message: key, status: catalog.get(key)?.http_status,
      })
    }
  })

  it('42501 is 403 for a signed-in caller and 401 for anon', async () => {
    const user = await newUser('errcat-403')
    const signedIn = await user.client.rpc('reconcile_credits')
    expect({ code: signedIn.error?.code, status: signedIn.status }).toEqual({ code: '42501', status: catalog.get('forbidden')?.http_status })
    const anon = await anonClient().rpc('get_credit_balance', {})
    expect({ code: anon.error?.code, status: anon.status }).toEqual({ code: '42501', status: 401 })
  })
})
