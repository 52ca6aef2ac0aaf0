import { fileURLToPath } from 'node:url'
import path from 'node:path'

/** The repository root: packages/local-stack/src → ../../.. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')

/** Git-ignored folder holding every stack's Postgres data, logs, Deno cache and env file. */
export const stateRoot = process.env.TOLLGATE_STATE_DIR ?? path.join(repoRoot, '.tollgate')

export const supabaseDir = path.join(repoRoot, 'supabase')
export const functionsDir = path.join(supabaseDir, 'functions')
export const baselineSql = path.join(repoRoot, 'packages/local-stack/sql/platform-baseline.sql')
/** pgextwlist's custom scripts, run as the superuser around an allow-listed `create extension`. */
export const extensionScriptsDir = path.join(repoRoot, 'packages/local-stack/sql/extension-scripts')
