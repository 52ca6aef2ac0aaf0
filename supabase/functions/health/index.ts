import { handle } from '../_shared/entry.ts'
import { createHealthHandler } from '../_shared/health.ts'
import { databaseHealthProbes } from '../_shared/health-probes.ts'

Deno.serve(handle('health', { methods: ['GET'], access: 'any_role' }, createHealthHandler(databaseHealthProbes())))
