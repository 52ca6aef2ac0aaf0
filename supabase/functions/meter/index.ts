import { handle } from '../_shared/entry.ts'
import { createMeterHandler, maxBodyBytes } from '../_shared/meter/handler.ts'
import { meterStore } from '../_shared/meter/store.ts'
import { guardedFetch } from '../_shared/outbound/fetch-adapter.ts'
import { outboundGuardFromEnv } from '../_shared/outbound/settings.ts'
import { serviceDb } from '../_shared/service-db.ts'

// Backends are reached only through the outbound guard (the rule, pinned addresses, no
// redirects, answers up to the gateway's body cap); TOLLGATE_METER_PRIVATE_ORIGINS admits the
// operator's internal backends.
const backendFetch = guardedFetch(outboundGuardFromEnv('meter_backend', { maxResponseBytes: maxBodyBytes }))

Deno.serve(handle('meter', { methods: ['POST'], access: 'user' }, createMeterHandler(meterStore(serviceDb()), backendFetch)))
