import { handle } from '../_shared/http.ts'
import { createHealthHandler } from '../_shared/health.ts'
import { databaseHealthProbes } from '../_shared/health-probes.ts'

Deno.serve(handle('health', createHealthHandler(databaseHealthProbes())))
