// Review attack: every money call checked against an independent model of the documented rules,
// decided on the same locked state. Each call runs in a transaction that first locks the org's
// balance row (so nothing moves between the model's reading and the call), then calls the RPC,
// then compares, then commits. Several workers on a few orgs, so the state is the one
// concurrency produced.
//   set -a; . .tollgate/<name>/.env; set +a; npx tsx tests/review-11/oracle.ts [seconds] [workers]
// Rules modelled (README "Scoped credits", "Overage"):
//   - a charge of cost c for operation X succeeds iff c = 0 or c <= covering(X) - overage + limit,
//     where covering(X) = remaining of active, unexpired grants whose operations are null or hold X;
//   - its debt part is max(c - covering(X), 0); its allocations name only covering grants, in
//     burn-down order (priority, expires_at, created_at, id), the debt piece last;
//   - a credited unscoped grant repays min(overage, amount); a scoped one repays nothing;
//   - after every call the gate flag equals "some operation has covering - overage + limit > 0"
//     (computed by brute force over the operations of the org's grants plus one uncovered one).
import pg from 'pg'

const url = process.env.SUPABASE_DB_URL
if (!url) throw new Error('SUPABASE_DB_URL not set')
const seconds = Number(process.argv[2] ?? 20)
const workers = Number(process.argv[3] ?? 6)
const pool = new pg.Pool({ connectionString: url, max: workers + 2 })
const rid = () => crypto.randomUUID().replaceAll('-', '').slice(0, 12)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!
const int = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1))
const findings: string[] = []
let calls = 0
let checkedCharges = 0
let debtCharges = 0

interface Org { id: string; user: string; requests: string[]; refs: string[] }

type Client = pg.PoolClient

async function model(c: Client, org: string, op: string | null) {
  const b = (await c.query('select available::bigint, overage::bigint, overage_limit::bigint, held::bigint from public.credit_balances where org_id = $1', [org])).rows[0]
  const grants = (await c.query(
    `select id, remaining::bigint, operations, priority, expires_at, created_at from public.credit_grants
     where org_id = $1 and status = 'active' and remaining > 0 and (expires_at is null or expires_at > now())
     order by priority, expires_at, created_at, id`, [org])).rows
  const covering = op ? grants.filter((g: any) => g.operations === null || g.operations.includes(op)) : grants
  return {
    overage: Number(b.overage), limit: Number(b.overage_limit), available: Number(b.available),
    covering: covering.reduce((s: number, g: any) => s + Number(g.remaining), 0),
    order: covering.map((g: any) => g.id as string),
  }
}

async function flagModel(c: Client, org: string) {
  const b = (await c.query('select b.overage::bigint, b.overage_limit::bigint, o.has_usage_credits from public.credit_balances b join public.orgs o on o.id = b.org_id where b.org_id = $1', [org])).rows[0]
  const grants = (await c.query(`select remaining::bigint, operations from public.credit_grants where org_id = $1 and status = 'active' and remaining > 0`, [org])).rows
  const ops = new Set<string>(['__uncovered__'])
  for (const g of grants) for (const o of g.operations ?? []) ops.add(o)
  let can = false
  for (const o of ops) {
    const cov = grants.filter((g: any) => g.operations === null || g.operations.includes(o)).reduce((s: number, g: any) => s + Number(g.remaining), 0)
    if (cov - Number(b.overage) + Number(b.overage_limit) > 0) can = true
  }
  return { flag: b.has_usage_credits as boolean, can }
}

async function inTx(org: Org, what: string, body: (c: Client) => Promise<void>) {
  const c = await pool.connect()
  try {
    await c.query('begin')
    await c.query('select 1 from public.credit_balances where org_id = $1 for update', [org.id])
    await c.query('savepoint call')
    await body(c)
    const f = await flagModel(c, org.id)
    if (f.flag !== f.can) findings.push(`${what}: flag ${f.flag} but the rule says ${f.can} (org ${org.id})`)
    await c.query('commit')
  } catch (e: any) {
    await c.query('rollback').catch(() => {})
    findings.push(`${what}: unexpected ${e.code} ${e.message} ${e.detail ?? ''}`)
  } finally {
    c.release()
    calls++
  }
}

/** Runs the RPC inside the caller's transaction; a documented refusal rolls back to the savepoint. */
async function call(c: Client, sql: string, params: unknown[], claims?: string): Promise<{ data?: any; code?: string; key?: string; detail?: any }> {
  try {
    if (claims) await c.query("select set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)", [claims])
    const r = await c.query(sql, params)
    if (claims) await c.query('reset role')
    return { data: r.rows[0]?.r }
  } catch (e: any) {
    await c.query('rollback to savepoint call')
    let detail: any
    try { detail = JSON.parse(e.detail) } catch { detail = e.detail }
    return { code: e.code, key: e.message, detail }
  }
}

