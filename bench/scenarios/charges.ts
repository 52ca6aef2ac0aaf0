// Scenarios 1-3: consume_credits at the SQL layer (pgbench) against a floor and against the
// client-side locking pattern (an app server holding a row lock across round trips).
import os from 'node:os'
import { pgbench, pgTarget, type PgTarget } from '../lib/pgbench.ts'
import { find, pass, ratioText, tpsText, type Row } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp, type Variant } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { profileCharges, rowsWritten, writesText, type ChargeProfile } from '../lib/profile.ts'
import { sampleWaits, waitsText, type WaitProfile } from '../lib/waits.ts'
import { priceOperation, special, userIdSql } from '../prepare.ts'

// `:u` is user n. PostgREST runs every RPC with the caller's claims in request.jwt.claims
// (transaction-local); the same set_config runs here, in the same statement as the call.
/** Whose org a transaction charges: a random one of the funded distinct orgs, the hot org, or a random one of users from..to. */
export type Users = 'distinct' | 'hot' | { from: number; to: number }
export const pickUser = (users: Users): string =>
  users === 'distinct'
    ? `\\set u random(1, ${settings.distinctOrgs})`
    : users === 'hot'
      ? `\\set u ${special.hot}`
      : `\\set u random(${users.from}, ${users.to})`
export const requestId = '\\set rid random(1, 9000000000000000000)'

export const oursScript = (range: Users): string => `
${pickUser(range)}
${requestId}
select set_config('request.jwt.claims', '{"role":"authenticated","sub":"' || ${userIdSql(':u::int')} || '"}', true), public.consume_credits('${priceOperation}', 'r' || :rid);
`

export const floorScript = (range: Users): string => `
${pickUser(range)}
${requestId}
select bench.floor_consume(${userIdSql(':u::int')}::uuid, 'r' || :rid);
`

// A client-side deduct_credits(), statement for statement: BEGIN, SELECT ... FOR UPDATE, the
// client computes the new balance, UPDATE, INSERT transaction, INSERT tool call, COMMIT: four
// round trips while the account row is locked. (Its insufficient-credits branch never runs here.)
const requestUuid = `lpad(to_hex(:r1::bigint), 16, '0') || lpad(to_hex(:r2::bigint), 16, '0')`
export const clientLockScript = `
\\set r1 random(1, 9000000000000000000)
\\set r2 random(1, 9000000000000000000)
BEGIN;
SELECT credits_balance, total_tool_calls, total_credits_used FROM bench.mcp_user_accounts WHERE id = :account FOR UPDATE \\gset
\\set balance_after :credits_balance - 1
UPDATE bench.mcp_user_accounts SET credits_balance = :balance_after, total_tool_calls = total_tool_calls + 1, total_credits_used = total_credits_used + 1, updated_at = now() WHERE id = :account;
INSERT INTO bench.mcp_user_credit_transactions (user_account_id, transaction_type, amount, balance_before, balance_after, reference_type, reference_id, description, created_at) VALUES (:account, 'usage', -1, :credits_balance, :balance_after, 'tool_call', ${requestUuid}, 'Tool: ${priceOperation}', now());
INSERT INTO bench.mcp_user_tool_calls (request_id, user_account_id, tool_name, credits_cost, credits_charged, credits_before, credits_after, input_params, success, created_at) VALUES ((${requestUuid})::uuid, :account, '${priceOperation}', 1, 1, :credits_balance, :balance_after, NULL, false, now());
COMMIT;
`

export function variant(target: PgTarget, name: string, script: string, vars?: Record<string, string>): Variant {
  return { name, run: (clients, seconds) => pgbench(target, { name, script, clients, seconds, vars }) }
}

/** Worst ratio a/b of tps over the client counts, and where it was. */
export function worstRatio(measurements: Measurement[], a: string, b: string, clients: number[]): { ratio: number; clients: number } {
  return clients
    .map((c) => ({ ratio: find(measurements, a, c).tps / find(measurements, b, c).tps, clients: c }))
    .reduce((worst, r) => (r.ratio < worst.ratio ? r : worst))
}

