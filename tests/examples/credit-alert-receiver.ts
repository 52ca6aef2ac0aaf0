import { Webhook } from 'standardwebhooks'

export interface CreditAlert {
  type: 'credits.low_balance'
  timestamp: string
  data: { org_id: string; threshold_percent: number; grant_id: string; grant_amount: number; available: number }
}

/** Receives Tollgate's credit alerts on any Fetch-API server (Deno.serve, Hono, Bun, Workers, Next.js). */
export function creditAlertReceiver(secret: string, onAlert: (alert: CreditAlert, id: string) => Promise<void>) {
  const webhook = new Webhook(secret) // "whsec_..." as set_alert_webhook returned it
  return async (req: Request): Promise<Response> => {
    const body = await req.text() // the raw body: verify before parsing
    let alert: CreditAlert
    try {
      alert = webhook.verify(body, Object.fromEntries(req.headers)) as CreditAlert
    } catch {
      return new Response(null, { status: 400 }) // a wrong signature, or a webhook-timestamp more than 5 min off
    }
    await onAlert(alert, req.headers.get('webhook-id')!) // a retry carries the same id and body: deduplicate on it
    return new Response(null, { status: 204 })
  }
}