async function main() {
  const ops = { a: `r11o_a_${rid()}`, b: `r11o_b_${rid()}`, c: `r11o_c_${rid()}`, f: `r11o_f_${rid()}` }
  const price: Record<string, number> = { [ops.a]: 10, [ops.b]: 7, [ops.c]: 3, [ops.f]: 0 }
  await pool.query(`insert into public.credit_prices (operation, credits) values ($1, 10), ($2, 7), ($3, 3), ($4, 0)`, [ops.a, ops.b, ops.c, ops.f])
  const opList = Object.keys(price)
  const scopes: Array<string[] | null> = [null, null, [ops.a], [ops.b, ops.c], [ops.c, ops.a], [ops.f]]
  const orgs: Org[] = []
  for (let i = 0; i < 3; i++) {
    const user = crypto.randomUUID()
    await pool.query(`insert into auth.users (id, aud, role, email, raw_user_meta_data) values ($1, 'authenticated', 'authenticated', $2, '{}')`, [user, `r11o-${user.slice(0, 8)}@example.test`])
    const org = (await pool.query('select id from public.orgs where personal_user_id = $1', [user])).rows[0].id
    orgs.push({ id: org, user, requests: [], refs: [] })
  }
  const claims = (o: Org) => JSON.stringify({ sub: o.user, role: 'authenticated' })

  const checkCharge = async (c: Client, o: Org, kind: 'consume' | 'hold') => {
    const op = pick(opList)
    const qty = int(1, 6)
    const id = rid()
    await inTx(o, `${kind} ${op}×${qty}`, async (cc) => {
      const m = await model(cc, o.id, op)
      const cost = price[op]! * qty
      const allowed = cost === 0 || cost <= m.covering - m.overage + m.limit
      const r = kind === 'consume'
        ? await call(cc, 'select public.consume_credits($1, $2, $3, $4) as r', [op, id, qty, o.id], claims(o))
        : await call(cc, 'select public.reserve_credits($1, null, $2, $3, $4, $5) as r', [o.id, op, id, qty, int(1, 3)])
      const what = `${kind} ${op}×${qty} (cost ${cost}, covering ${m.covering}, overage ${m.overage}, limit ${m.limit})`
      if (allowed !== (r.data !== undefined)) {
        findings.push(`${what}: model says ${allowed ? 'allowed' : 'refused'}, got ${r.data ? 'charged' : `${r.code} ${r.key} ${JSON.stringify(r.detail)}`}`)
        return
      }
      if (!r.data) {
        if (r.key !== 'insufficient_credits') findings.push(`${what}: refused with ${r.code} ${r.key}`)
        else if (r.detail.available !== m.covering - m.overage) findings.push(`${what}: detail.available ${r.detail.available}, expected ${m.covering - m.overage}`)
        return
      }
      checkedCharges++
      o.requests.push(id)
      const debt = Math.max(cost - m.covering, 0)
      if (debt > 0) debtCharges++
      if ((r.data.overage ?? 0) !== debt) findings.push(`${what}: answer overage ${r.data.overage}, expected ${debt}`)
      const alloc = (await cc.query('select allocations from public.credit_requests where org_id = $1 and request_id = $2', [o.id, id])).rows[0].allocations as Array<{ grant_id: string | null; amount: number }>
      const grantIds = alloc.filter((p) => p.grant_id !== null).map((p) => p.grant_id!)
      const expectedOrder = m.order.slice(0, grantIds.length)
      if (JSON.stringify(grantIds) !== JSON.stringify(expectedOrder)) findings.push(`${what}: allocations ${JSON.stringify(alloc)} not the burn-down order ${JSON.stringify(m.order)}`)
      const last = alloc[alloc.length - 1]
      if (debt > 0 && (last?.grant_id !== null || last.amount !== debt)) findings.push(`${what}: debt piece ${JSON.stringify(alloc)}`)
      const after = await model(cc, o.id, op)
      if (after.overage !== m.overage + debt) findings.push(`${what}: overage ${after.overage}, expected ${m.overage + debt}`)
    })
  }

  const actions: Array<[number, (o: Org) => Promise<void>]> = [
    [12, async (o) => checkCharge(undefined as any, o, 'consume')],
    [8, async (o) => checkCharge(undefined as any, o, 'hold')],
    [8, async (o) => {
      if (!o.requests.length) return
      const id = pick(o.requests)
      const fn = pick(['capture', 'capture_part', 'release', 'refund'])
      await inTx(o, `${fn} ${id}`, async (c) => {
        const before = await model(c, o.id, null)
        const req = (await c.query('select allocations, status, reserved, charged from public.credit_requests where org_id = $1 and request_id = $2', [o.id, id])).rows[0]
        const r = fn === 'capture' ? await call(c, 'select public.capture_credits($1, $2) as r', [o.id, id])
          : fn === 'capture_part' ? await call(c, 'select public.capture_credits($1, $2, $3) as r', [o.id, id, int(0, 3)])
          : fn === 'release' ? await call(c, 'select public.release_credits($1, $2) as r', [o.id, id])
          : await call(c, 'select public.refund_credits($1, $2, $3) as r', [o.id, id, 'oracle'])
        if (!r.data || r.data.replayed) return
        // Giving back lowers the debt by at most the request's debt piece, never raises it.
        const after = await model(c, o.id, null)
        const piece = (req.allocations as Array<{ grant_id: string | null; amount: number }>).find((p) => p.grant_id === null)?.amount ?? 0
        if (after.overage > before.overage || before.overage - after.overage > piece) findings.push(`${fn} ${id}: debt ${before.overage} -> ${after.overage} with a debt piece of ${piece}`)
      })
    }],
    [5, async (o) => {
      const scope = pick(scopes)
      const pending = Math.random() < 0.15
      const ref = rid()
      const expires = Math.random() < 0.5 ? new Date(Date.now() + int(1000, 5000)).toISOString() : null
      await inTx(o, `grant ${JSON.stringify(scope)}`, async (c) => {
        const m = await model(c, o.id, null)
        const amount = int(1, 40)
        const r = await call(c, 'select public.grant_credits($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) as r',
          [o.id, amount, 'promotion', ref, expires, '{}', pick([0, 100]), pending, null, scope])
        if (!r.data) { findings.push(`grant refused ${r.code} ${r.key}`); return }
        const repaid = pending || scope !== null ? 0 : Math.min(m.overage, amount)
        if (r.data.overage_repaid !== repaid) findings.push(`grant ${amount} ${JSON.stringify(scope)} with debt ${m.overage}: repaid ${r.data.overage_repaid}, expected ${repaid}`)
        if (pending) o.refs.push(ref)
      })
    }],
    [2, async (o) => {
      if (!o.refs.length) return
      const ref = o.refs.pop()!
      await inTx(o, `activate ${ref}`, async (c) => {
        const m = await model(c, o.id, null)
        const g = (await c.query(`select amount::bigint, operations, expires_at <= now() as due from public.credit_grants where org_id = $1 and external_ref = $2`, [o.id, ref])).rows[0]
        const r = await call(c, 'select public.activate_credit_grant($1, $2, $3) as r', [o.id, 'promotion', ref])
        if (!r.data) return
        const repaid = g.operations !== null ? 0 : Math.min(m.overage, Number(g.amount))
        if (r.data.overage_repaid !== repaid) findings.push(`activate with debt ${m.overage}: repaid ${r.data.overage_repaid}, expected ${repaid}`)
      })
    }],
    [3, async (o) => {
      await inTx(o, 'revoke', async (c) => {
        const m = await model(c, o.id, null)
        const amount = int(1, 40)
        const r = await call(c, 'select public.revoke_credits($1, $2, $3, $4) as r', [o.id, amount, 'oracle', rid()])
        if (!r.data) return
        const fromGrants = Math.min(amount, m.covering)
        const debt = Math.min(amount - fromGrants, Math.max(m.limit - m.overage, 0))
        if (r.data.revoked !== fromGrants + debt || (r.data.overage ?? 0) !== debt) findings.push(`revoke ${amount} (grants ${m.covering}, overage ${m.overage}, limit ${m.limit}): ${JSON.stringify(r.data)}`)
      })
    }],
    [2, async (o) => {
      await inTx(o, 'set_overage_limit', async (c) => {
        const limit = pick([0, 10, 30, 60, 120])
        const r = await call(c, 'select public.set_overage_limit($1, $2) as r', [o.id, limit])
        if (!r.data || r.data.overage_limit !== limit) findings.push(`set_overage_limit ${limit}: ${JSON.stringify(r)}`)
      })
    }],
    // The cron jobs lock several orgs in org order: called on their own (a worker's pre-lock on
    // one org would invert that order).
    [2, async () => { await pool.query('select public.expire_credit_grants()').catch((e) => findings.push(`expire_credit_grants: ${e.code} ${e.message}`)) }],
    [2, async () => { await pool.query('select public.expire_stale_holds()').catch((e) => findings.push(`expire_stale_holds: ${e.code} ${e.message}`)) }],
    [1, async () => { await pool.query('select public.refresh_orgs_has_usage_credits()').catch((e) => findings.push(`refresh: ${e.code} ${e.message}`)) }],
  ]
  const total = actions.reduce((s, [w]) => s + w, 0)
  const choose = () => { let x = Math.random() * total; for (const [w, f] of actions) { if ((x -= w) < 0) return f } return actions[0]![1] }
  const deadline = Date.now() + seconds * 1000
  await Promise.all(Array.from({ length: workers }, async () => { while (Date.now() < deadline) await choose()(pick(orgs)) }))

  const n = Number((await pool.query('select public.reconcile_credits() as n')).rows[0].n)
  const rows = (await pool.query(`select org_id, check_name, expected, actual, detail from public.credit_reconciliation_issues
    where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id = any($1) and check_name <> 'payment_exception'`, [orgs.map((o) => o.id)])).rows
  for (const r of rows) findings.push(`reconcile: ${JSON.stringify(r)}`)
  console.log(`${calls} calls, ${checkedCharges} charges checked (${debtCharges} into debt); reconcile issues overall ${n}`)
  const unique = [...new Set(findings)]
  console.log(unique.length ? `FINDINGS (${unique.length}):\n${unique.slice(0, 30).join('\n')}` : 'no findings')
  await pool.end()
  process.exit(unique.length ? 1 : 0)
}

main().catch(async (e) => { console.error(e); await pool.end(); process.exit(2) })
