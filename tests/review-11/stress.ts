// Review attack: a randomized storm of every money path on a few orgs with scoped credits and
// overage, over many connections, then the books must reconcile and no undocumented error may
// have surfaced. Run against a dev stack:
//   set -a; . .tollgate/<name>/.env; set +a; npx tsx tests/review-11/stress.ts [seconds] [workers]
// Code under test is reached as the `postgres` role calling the RPCs directly (service-side
// RPCs) or with request.jwt.claims set (user RPCs): the money rules are the same as through
// PostgREST. Exit code 1 on any finding.
import pg from 'pg'

const url = process.env.SUPABASE_DB_URL
if (!url) throw new Error('SUPABASE_DB_URL not set')
const seconds = Number(process.argv[2] ?? 30)
const workers = Number(process.argv[3] ?? 12)
const GRANT_WEIGHT = Number(process.argv[4] ?? 4)
const pool = new pg.Pool({ connectionString: url, max: workers + 2 })
const rid = () => crypto.randomUUID().replaceAll('-', '').slice(0, 12)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!
const int = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1))

interface Org { id: string; user: string; limits: Set<number>; requests: string[]; grants: string[]; pendings: string[]; refs: string[] }

const errors = new Map<string, number>()
const findings: string[] = []
let catalog = new Set<string>()

async function q(sql: string, params: unknown[] = [], claims?: string): Promise<any> {
  const client = await pool.connect()
  try {
    if (claims) {
      await client.query('begin')
      await client.query("select set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)", [claims])
      const r = await client.query(sql, params)
      await client.query('commit')
      return r.rows[0]
    }
    const r = await client.query(sql, params)
    return r.rows[0]
  } catch (e: any) {
    if (claims) await client.query('rollback').catch(() => {})
    const key = `${e.code} ${e.message}`
    errors.set(key, (errors.get(key) ?? 0) + 1)
    const documented = catalog.has(e.message)
    if (!documented || e.code === 'XX000' || e.code === '40P01' || e.code === '23514' || e.code === '23505') {
      findings.push(`undocumented/internal error ${e.code} ${e.message} ${e.detail ?? ''} on: ${sql} ${JSON.stringify(params)}`)
    }
    return undefined
  } finally {
    client.release()
  }
}

