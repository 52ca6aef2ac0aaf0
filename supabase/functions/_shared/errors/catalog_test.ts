import { fromRpcError } from '../pg-errors.ts'
import { assertEquals } from '../testing.ts'
import { catalogEntry, errorCatalog } from './catalog.ts'

const entries = Object.entries(errorCatalog)

Deno.test('the catalog is loaded: every key has a SQLSTATE and an HTTP status', () => {
  assertEquals(entries.length > 60, true, 'number of keys')
  assertEquals(catalogEntry('insufficient_credits'), errorCatalog.insufficient_credits, 'a key')
  assertEquals(catalogEntry('constructor'), undefined, 'a name the object inherits is no key')
  for (const [key, entry] of entries) {
    assertEquals([/^[a-z][a-z0-9_]*$/.test(key), /^[0-9A-Z]{5}$/.test(entry.sqlstate), Number.isInteger(entry.http_status)], [true, true, true], key)
  }
})

// What a function answers for each catalog key raised with its SQLSTATE: the catalog's status
// and the key, with the details; 5xx keys (broken invariants, internal errors) are not passed on
// (the entry answers 500 internal_error).
Deno.test('every catalog key maps to the catalog\'s HTTP status, or to a plain 500 for internal errors', () => {
  for (const [key, entry] of entries) {
    const mapped = fromRpcError({ code: entry.sqlstate, message: key, detail: '{"n": 1}' })
    if (entry.http_status >= 500) assertEquals(mapped, undefined, key)
    else assertEquals([mapped?.status, mapped?.key, mapped?.extra], [entry.http_status, key, { n: 1 }], key)
  }
})

Deno.test('the status rule holds for every key: PTxyz → xyz, 22xxx → 400, 42501 → 403 (signed-in callers only reach an RPC)', () => {
  for (const [key, { sqlstate, http_status }] of entries) {
    const rule = /^PT\d{3}$/.test(sqlstate) ? Number(sqlstate.slice(2)) : sqlstate === '42501' ? 403 : /^22/.test(sqlstate) ? 400 : /^(25|XX)/.test(sqlstate) ? 500 : undefined
    assertEquals(http_status, rule, key)
  }
})

Deno.test('a key outside the catalog, or a catalog key with another SQLSTATE, is not a documented error', () => {
  assertEquals(fromRpcError({ code: 'PT409', message: 'not_in_the_catalog' }), undefined)
  assertEquals(fromRpcError({ code: '22023', message: 'insufficient_credits' }), undefined)
  assertEquals(fromRpcError({ code: 'PT402', message: 'insufficient_credits' })?.status, 402)
})
