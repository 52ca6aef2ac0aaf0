import { handle } from '../_shared/entry.ts'
import { pluginOptionsFromEnv, primaryUrl, replicaSubscription, replicaUrl } from '../_shared/plugin/config.ts'
import { createStatsHandler } from '../_shared/plugin/handlers.ts'
import { primaryFromUrl } from '../_shared/plugin/primary-db.ts'
import { replicaFromUrl } from '../_shared/plugin/replica-db.ts'

Deno.serve(handle('stats', { methods: ['POST'], access: 'public' }, createStatsHandler(replicaFromUrl(replicaUrl(), replicaSubscription()), primaryFromUrl(primaryUrl()), pluginOptionsFromEnv())))
