import { pluginOptionsFromEnv, primaryUrl, replicaUrl } from '../_shared/plugin/config.ts'
import { createStatsHandler } from '../_shared/plugin/handlers.ts'
import { primaryFromUrl } from '../_shared/plugin/primary-db.ts'
import { replicaFromUrl } from '../_shared/plugin/replica-db.ts'

Deno.serve(createStatsHandler(replicaFromUrl(replicaUrl()), primaryFromUrl(primaryUrl()), pluginOptionsFromEnv()))
