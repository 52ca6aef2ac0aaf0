// The stack under test, from the environment `npm test` (or the developer) provides. The same
// names work against a `supabase start` stack plus a replica: see .env.example.

const names = [
  'SUPABASE_URL',
  'SUPABASE_ANON_KEY',
  'SUPABASE_SERVICE_ROLE_KEY',
  'SUPABASE_JWT_SECRET',
  'SUPABASE_DB_URL',
  'TOLLGATE_REPLICA_DB_URL',
] as const

type TestEnv = Record<(typeof names)[number], string> & { TOLLGATE_REPLICA_SUBSCRIPTION: string }

function readEnv(): TestEnv {
  const missing = names.filter((name) => !process.env[name])
  if (missing.length > 0) {
    throw new Error(`tests need ${missing.join(', ')}: run them with \`npm test\`, or export a running stack's env (see .env.example)`)
  }
  return {
    ...(Object.fromEntries(names.map((name) => [name, process.env[name]!])) as Record<(typeof names)[number], string>),
    TOLLGATE_REPLICA_SUBSCRIPTION: process.env.TOLLGATE_REPLICA_SUBSCRIPTION ?? 'plugin_read_sub',
  }
}

export const env = readEnv()
