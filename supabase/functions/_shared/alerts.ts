// POST /alerts-dispatcher (service role): delivers due low-balance events to each org's
// webhook through the outbound guard, signed per the Standard Webhooks spec with its
// maintained library: `webhook-id` (the event id, the same on every attempt),
// `webhook-timestamp` (unix seconds of this attempt), `webhook-signature: v1,<base64
// HMAC-SHA256 of "<id>.<timestamp>.<body>">`, and `webhook-attempt` (1, 2, ...). The body is
// the same bytes on every attempt. Failures are retried with backoff by the database
// (record_credit_alert_delivery); what members read there is the outcome class, never the
// network's error text (that goes to this function's log).
import { Webhook } from 'standardwebhooks'
import { json, logEvent } from './http.ts'
import type { OutboundGuard } from './outbound/guard.ts'

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
  /** `errorClass`: the outcome class of a failed attempt (null when delivered). */
  record(id: string, delivered: boolean, statusCode: number | null, errorClass: string | null): Promise<string>
}

export interface AlertsDispatcherOptions {
  /** Total time one delivery may take. */
  timeoutMs?: number
  now?: () => Date
}

/**
 * The delivered body: the Standard Webhooks envelope `{type, timestamp, data}` built from the
 * event as it was queued, so every attempt sends the same bytes.
 */
export function alertBody(alert: Pick<DueAlert, 'payload'>): string {
  const { type, occurred_at, ...data } = alert.payload
  return JSON.stringify({ type, timestamp: occurred_at, data })
}

export interface AlertAttempt {
  delivered: boolean
  status: number | null
  /** The outcome class when not delivered (`http_5xx`, `timeout`, `refused_address`, ...). */
  errorClass: string | null
}

/** One signed delivery attempt of one event, through the guard. */
export function createAlertDelivery(guard: OutboundGuard, options: AlertsDispatcherOptions = {}) {
  const timeoutMs = options.timeoutMs ?? 10_000
  const now = options.now ?? (() => new Date())
  return async (alert: DueAlert): Promise<AlertAttempt> => {
    const body = alertBody(alert)
    const timestamp = now()
    let signature: string
    try {
      signature = new Webhook(alert.secret).sign(alert.id, timestamp, body)
    } catch (error) {
      logEvent('error', 'alert_signing_failed', { id: alert.id, org_id: alert.org_id, message: (error as Error)?.message })
      return { delivered: false, status: null, errorClass: 'signing_failed' }
    }
    const result = await guard.send(alert.url, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'user-agent': 'Tollgate-Webhooks/1',
        'webhook-id': alert.id,
        'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
        'webhook-signature': signature,
        'webhook-attempt': String(alert.attempts),
      },
      timeoutMs,
    })
    const delivered = result.outcome === 'delivered'
    return { delivered, status: result.status, errorClass: delivered ? null : result.outcome }
  }
}

export function createAlertsDispatcher(store: AlertStore, guard: OutboundGuard, options: AlertsDispatcherOptions = {}) {
  const deliver = createAlertDelivery(guard, options)
  return async (): Promise<Response> => {
    const due = await store.claim(50)
    const summary = { claimed: due.length, delivered: 0, retrying: 0, failed: 0, errors: 0 }
    // Each event on its own: one that cannot be recorded (the database failed) never stops the
    // others; its lease lapses and a later run reclaims it.
    await Promise.all(
      due.map(async (alert) => {
        try {
          const attempt = await deliver(alert)
          const status = await store.record(alert.id, attempt.delivered, attempt.status, attempt.errorClass)
          if (status === 'delivered') summary.delivered++
          else if (status === 'failed') summary.failed++
          else summary.retrying++
        } catch (error) {
          summary.errors++
          logEvent('error', 'alert_not_recorded', { alert_id: alert.id, org_id: alert.org_id, message: (error as Error)?.message ?? String(error) })
        }
      }),
    )
    return json(200, summary)
  }
}
