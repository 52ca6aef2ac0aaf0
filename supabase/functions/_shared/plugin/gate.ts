// The usage-credits gate of the plugin read path. It runs on the read replica only: this
// module imports nothing that can reach the primary.
import { HttpError, logEvent } from '../http.ts'

/** What the replica knows about an app's owner. `flag` is null when the column is missing. */
export interface GateRow {
  org_id: string
  has_usage_credits: boolean | null
  flag_present: boolean
}

/**
 * What to do when the replica's `orgs` lacks `has_usage_credits` (schema drift: a replica not
 * yet altered after the migration). `deny` (default) fails closed with 429; `allow` fails open.
 * Either way the event is logged. Set with TOLLGATE_GATE_ON_SCHEMA_DRIFT.
 */
export type DriftPolicy = 'deny' | 'allow'

export function driftPolicyFromEnv(value: string | undefined): DriftPolicy {
  if (value === undefined || value === '' || value === 'deny') return 'deny'
  if (value === 'allow') return 'allow'
  throw new Error(`TOLLGATE_GATE_ON_SCHEMA_DRIFT must be deny or allow, not ${value}`)
}

/**
 * The gate query. The flag is read through to_jsonb(o) so the statement still parses on a
 * replica whose orgs has no has_usage_credits column; only published tables are touched.
 */
export const gateColumnsSql = `
         a.org_id,
         (to_jsonb(o) ->> 'has_usage_credits')::boolean as has_usage_credits,
         (to_jsonb(o) ? 'has_usage_credits') as flag_present`

export const gateSql = `
  select ${gateColumnsSql}
  from public.apps a
  left join public.orgs o on o.id = a.org_id
  where a.app_id = $1`

/** Lets the request through, or throws 404 unknown_app / 429 no_usage_credits. */
export function decideGate(appId: string, row: GateRow | undefined, policy: DriftPolicy): { org_id: string } {
  if (!row) throw new HttpError(404, 'unknown_app', `no app ${appId}`)
  if (!row.flag_present) {
    logEvent('warn', 'gate_schema_drift', { app_id: appId, org_id: row.org_id, policy, detail: 'replica orgs has no has_usage_credits column' })
    if (policy === 'allow') return { org_id: row.org_id }
    throw new HttpError(429, 'no_usage_credits', 'usage credits cannot be verified for this app right now')
  }
  if (row.has_usage_credits !== true) {
    throw new HttpError(429, 'no_usage_credits', 'the app owner has no usage credits left')
  }
  return { org_id: row.org_id }
}