export const perClients = (measurements: Measurement[], a: string, b: string, clients: number[]): string =>
  clients.map((c) => `${c}c ${ratioText(find(measurements, a, c).tps / find(measurements, b, c).tps)}`).join(', ')

/** Sanity: each variant does what it claims once before it is timed. */
async function checkCharges(ctx: Context): Promise<void> {
  const { rows } = await ctx.db.query<{ result: { charged: number; replayed: boolean } }>(
    `select set_config('request.jwt.claims', json_build_object('role', 'authenticated', 'sub', ${userIdSql('$1::int')})::text, true),
            public.consume_credits($2, 'sanity-' || $1) as result`,
    [special.hot, priceOperation],
  )
  if (rows[0]?.result.charged !== 1 || rows[0].result.replayed) throw new Error(`consume_credits sanity check: ${JSON.stringify(rows[0])}`)
  const floor = await ctx.db.query(`select bench.floor_consume(${userIdSql('$1::int')}::uuid, 'sanity') as after`, [special.hot])
  if (floor.rows.length !== 1 || floor.rows[0].after === null) throw new Error('floor sanity check failed')
}

export async function distinctOrgs(ctx: Context): Promise<ScenarioOutput> {
  await checkCharges(ctx)
  const variants = [variant(ctx.primary, 'ours_distinct', oursScript('distinct')), variant(ctx.primary, 'floor_distinct', floorScript('distinct'))]
  await warmUp(variants)
  await settle(ctx.admin)
  const measurements: Measurement[] = []
  for (const clients of settings.clients) measurements.push(...(await sideBySide(variants, clients, settings.seconds)))
  const worst = worstRatio(measurements, 'ours_distinct', 'floor_distinct', settings.clients)
  const ours = find(measurements, 'ours_distinct', worst.clients)
  const floor = find(measurements, 'floor_distinct', worst.clients)

  // Evidence for the ratio: what each side writes, and where ours spends its time.
  const transactions = settings.quick ? 1000 : 3000
  // track_functions is a superuser setting: the profiling runs connect as supabase_admin (the
  // functions run as they do for postgres; what is counted is per function, not per caller).
  const profiler = pgTarget(ctx.stack.superuserDbUrl)
  const oursProfile = await profileCharges(ctx.db, profiler, 'ours_distinct', oursScript('distinct'), transactions, 'public.credit_ledger')
  const floorProfile = await profileCharges(ctx.db, profiler, 'floor_distinct', floorScript('distinct'), transactions, 'bench.floor_ledger')
  const checkCost = await checkConstraintCost(ctx)
  // Where each side's backends wait at 8 clients (a separate pass, sampled; not in the ratios).
  const waits = [await sampleWaits(ctx.db, variants[0]!, 8, settings.quick ? 2 : 6), await sampleWaits(ctx.db, variants[1]!, 8, settings.quick ? 2 : 6)]
  // Indexes whose predicate or expressions name `remaining`: an update of it can never be HOT.
  const { rows: blocking } = await ctx.db.query<{ name: string }>(
    `select indexrelid::regclass::text as name from pg_index
     where indrelid = 'public.credit_grants'::regclass
       and (coalesce(pg_get_expr(indpred, indrelid), '') ~ '\\mremaining\\M' or coalesce(pg_get_expr(indexprs, indrelid), '') ~ '\\mremaining\\M'
            or exists (select 1 from pg_attribute a where a.attrelid = indrelid and a.attname = 'remaining' and a.attnum = any(indkey::int2[])))`,
  )
  const evidence: ChargeEvidence = { ours: oursProfile, floor: floorProfile, checks: checkCost, waits, hotBlockers: blocking.map((b) => b.name) }

  const row: Row = {
    scenario: `1. consume_credits, ${settings.distinctOrgs.toLocaleString('en')} orgs (random org) vs floor`,
    target: 'ours ≥ 0.7× floor tps (worst of 1/8/32 clients)',
    ratio: worst.ratio,
    measured: `${ratioText(worst.ratio)} (${perClients(measurements, 'ours_distinct', 'floor_distinct', settings.clients)})`,
    status: pass(worst.ratio >= 0.7),
    absolute: `at ${worst.clients}c: ours ${tpsText(ours)}; floor ${tpsText(floor)}`,
    note: worst.ratio < 0.7 ? chargeCost(evidence) : undefined,
  }
  const walRatio = oursProfile.wal_bytes_per_tx / floorProfile.wal_bytes_per_tx
  const writes: Row = {
    scenario: `1b. rows written and WAL per plain charge (${transactions.toLocaleString('en')} sequential charges each, distinct orgs)`,
    target: 'reported; floor 2 rows',
    ratio: null,
    measured: `ours ${rowsWritten(oursProfile)} rows, ${oursProfile.wal_bytes_per_tx} B WAL; floor ${rowsWritten(floorProfile)} rows, ${floorProfile.wal_bytes_per_tx} B (ours ${ratioText(walRatio)} the floor's WAL)`,
    status: 'INFO',
    absolute: `per charge, ours: ${writesText(oursProfile)}. Floor: ${writesText(floorProfile)}`,
  }
  return {
    rows: [row, writes],
    measurements,
    details: { profile: { ours: oursProfile, floor: floorProfile }, check_constraints: checkCost, waits_8_clients: waits, grant_indexes_naming_remaining: evidence.hotBlockers },
  }
}

