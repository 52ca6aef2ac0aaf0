import { handle } from '../_shared/entry.ts'
import { createMeterHandler } from '../_shared/meter/handler.ts'
import { meterStore } from '../_shared/meter/store.ts'
import { serviceDb } from '../_shared/service-db.ts'

Deno.serve(handle('meter', { methods: ['POST'], access: 'user' }, createMeterHandler(meterStore(serviceDb()))))
