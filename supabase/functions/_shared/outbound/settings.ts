// The guard as each function builds it from its environment (function secrets, never the
// database). TOLLGATE_OUTBOUND_ALLOW_LOCAL_HTTP=true (local stack only) allows
// http://127.0.0.1:<port>; TOLLGATE_METER_PRIVATE_ORIGINS lists the internal origins the tool
// gateway may reach (comma-separated scheme://host[:port]); alert webhooks never get them.
import { dnsResolver } from './dns-resolver.ts'
import { createOutboundGuard, type OutboundGuard, type OutboundGuardOptions } from './guard.ts'
import { nodeConnector } from './node-connector.ts'
import { normalizeOrigin } from './url-rule.ts'

export const allowLocalHttpVariable = 'TOLLGATE_OUTBOUND_ALLOW_LOCAL_HTTP'
export const meterPrivateOriginsVariable = 'TOLLGATE_METER_PRIVATE_ORIGINS'

export type OutboundPurpose = 'alert_webhook' | 'meter_backend'

/** Bounds per purpose: webhooks answer quickly and small; tool backends up to 2 min and 1 MiB. */
const bounds: Record<OutboundPurpose, Pick<OutboundGuardOptions, 'connectTimeoutMs' | 'totalTimeoutMs' | 'maxResponseBytes'>> = {
  alert_webhook: { connectTimeoutMs: 5_000, totalTimeoutMs: 10_000, maxResponseBytes: 64 * 1024 },
  meter_backend: { connectTimeoutMs: 5_000, totalTimeoutMs: 120_000, maxResponseBytes: 1024 * 1024 },
}

/** Parses TOLLGATE_METER_PRIVATE_ORIGINS; an entry that is not an origin stops the function at start. */
export function parsePrivateOrigins(value: string | undefined): string[] {
  const entries = (value ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')
  return entries.map((entry) => {
    const origin = normalizeOrigin(entry)
    if (!origin) throw new Error(`${meterPrivateOriginsVariable}: "${entry}" is not an origin (scheme://host[:port])`)
    return origin
  })
}

export function outboundGuardFromEnv(purpose: OutboundPurpose, overrides: Partial<OutboundGuardOptions> = {}): OutboundGuard {
  const allowLocalHttp = Deno.env.get(allowLocalHttpVariable) === 'true'
  const privateOrigins = purpose === 'meter_backend' ? parsePrivateOrigins(Deno.env.get(meterPrivateOriginsVariable)) : []
  return createOutboundGuard({
    purpose,
    resolver: dnsResolver(),
    connector: nodeConnector(),
    allowLocalHttp,
    privateOrigins,
    ...bounds[purpose],
    ...overrides,
  })
}
