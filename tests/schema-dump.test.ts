import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateSchema, migrationObjects, repoRoot, schemaFile } from '../packages/local-stack/src/gen-schema.ts'
import { env } from './support/env.ts'

/** The first line where two texts differ, for a failure message a person can act on. */
function firstDifference(committed: string, generated: string): string {
  const a = committed.split('\n')
  const b = generated.split('\n')
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `line ${i + 1}:\n  committed: ${JSON.stringify(a[i] ?? '<end of file>')}\n  generated: ${JSON.stringify(b[i] ?? '<end of file>')}`
  }
  return 'no line differs'
}

// supabase/schema.sql is the current state the migrations produce, generated (never edited), so
// "current?" is a plain comparison with a fresh dump of the stack under test.
describe('supabase/schema.sql', () => {
  it('is what `npm run gen:schema` dumps from the migrations under test', { timeout: 60_000 }, async () => {
    const generated = await generateSchema(env.SUPABASE_DB_URL)
    const committed = fs.existsSync(schemaFile) ? fs.readFileSync(schemaFile, 'utf8') : ''
    if (committed !== generated) {
      expect.fail(`${path.relative(repoRoot, schemaFile)} is stale: run \`npm run gen:schema\` against a stack with the current migrations.\nFirst difference at ${firstDifference(committed, generated)}`)
    }
  })

  it('holds what the migrations create and none of the platform baseline, pg_cron or the CLI own', () => {
    const schema = fs.readFileSync(schemaFile, 'utf8')
    expect(migrationObjects()).toEqual({ schemas: ['private', 'public'], extensions: ['pg_cron'], publications: ['plugin_read'] })
    for (const present of [
      'CREATE SCHEMA private;',
      'CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;',
      'CREATE FUNCTION public.consume_credits(',
      'CREATE FUNCTION private.fail(',
      'CREATE TABLE public.credit_ledger (',
      'ALTER TABLE public.credit_ledger ENABLE ROW LEVEL SECURITY;',
      'CREATE POLICY ',
      'GRANT ALL ON FUNCTION public.consume_credits(',
      'REVOKE ALL ON FUNCTION public.consume_credits(',
      'COMMENT ON FUNCTION public.consume_credits(',
      'CREATE TRIGGER create_personal_org AFTER INSERT ON auth.users',
      'CREATE PUBLICATION plugin_read ',
      'ALTER PUBLICATION plugin_read ADD TABLE ONLY public.orgs (id, has_usage_credits);',
      'ALTER DEFAULT PRIVILEGES FOR ROLE postgres REVOKE ALL ON FUNCTIONS  FROM PUBLIC;',
      "SELECT cron.schedule('tollgate-reconcile-credits', '17 3 * * *', $job$select public.reconcile_credits()$job$);",
    ]) expect(schema, present).toContain(present)
    for (const absent of [
      'CREATE TABLE auth.users', 'FUNCTION auth.uid()', 'CREATE SCHEMA auth', 'CREATE SCHEMA extensions', 'CREATE SCHEMA graphql_public',
      'pgcrypto', 'uuid-ossp', 'cron.job_run_details', 'ON SCHEMA cron', 'supabase_migrations', 'FOR ROLE supabase_admin',
      'OWNER TO', '\\restrict', 'Dumped from database version', 'Dumped by pg_dump version',
    ]) expect(schema, absent).not.toContain(absent)
  })
})
