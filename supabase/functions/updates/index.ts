import { pluginOptionsFromEnv, replicaUrl } from '../_shared/plugin/config.ts'
import { createUpdatesHandler } from '../_shared/plugin/handlers.ts'
import { replicaFromUrl } from '../_shared/plugin/replica-db.ts'

// Read path only: this function never opens a connection to the primary.
Deno.serve(createUpdatesHandler(replicaFromUrl(replicaUrl()), pluginOptionsFromEnv()))
