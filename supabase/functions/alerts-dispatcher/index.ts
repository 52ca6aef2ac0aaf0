import { createAlertsDispatcher } from '../_shared/alerts.ts'
import { alertStore } from '../_shared/alerts-store.ts'
import { handle } from '../_shared/http.ts'
import { serviceDb } from '../_shared/service-db.ts'

Deno.serve(handle('alerts-dispatcher', createAlertsDispatcher(alertStore(serviceDb()))))