async function main() {
  catalog = new Set((await pool.query('select key from private.error_catalog')).rows.map((r: any) => r.key))
  const ops = { a: `r11s_a_${rid()}`, b: `r11s_b_${rid()}`, c: `r11s_c_${rid()}`, free: `r11s_f_${rid()}` }
  await pool.query(`insert into public.credit_prices (operation, credits) values ($1, 10), ($2, 7), ($3, 3), ($4, 0)`, [ops.a, ops.b, ops.c, ops.free])
  const opList = [ops.a, ops.b, ops.c, ops.free]
  const scopes: Array<string[] | null> = [null, null, [ops.a], [ops.b, ops.c], [ops.c, ops.a, ops.a], [ops.free]]
  const orgs: Org[] = []
  for (let i = 0; i < 3; i++) {
    const user = crypto.randomUUID()
    await pool.query(`insert into auth.users (id, aud, role, email, raw_user_meta_data) values ($1, 'authenticated', 'authenticated', $2, '{}')`, [user, `r11-${user.slice(0, 8)}@example.test`])
    const org = (await pool.query('select id from public.orgs where personal_user_id = $1', [user])).rows[0].id
    orgs.push({ id: org, user, limits: new Set([0]), requests: [], grants: [], pendings: [], refs: [] })
  }
  const claims = (o: Org) => JSON.stringify({ sub: o.user, role: 'authenticated' })

  const actions: Array<[number, (o: Org) => Promise<void>]> = [
    [14, async (o) => {
      const id = Math.random() < 0.1 && o.requests.length ? pick(o.requests) : rid()
      const r = await q('select public.consume_credits($1, $2, $3, $4) as r', [pick(opList), id, int(1, 5), o.id], claims(o))
      if (r) o.requests.push(id)
    }],
    [10, async (o) => {
      const id = rid()
      const r = await q('select public.reserve_credits($1, null, $2, $3, $4, $5) as r', [o.id, pick(opList), id, int(1, 5), int(1, 4)])
      if (r) o.requests.push(id)
    }],
    [8, async (o) => {
      if (!o.requests.length) return
      const qty = Math.random() < 0.3 ? null : int(0, 5)
      await q('select public.capture_credits($1, $2, $3) as r', [o.id, pick(o.requests), qty])
    }],
    [5, async (o) => { if (o.requests.length) await q('select public.release_credits($1, $2) as r', [o.id, pick(o.requests)]) }],
    [6, async (o) => { if (o.requests.length) await q('select public.refund_credits($1, $2, $3) as r', [o.id, pick(o.requests), 'storm']) }],
    [GRANT_WEIGHT, async (o) => {
      const pending = Math.random() < 0.2
      const scheduled = !pending && Math.random() < 0.2
      const ref = Math.random() < 0.1 && o.refs.length ? pick(o.refs) : rid()
      const expires = Math.random() < 0.5 ? new Date(Date.now() + int(1500, 6000)).toISOString() : null
      const effective = scheduled ? new Date(Date.now() + int(300, 2500)).toISOString() : null
      const r = await q('select public.grant_credits($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) as r',
        [o.id, int(1, 60), pick(['purchase', 'promotion']), ref, expires, '{}', pick([0, 50, 100]), pending, effective, pick(scopes)])
      if (r) {
        o.refs.push(ref)
        o.grants.push(r.r.grant_id)
        if (pending) o.pendings.push(`${r.r.source}|${ref}`)
      }
    }],
    [3, async (o) => {
      if (!o.pendings.length) return
      const [src, ref] = pick(o.pendings).split('|')
      await q(`select public.${Math.random() < 0.8 ? 'activate' : 'void'}_credit_grant($1, $2, $3) as r`, [o.id, src, ref])
    }],
    [5, async (o) => {
      const grant = Math.random() < 0.4 && o.grants.length ? pick(o.grants) : null
      await q('select public.revoke_credits($1, $2, $3, $4, $5) as r', [o.id, int(1, 40), 'storm', rid(), grant])
    }],
    [3, async (o) => {
      const limit = pick([0, 20, 50, 100, 200])
      o.limits.add(limit)
      await q('select public.set_overage_limit($1, $2) as r', [o.id, limit])
    }],
    [5, async (o) => {
      const items = Array.from({ length: int(1, 4) }, () => ({ operation: pick(opList), request_id: rid(), quantity: int(1, 4) }))
      const r = await q('select public.consume_credits_batch($1, $2, $3) as r', [JSON.stringify(items), o.id, Math.random() < 0.5], claims(o))
      if (r) for (const it of items) o.requests.push(it.request_id)
    }],
    [2, async () => { await q('select public.expire_credit_grants() as r') }],
    [2, async () => { await q('select public.expire_stale_holds() as r') }],
    [2, async () => { await q('select public.activate_scheduled_grants() as r') }],
    [1, async () => { await q('select public.refresh_orgs_has_usage_credits() as r') }],
    [2, async (o) => { await q('select public.get_credit_balance($1) as r', [o.id], claims(o)) }],
  ]
  const total = actions.reduce((s, [w]) => s + w, 0)
  const choose = () => {
    let x = Math.random() * total
    for (const [w, f] of actions) { if ((x -= w) < 0) return f }
    return actions[0]![1]
  }
  const deadline = Date.now() + seconds * 1000
  let count = 0
  await Promise.all(Array.from({ length: workers }, async () => {
    while (Date.now() < deadline) { await choose()(pick(orgs)); count++ }
  }))
  await new Promise((r) => setTimeout(r, 6500))
  await q('select public.activate_scheduled_grants()')
  await q('select public.expire_stale_holds()')
  await q('select public.expire_credit_grants()')

  const issues = Number((await pool.query('select public.reconcile_credits() as n')).rows[0].n)
  const ids = orgs.map((o) => o.id)
  const rows = (await pool.query(
    `select i.org_id, i.check_name, i.expected, i.actual, i.detail from public.credit_reconciliation_issues i
     where i.run_id = (select max(id) from public.credit_reconciliation_runs) and i.org_id = any($1) and i.check_name <> 'payment_exception'`, [ids])).rows
  for (const r of rows) findings.push(`reconcile: ${JSON.stringify(r)}`)
  if (issues > rows.length) console.log(`note: ${issues - rows.length} reconcile issues on other orgs`)
  for (const o of orgs) {
    const max = Math.max(...o.limits)
    const over = (await pool.query(
      `select count(*)::int as n, max(overage_after)::int as worst from public.credit_ledger
       where org_id = $1 and overage_delta > 0 and overage_after > $2`, [o.id, max])).rows[0]
    if (over.n > 0) findings.push(`org ${o.id}: ${over.n} debt entries above the highest limit ever set (${max}): worst ${over.worst}`)
    const b = (await pool.query('select b.*, o.has_usage_credits from public.credit_balances b join public.orgs o on o.id = b.org_id where b.org_id = $1', [o.id])).rows[0]
    console.log(`org ${o.id}: available ${b.available} overage ${b.overage} limit ${b.overage_limit} held ${b.held} flag ${b.has_usage_credits}`)
  }
  const debt = (await pool.query(`select count(*)::int as n, coalesce(max(overage_after), 0)::int as worst from public.credit_ledger where org_id = any($1) and overage_delta <> 0`, [ids])).rows[0]
  console.log(`${debt.n} ledger entries moved the debt (max debt ${debt.worst})`)
  console.log(`${count} calls; errors by kind:`)
  for (const [k, n] of [...errors].sort((a, b) => b[1] - a[1])) console.log(`  ${n}× ${k}`)
  console.log(findings.length ? `FINDINGS (${findings.length}):\n${[...new Set(findings)].slice(0, 40).join('\n')}` : 'no findings')
  await pool.end()
  process.exit(findings.length ? 1 : 0)
}

main().catch(async (e) => { console.error(e); await pool.end(); process.exit(2) })
