// The error catalog (private.error_catalog), as `npm run gen:errors` wrote it next to this file:
// every key our RPCs raise, with its SQLSTATE and HTTP status. Read at startup from the bundle,
// never from the database; tests/error-catalog.test.ts fails when the file is stale.
import catalog from './catalog.json' with { type: 'json' }

export interface ErrorCatalogEntry {
  sqlstate: string
  /** What PostgREST answers a signed-in caller (42501: 403; anon gets 401, see the README's Errors). */
  http_status: number
  meaning: string
  /** 'database': raised by our functions; 'client': by @tollgate/client and the tool gateway. */
  raised_by: 'database' | 'client'
}

export const errorCatalog: Readonly<Record<string, ErrorCatalogEntry>> = catalog.errors as Record<string, ErrorCatalogEntry>

/** The catalog's entry for `key`, if it has one. */
export function catalogEntry(key: string): ErrorCatalogEntry | undefined {
  return Object.hasOwn(errorCatalog, key) ? errorCatalog[key] : undefined
}
