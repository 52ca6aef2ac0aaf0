import { pluginOptionsFromEnv, primaryUrl, replicaUrl } from '../_shared/plugin/config.ts'
import { createChannelSelfHandler } from '../_shared/plugin/handlers.ts'
import { primaryFromUrl } from '../_shared/plugin/primary-db.ts'
import { replicaFromUrl } from '../_shared/plugin/replica-db.ts'

// Devices call this without a token (the app id names the owner): see plugin/handlers.ts.
Deno.serve(createChannelSelfHandler(replicaFromUrl(replicaUrl()), primaryFromUrl(primaryUrl()), pluginOptionsFromEnv()))