interface ChargeEvidence {
  ours: ChargeProfile
  floor: ChargeProfile
  checks: CheckCost
  /** Sampled wait events at 8 clients: ours, then the floor. */
  waits: WaitProfile[]
  /** credit_grants indexes that name `remaining` (so updating it cannot be HOT). */
  hotBlockers: string[]
}

/** One line: what a charge writes and where its time goes, from the 1-client profile. */
function chargeCost(e: ChargeEvidence): string {
  const grants = e.ours.tables['public.credit_grants']
  const top = e.ours.functions.slice(0, 5).map((f) => `${f.name.replace(/^(public|private)\./, '')} ${Math.round(f.self_us)}`).join(', ')
  const floorTop = e.floor.functions[0]
  return (
    `per charge ours writes ${rowsWritten(e.ours)} rows and ${e.ours.wal_bytes_per_tx} B of WAL, the floor ${rowsWritten(e.floor)} rows and ${e.floor.wal_bytes_per_tx} B; ` +
    (grants && grants.updated > 0
      ? `${Math.round((100 * grants.hot_updated) / grants.updated)}% of its credit_grants updates are HOT${e.hotBlockers.length ? ` (\`remaining\` is named by ${e.hotBlockers.join(', ')}, so each charge writes a new entry into every grant index)` : ''}; `
      : '') +
    `self time per call, µs: ${top}${floorTop ? ` (floor_consume ${Math.round(floorTop.self_us)})` : ''}; ` +
    `the tables a charge writes carry ${e.checks.perCharge} CHECK constraints (the floor's 1), and PostgreSQL re-prepares every CHECK of a table for each INSERT or UPDATE: ` +
    `the grant update alone with its ${e.checks.grants} CHECKs runs at ${ratioText(e.checks.ratio)} the speed of the same update without them (${e.checks.withUs.toFixed(0)} vs ${e.checks.withoutUs.toFixed(0)} µs mean, 1 client); ` +
    `at 8 clients the backends wait on — ours: ${waitsText(e.waits[0]!)}; floor: ${waitsText(e.waits[1]!)} (CPU = running)` +
    (walShare(e.waits[0]!) > 0.5 && walShare(e.waits[1]!) > 0.5
      ? `: both sides mostly wait for the WAL flush at commit (ours ${Math.round(100 * walShare(e.waits[0]!))}%, floor ${Math.round(100 * walShare(e.waits[1]!))}%), so their throughput is bound by the WAL bytes flushed per second, and a charge writes ${ratioText(e.ours.wal_bytes_per_tx / e.floor.wal_bytes_per_tx)} the floor's WAL`
      : '')
  )
}

/** Share of samples waiting on writing or flushing the WAL. */
const walShare = (p: WaitProfile): number => p.shares.filter((w) => /^(LWLock|IO):WAL/.test(w.wait)).reduce((sum, w) => sum + w.share, 0)

interface CheckCost {
  /** CHECK constraints on credit_balances, credit_grants, credit_ledger and credit_requests. */
  perCharge: number
  grants: number
  /** tps of the grant update with its CHECKs / without them. */
  ratio: number
  withUs: number
  withoutUs: number
}

/** The same `remaining` update on copies of credit_grants with and without its CHECK constraints, side by side. */
async function checkConstraintCost(ctx: Context): Promise<CheckCost> {
  for (const table of ['bench.grants_with_checks', 'bench.grants_without_checks']) {
    await ctx.admin.query(`truncate ${table}`)
    await ctx.admin.query(`insert into ${table} select * from public.credit_grants`)
    await ctx.admin.query(`grant select, update on ${table} to postgres`)
  }
  const { rows } = await ctx.db.query<{ table: string; n: string }>(
    `select conrelid::regclass::text as table, count(*) as n from pg_constraint
     where contype = 'c' and conrelid = any (array['public.credit_balances', 'public.credit_grants', 'public.credit_ledger', 'public.credit_requests']::regclass[])
     group by 1`,
  )
  const perCharge = rows.reduce((sum, r) => sum + Number(r.n), 0)
  const grants = Number(rows.find((r) => r.table === 'credit_grants')?.n ?? 0)
  const update = (table: string): string => `${pickUser('distinct')}
update ${table} set remaining = remaining - 1 where org_id = (select o.id from public.orgs o where o.personal_user_id = ${userIdSql(':u::int')}::uuid) and status = 'active';`
  const probe = await sideBySide([variant(ctx.primary, 'grant_update_checks', update('bench.grants_with_checks')), variant(ctx.primary, 'grant_update_no_checks', update('bench.grants_without_checks'))], 1, 4)
  const withChecks = find(probe, 'grant_update_checks', 1)
  const without = find(probe, 'grant_update_no_checks', 1)
  return { perCharge, grants, ratio: withChecks.tps / without.tps, withUs: withChecks.mean_ms * 1000, withoutUs: without.mean_ms * 1000 }
}

/** The hot user's account in the client-side pattern's tables (its scripts name it as :account). */
export async function hotAccount(ctx: Context): Promise<string> {
  const { rows } = await ctx.db.query<{ id: string }>('select id from bench.mcp_user_accounts where user_id = ' + `${userIdSql('$1::int')}::uuid`, [special.hot])
  return rows[0]!.id
}

export async function hotOrg(ctx: Context): Promise<ScenarioOutput> {
  const account = await hotAccount(ctx)
  const variants = [
    variant(ctx.primary, 'ours_hot', oursScript('hot')),
    variant(ctx.primary, 'floor_hot', floorScript('hot')),
    variant(ctx.primary, 'client_lock_hot', clientLockScript, { account }),
  ]
  await warmUp(variants)
  const before = await ctx.db.query<{ calls: string; balance: string }>('select total_tool_calls as calls, credits_balance as balance from bench.mcp_user_accounts where id = $1', [account])
  await settle(ctx.admin)
  const measurements: Measurement[] = []
  for (const clients of settings.clients) measurements.push(...(await sideBySide(variants, clients, settings.seconds)))

  // The client-side pattern must have stayed consistent (its row lock serialises it).
  const after = await ctx.db.query<{ calls: string; balance: string }>('select total_tool_calls as calls, credits_balance as balance from bench.mcp_user_accounts where id = $1', [account])
  const seedCalls = Number(after.rows[0]!.calls) - Number(before.rows[0]!.calls)
  const seedSpent = Number(before.rows[0]!.balance) - Number(after.rows[0]!.balance)

  // A bare round trip on this loopback, to weigh the client-side pattern's four round trips under its lock.
  const roundTrip = await pgbench(ctx.primary, { name: 'round_trip', script: 'select 1;', clients: 1, seconds: 2 })
  const rttMs = [...roundTrip.latencies_ms].sort((a, b) => a - b)[Math.floor(roundTrip.latencies_ms.length / 2)] ?? Number.NaN

  const worst = worstRatio(measurements, 'ours_hot', 'floor_hot', settings.clients)
  const at8 = find(measurements, 'ours_hot', 8)
  const at32 = find(measurements, 'ours_hot', 32)
  const collapse = at32.tps / at8.tps
  const floorCollapse = find(measurements, 'floor_hot', 32).tps / find(measurements, 'floor_hot', 8).tps
  const seedCollapse = find(measurements, 'client_lock_hot', 32).tps / find(measurements, 'client_lock_hot', 8).tps
  const ours1 = find(measurements, 'ours_hot', 1)
  const seedOne = find(measurements, 'client_lock_hot', 1)
  const contended = settings.contendedClients
  const vsSeed = worstRatio(measurements, 'ours_hot', 'client_lock_hot', contended)
  const seed1 = find(measurements, 'ours_hot', 1).tps / find(measurements, 'client_lock_hot', 1).tps
  const rowsOut: Row[] = [
    {
      scenario: '2a. consume_credits, one hot org vs hot floor',
      target: 'ours ≥ 0.7× floor tps (worst of 1/8/32 clients)',
      ratio: worst.ratio,
      measured: `${ratioText(worst.ratio)} (${perClients(measurements, 'ours_hot', 'floor_hot', settings.clients)})`,
      status: pass(worst.ratio >= 0.7),
      absolute: `at ${worst.clients}c: ours ${tpsText(find(measurements, 'ours_hot', worst.clients))}; floor ${tpsText(find(measurements, 'floor_hot', worst.clients))}`,
      note: worst.ratio < 0.7 ? `one org serialises on its balance row lock, held from the lock to COMMIT (the commit's WAL flush included), so hot throughput is 1 / (work under the lock + commit): the money writes of scenario 1's charge (re-probe, head grant, balance and ledger, request row) all run under it, the floor's two writes alike` : undefined,
    },
    {
      scenario: '2b. hot org: no collapse at 32 clients',
      target: '32-client tps ≥ 0.6× 8-client tps',
      ratio: collapse,
      measured: ratioText(collapse),
      status: pass(collapse >= 0.6),
      absolute: `8c ${tpsText(at8)}; 32c ${tpsText(at32)}. Same 32c/8c ratio: floor ${ratioText(floorCollapse)}, client-side ${ratioText(seedCollapse)}`,
      note:
        collapse >= 0.6
          ? undefined
          : floorCollapse < 0.6
            ? `the bare floor drops alike (${ratioText(floorCollapse)}): 32 backends queueing on one row lock on ${os.cpus().length} cores is PostgreSQL's own behaviour here, not the charge path's`
            : `ours drops while the floor holds (${ratioText(floorCollapse)}): likely the longer lock hold of a charge (scenario 1's per-charge cost, all under the lock) with 32 waiters queued behind it on ${os.cpus().length} cores`,
    },
    {
      scenario: '3. hot org: ours vs the client-side locking pattern (BEGIN; SELECT FOR UPDATE; UPDATE; INSERT; INSERT; COMMIT)',
      target: 'ours ≥ 1.5× client-side pattern tps (worst of 8/32 clients, where the lock is contended)',
      ratio: vsSeed.ratio,
      measured: `${ratioText(vsSeed.ratio)} (${perClients(measurements, 'ours_hot', 'client_lock_hot', contended)}; 1c ${ratioText(seed1)} uncontended, for information)`,
      status: pass(vsSeed.ratio >= 1.5),
      note:
        vsSeed.ratio >= 1.5
          ? undefined
          : `a loopback round trip costs ${rttMs.toFixed(3)} ms here (p50 of select 1), so the four round trips the client-side pattern makes under its lock add only ~${(4 * rttMs).toFixed(2)} ms to a hold of four small statements, while ours holds it for the money writes of a charge (scenario 1's per-charge cost less what runs before the lock); uncontended, one client-side transaction takes ${seedOne.p50_ms.toFixed(2)} ms p50 and one consume_credits ${ours1.p50_ms.toFixed(2)} ms. Scenario 3b puts a network's round trip between client and database, which lengthens the client-side pattern's hold and not ours`,
      absolute: `at ${vsSeed.clients}c: ours ${tpsText(find(measurements, 'ours_hot', vsSeed.clients))}; client-side ${tpsText(find(measurements, 'client_lock_hot', vsSeed.clients))}`,
    },
  ]
  return { rows: rowsOut, measurements, details: { round_trip_p50_ms: rttMs, client_lock_calls: seedCalls, client_lock_credits_spent: seedSpent, client_lock_consistent: seedCalls === seedSpent } }
}
