// Regenerates supabase/schema.sql: the current definition of everything the migrations create
// (schemas, tables, functions, grants, policies, triggers, comments, extensions, publications,
// default privileges and pg_cron jobs), dumped schema-only from a migrated database. The
// migrations stay the source and record how the schema got here; this file shows where it is.
// tests/schema-dump.test.ts fails when the committed file is not what the migrations produce.
//
//   set -a; . .tollgate/dev/.env; set +a; npm run gen:schema
//
// How: pg_dump (PostgreSQL 15) dumps the whole database in its archive format; its table of
// contents is filtered to the objects of the schemas, extensions and publications the migrations
// create (plus triggers they hang on other schemas' tables, and the default privileges of the
// role they run as), and pg_restore prints those entries as SQL in pg_dump's own order (by kind,
// then name, dependencies first). Left out: the Supabase platform baseline (auth, extensions,
// graphql_public), pg_cron's own objects, the CLI's supabase_migrations, and owners (every
// object's owner is named once in the header). Version lines and pg_dump's random \restrict key
// are dropped, so the text depends only on the migrations, not on the machine or the OS user the
// stack runs as.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { pgBin } from './binaries.ts'
import { repoRoot, supabaseDir } from './paths.ts'
import { runChecked } from './process.ts'

export { repoRoot }
export const schemaFile = path.join(supabaseDir, 'schema.sql')
const migrationsDir = path.join(supabaseDir, 'migrations')

/** The role migrations run as (on hosted Supabase and on the local stack): it owns what they create. */
const migrationRole = 'postgres'

/** What the migrations create at database level, read from their text. */
export interface MigrationObjects {
  schemas: string[]
  extensions: string[]
  publications: string[]
}

/** Strips `--` and block comments, so commented-out statements do not count. */
function withoutComments(sql: string): string {
  return sql.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/--[^\n]*/g, ' ')
}

const identifier = String.raw`("[^"]+"|[A-Za-z_][A-Za-z0-9_$-]*)`
const unquote = (name: string): string => (name.startsWith('"') ? name.slice(1, -1).replaceAll('""', '"') : name.toLowerCase())

export function migrationObjects(dir = migrationsDir): MigrationObjects {
  const found = { schemas: new Set(['public']), extensions: new Set<string>(), publications: new Set<string>() }
  const patterns: Array<[keyof MigrationObjects, RegExp]> = [
    ['schemas', new RegExp(String.raw`\bcreate\s+schema\s+(?:if\s+not\s+exists\s+)?${identifier}`, 'gi')],
    ['extensions', new RegExp(String.raw`\bcreate\s+extension\s+(?:if\s+not\s+exists\s+)?${identifier}`, 'gi')],
    ['publications', new RegExp(String.raw`\bcreate\s+publication\s+${identifier}`, 'gi')],
  ]
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    const sql = withoutComments(fs.readFileSync(path.join(dir, file), 'utf8'))
    for (const [kind, pattern] of patterns) for (const match of sql.matchAll(pattern)) found[kind].add(unquote(match[1]!))
  }
  return { schemas: [...found.schemas].sort(), extensions: [...found.extensions].sort(), publications: [...found.publications].sort() }
}

/** One line of `pg_restore --list`: `<id>; <tableoid> <oid> <kind> <schema|-> <tag> <owner>`. */
interface TocEntry {
  line: string
  oid: number
  kind: string
  schema: string
  tag: string
  owner: string
}

// pg_dump's entry kinds that contain a space; longest first, so "DEFAULT ACL" wins over "DEFAULT".
const multiWordKinds = [
  'PUBLICATION TABLES IN SCHEMA', 'TEXT SEARCH CONFIGURATION', 'TEXT SEARCH DICTIONARY', 'MATERIALIZED VIEW DATA',
  'FOREIGN DATA WRAPPER', 'TEXT SEARCH TEMPLATE', 'DATABASE PROPERTIES', 'PROCEDURAL LANGUAGE', 'TEXT SEARCH PARSER',
  'PUBLICATION TABLE', 'MATERIALIZED VIEW', 'SEQUENCE OWNED BY', 'CHECK CONSTRAINT', 'OPERATOR FAMILY', 'OPERATOR CLASS',
  'FOREIGN SERVER', 'SECURITY LABEL', 'EVENT TRIGGER', 'FOREIGN TABLE', 'ACCESS METHOD', 'FK CONSTRAINT', 'INDEX ATTACH',
  'LARGE OBJECT', 'ROW SECURITY', 'SEQUENCE SET', 'TABLE ATTACH', 'USER MAPPING', 'DEFAULT ACL', 'SHELL TYPE', 'TABLE DATA',
]
const tocLine = new RegExp(String.raw`^\d+; (\d+) (\d+) (${multiWordKinds.join('|')}|\S+) (\S+) (.*) (\S*)$`)

