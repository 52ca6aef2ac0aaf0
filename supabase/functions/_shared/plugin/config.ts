// Plugin endpoint settings from the environment (see .env.example).
import { requireEnv } from '../env.ts'
import { driftPolicyFromEnv } from './gate.ts'
import type { PluginOptions } from './handlers.ts'

export function pluginOptionsFromEnv(): PluginOptions {
  const gate = Deno.env.get('TOLLGATE_PLUGIN_GATE') ?? 'on'
  if (gate !== 'on' && gate !== 'off') throw new Error(`TOLLGATE_PLUGIN_GATE must be on or off, not ${gate}`)
  return { gate, driftPolicy: driftPolicyFromEnv(Deno.env.get('TOLLGATE_GATE_ON_SCHEMA_DRIFT')) }
}

export const replicaUrl = (): string => requireEnv('TOLLGATE_REPLICA_DB_URL')
export const primaryUrl = (): string => requireEnv('SUPABASE_DB_URL')
