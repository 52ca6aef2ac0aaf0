// POST /alerts-dispatcher (service role): delivers due low-balance events to each org's
// webhook, signed like Stripe's: `X-Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256
// of "<t>.<body>" with the org's secret>`. Failures are retried with backoff by the database
// (record_credit_alert_delivery); every attempt is visible in credit_alert_outbox.
import { json } from './http.ts'

export interface DueAlert {
  id: string
  org_id: string
  payload: Record<string, unknown>
  attempts: number
  url: string
  secret: string
}

export interface AlertStore {
  claim(limit: number): Promise<DueAlert[]>
  record(id: string, delivered: boolean, statusCode: number | null, error: string | null): Promise<string>
}

const encoder = new TextEncoder()

export async function signature(secret: string, timestamp: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, encoder.encode(`${timestamp}.${body}`)))
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join('')
}

export function createAlertsDispatcher(store: AlertStore, fetchImpl: typeof fetch = fetch, timeoutMs = 5000) {
  return async (): Promise<Response> => {
    const due = await store.claim(50)
    const summary = { claimed: due.length, delivered: 0, retrying: 0, failed: 0 }
    await Promise.all(
      due.map(async (alert) => {
        const body = JSON.stringify({ id: alert.id, attempt: alert.attempts, ...alert.payload })
        const timestamp = Math.floor(Date.now() / 1000)
        let delivered = false
        let statusCode: number | null = null
        let error: string | null = null
        try {
          const res = await fetchImpl(alert.url, {
            method: 'POST',
            body,
            headers: {
              'content-type': 'application/json',
              'x-tollgate-event-id': alert.id,
              'x-tollgate-signature': `t=${timestamp},v1=${await signature(alert.secret, timestamp, body)}`,
            },
            signal: AbortSignal.timeout(timeoutMs),
          })
          statusCode = res.status
          delivered = res.ok
          if (!res.ok) error = `HTTP ${res.status}`
          await res.body?.cancel()
        } catch (e) {
          error = (e as Error)?.message ?? String(e)
        }
        const status = await store.record(alert.id, delivered, statusCode, error)
        if (status === 'delivered') summary.delivered++
        else if (status === 'failed') summary.failed++
        else summary.retrying++
      }),
    )
    return json(200, summary)
  }
}