function parseToc(list: string): TocEntry[] {
  const entries: TocEntry[] = []
  for (const line of list.split('\n')) {
    if (line === '' || line.startsWith(';')) continue
    const match = tocLine.exec(line)
    if (!match) throw new Error(`unexpected line in pg_restore --list: ${JSON.stringify(line)}`)
    entries.push({ line, oid: Number(match[2]), kind: match[3]!, schema: match[4]!, tag: match[5]!.replaceAll('"', ''), owner: match[6]! })
  }
  return entries
}

const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`

/** `text` as a dollar-quoted SQL string (readable: no doubled quotes), with a tag it does not contain. */
function dollarQuoted(text: string): string {
  let tag = '$job$'
  for (let i = 1; text.includes(tag); i++) tag = `$job${i}$`
  return `${tag}${text}${tag}`
}

/** What the catalog says about objects the table of contents alone cannot place. */
interface CatalogFacts {
  /** Triggers on tables outside our schemas (auth.users) that call a function in ours. */
  foreignTriggerOids: Set<number>
  /** Their COMMENT entries' tags: `TRIGGER <name> ON <table>`. */
  foreignTriggerCommentTags: Set<string>
  /** `select cron.schedule(...)` for each pg_cron job of the migration role, by name. */
  cronJobs: string[]
}

async function catalogFacts(dbUrl: string, ours: MigrationObjects): Promise<CatalogFacts> {
  const client = new pg.Client({ connectionString: dbUrl })
  await client.connect()
  try {
    const triggers = await client.query<{ oid: string; tag: string }>(
      `select t.oid::text as oid, 'TRIGGER ' || t.tgname || ' ON ' || c.relname as tag
         from pg_catalog.pg_trigger t
         join pg_catalog.pg_class c on c.oid = t.tgrelid
         join pg_catalog.pg_namespace tn on tn.oid = c.relnamespace
         join pg_catalog.pg_proc p on p.oid = t.tgfoid
         join pg_catalog.pg_namespace pn on pn.oid = p.pronamespace
        where not t.tgisinternal and pn.nspname = any($1) and not tn.nspname = any($1)`,
      [ours.schemas],
    )
    let cronJobs: string[] = []
    if (ours.extensions.includes('pg_cron')) {
      const jobs = await client.query<{ jobname: string; schedule: string; command: string; active: boolean }>(
        `select jobname, schedule, command, active from cron.job
          where username = $1 and jobname is not null order by jobname collate "C"`,
        [migrationRole],
      )
      cronJobs = jobs.rows.map((job) => {
        const schedule = `SELECT cron.schedule(${literal(job.jobname)}, ${literal(job.schedule)}, ${dollarQuoted(job.command)});`
        return job.active ? schedule : `${schedule}\nSELECT cron.alter_job((SELECT jobid FROM cron.job WHERE jobname = ${literal(job.jobname)}), active => false);`
      })
    }
    return {
      foreignTriggerOids: new Set(triggers.rows.map((r) => Number(r.oid))),
      foreignTriggerCommentTags: new Set(triggers.rows.map((r) => r.tag)),
      cronJobs,
    }
  } finally {
    await client.end()
  }
}

/** Whether a table-of-contents entry is something the migrations created (see the file header). */
function isOurs(entry: TocEntry, ours: MigrationObjects, facts: CatalogFacts): boolean {
  const { kind, schema, tag, owner } = entry
  // Default privileges: those of the role migrations run as (the baseline's, for supabase_admin, are not ours).
  if (kind === 'DEFAULT ACL') return owner === migrationRole && (schema === '-' || ours.schemas.includes(schema))
  if (kind === 'PUBLICATION TABLE' || kind === 'PUBLICATION TABLES IN SCHEMA') {
    return ours.publications.some((p) => tag.startsWith(`${p} `)) || ours.schemas.includes(schema)
  }
  if (ours.schemas.includes(schema)) return true
  if (schema === '-') {
    if (kind === 'SCHEMA') return ours.schemas.includes(tag)
    if (kind === 'EXTENSION') return ours.extensions.includes(tag)
    if (kind === 'PUBLICATION') return ours.publications.includes(tag)
    if (kind === 'ACL' || kind === 'COMMENT' || kind === 'SECURITY LABEL') {
      const [onKind, ...rest] = tag.split(' ')
      const name = rest.join(' ')
      if (onKind === 'SCHEMA') return ours.schemas.includes(name)
      if (onKind === 'EXTENSION') return ours.extensions.includes(name)
      if (onKind === 'PUBLICATION') return ours.publications.includes(name)
    }
    return false
  }
  if (kind === 'TRIGGER') return facts.foreignTriggerOids.has(entry.oid)
  if (kind === 'COMMENT') return facts.foreignTriggerCommentTags.has(tag)
  return false
}

/** Kinds that own something (the rest are ACLs, comments and parts of a table). */
const ownedKinds = new Set(['SCHEMA', 'TABLE', 'VIEW', 'MATERIALIZED VIEW', 'SEQUENCE', 'FUNCTION', 'PROCEDURE', 'AGGREGATE', 'TYPE', 'DOMAIN', 'PUBLICATION', 'FOREIGN TABLE'])

/** schema.sql for the database at `dbUrl`, as `npm run gen:schema` writes it. */
export async function generateSchema(dbUrl: string): Promise<string> {
  const ours = migrationObjects()
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-gen-schema-'))
  try {
    const archive = path.join(scratch, 'schema.dump')
    await runChecked('pg_dump --schema-only', pgBin('pg_dump'), ['--schema-only', '--format=custom', `--file=${archive}`, `--dbname=${dbUrl}`])
    const toc = parseToc((await runChecked('pg_restore --list', pgBin('pg_restore'), ['--list', archive])).stdout)
    const facts = await catalogFacts(dbUrl, ours)
    const kept = toc.filter((entry) => isOurs(entry, ours, facts))
    const listFile = path.join(scratch, 'schema.list')
    fs.writeFileSync(listFile, `${kept.map((e) => e.line).join('\n')}\n`)
    const { stdout } = await runChecked('pg_restore --use-list', pgBin('pg_restore'), ['--no-owner', `--use-list=${listFile}`, '--file=-', archive])

    const owners = new Map<string, string[]>()
    for (const e of kept.filter((e) => ownedKinds.has(e.kind) && e.owner !== '')) owners.set(e.owner, [...(owners.get(e.owner) ?? []), `${e.kind.toLowerCase()} ${e.schema === '-' ? '' : `${e.schema}.`}${e.tag}`])
    const others = [...owners.keys()].filter((owner) => owner !== migrationRole).sort()
    const ownerLines = [
      `-- Owner of ${others.length === 0 ? 'every object' : 'every other object'} below: ${migrationRole} (owners are left out of the statements).`,
      ...others.map((owner) => `-- Owned by ${owner}: ${owners.get(owner)!.sort().join(', ')}.`),
    ]
    const header = [
      '-- supabase/schema.sql: GENERATED by `npm run gen:schema` from a database migrated with supabase/migrations/.',
      '-- Do not edit: the migrations are the source (a landed migration is never edited; a change is a new one);',
      '-- this file is the current state they produce, kept true by tests/schema-dump.test.ts.',
      `-- Schemas: ${ours.schemas.join(', ')}. Extensions: ${ours.extensions.join(', ') || 'none'}. Publications: ${ours.publications.join(', ') || 'none'}.`,
      ...ownerLines,
      '',
    ].join('\n')
    const body = stdout
      .split('\n')
      .filter((line) => !/^\\(un)?restrict /.test(line) && !/^-- Dumped (from database|by pg_dump) version /.test(line))
      .join('\n')
      .trim()
    const cron = facts.cronJobs.length === 0 ? '' : [
      '',
      '',
      '--',
      `-- pg_cron jobs of ${migrationRole} (rows of cron.job, scheduled by the migrations with cron.schedule)`,
      '--',
      '',
      ...facts.cronJobs,
    ].join('\n')
    // The jobs go before pg_dump's closing comment, so the file still ends where the dump does.
    const closing = '--\n-- PostgreSQL database dump complete\n--'
    if (!body.endsWith(closing)) throw new Error('pg_restore printed no closing comment: unexpected output')
    return `${header}\n${body.slice(0, -closing.length).trimEnd()}${cron}\n\n${closing}\n`
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}

async function main(): Promise<void> {
  const dbUrl = process.env.SUPABASE_DB_URL
  if (!dbUrl) {
    process.stderr.write('gen:schema needs SUPABASE_DB_URL: `set -a; . .tollgate/dev/.env; set +a` (or `npm run status`) first\n')
    process.exit(2)
  }
  const schema = await generateSchema(dbUrl)
  // Written only after a successful run, via a rename: a failed run never leaves half a file.
  const temporary = `${schemaFile}.${process.pid}.tmp`
  fs.writeFileSync(temporary, schema)
  fs.renameSync(temporary, schemaFile)
  process.stdout.write(`wrote ${path.relative(repoRoot, schemaFile)} (${schema.split('\n').length - 1} lines)\n`)
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  })
}
