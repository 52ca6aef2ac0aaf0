// Environment of an edge function. SUPABASE_* are injected by Supabase (and the local stack);
// TOLLGATE_* are project secrets (`supabase secrets set`).

export function requireEnv(name: string): string {
  const value = Deno.env.get(name)
  if (!value) throw new Error(`environment variable ${name} is not set`)
  return value
}

/** Name of the replica's subscription to publication plugin_read (for lag on the primary). */
export const replicaSubscription = (): string => Deno.env.get('TOLLGATE_REPLICA_SUBSCRIPTION') ?? 'plugin_read_sub'
