import { createAlertsDispatcher } from '../_shared/alerts.ts'
import { alertStore } from '../_shared/alerts-store.ts'
import { handle } from '../_shared/entry.ts'
import { outboundGuardFromEnv } from '../_shared/outbound/settings.ts'
import { serviceDb } from '../_shared/service-db.ts'

Deno.serve(handle('alerts-dispatcher', { methods: ['POST'], access: 'service_role' }, createAlertsDispatcher(alertStore(serviceDb()), outboundGuardFromEnv('alert_webhook'))))
