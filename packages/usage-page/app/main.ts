// The usage page: what an org's members see of their credits. One state object, rendered with
// lit-html (escapes every value; no framework); every read goes through RPCs and RLS as the
// signed-in user, through @tollgate/client.
import { html, nothing, render, type TemplateResult } from 'lit-html'
import {
  createTollgateClient,
  TollgateError,
  type Balance,
  type DailyUsage,
  type Grant,
  type LedgerEntry,
  type Org,
  type TollgateClient,
  type UsageStats,
} from '@tollgate/client'
import type { RealtimeChannel } from '@supabase/supabase-js'
import { currentSession, onAuthChange, sendMagicLink, signInWithPassword, signInWithToken, type SignedIn } from './auth.ts'
import { drawUsageChart, operationsOf, periodDays, type Measure } from './chart.ts'
import { loadConfig, type PageConfig } from './config.ts'
import * as fmt from './format.ts'
import './styles.css'

interface AutoTopup {
  enabled: boolean
  threshold: number | null
  amount: number | null
  monthly_cap: number | null
  payment_method_on_file: boolean
}

/** `get_alert_webhook`: where the org's low-balance alerts go (never the signing secret). */
interface AlertWebhook {
  url: string | null
  updated_at: string | null
}

interface OrgData {
  balance: Balance
  stats: UsageStats
  daily: DailyUsage
  grants: Grant[]
  ledger: LedgerEntry[]
  ledgerNext: number | null
  /** Cursors of the pages before this one (`null` = the newest page). */
  ledgerBack: Array<number | null>
  ledgerBefore: number | null
  autoTopup: AutoTopup | null
  webhook: AlertWebhook | null
}

interface State {
  config: PageConfig
  session: SignedIn | null
  tollgate: TollgateClient | null
  orgs: Org[]
  orgId: string | null
  data: OrgData | null
  /** A page-level problem (not a member, the API is down): shown instead of the data. */
  blocked: string | null
  error: string | null
  notice: string | null
  measure: Measure
  updatedAt: Date | null
  busy: Set<string>
  webhookSecret: string | null
  live: 'polling' | 'realtime'
}

const root = document.getElementById('app')!
const ledgerPageSize = 10
let state: State
let timer: ReturnType<typeof setInterval> | undefined
let channel: RealtimeChannel | undefined

const errorText = (error: unknown): string => {
  if (error instanceof TollgateError) {
    if (error.key === 'not_a_member') return 'You are not a member of this organisation.'
    if (error.key === 'forbidden') return 'Only owners and admins of the organisation may do this.'
    return `${error.key}: ${error.hint ?? error.message}`
  }
  return error instanceof Error ? error.message : String(error)
}

function update(patch: Partial<State>): void {
  state = { ...state, ...patch }
  paint()
}

async function withBusy<T>(what: string, work: () => Promise<T>): Promise<T | undefined> {
  state.busy.add(what)
  paint()
  try {
    return await work()
  } catch (error) {
    update({ error: errorText(error) })
    return undefined
  } finally {
    state.busy.delete(what)
    paint()
  }
}

// Loading -----------------------------------------------------------------------------------------

const roleIn = (orgId: string | null): Org['role'] | null => state.orgs.find((o) => o.orgId === orgId)?.role ?? null
const isAdmin = (): boolean => ['owner', 'admin'].includes(roleIn(state.orgId) ?? '')

async function loadOrg(orgId: string, ledgerBefore: number | null = null, ledgerBack: Array<number | null> = []): Promise<void> {
  const t = state.tollgate!
  const supabase = state.session!.supabase
  // The balance first: for an org the caller does not belong to, the server's not_a_member is
  // the answer, and nothing else is asked.
  const balance = await t.balance(orgId)
  const admin = ['owner', 'admin'].includes(roleIn(orgId) ?? '')
  const [stats, daily, grants, page, autoTopup, webhook] = await Promise.all([
    t.usageStats({ days: 30, orgId }),
    t.dailyUsage({ days: 30, orgId }),
    t.grants({ orgId }),
    t.ledger({ orgId, limit: ledgerPageSize, before: ledgerBefore }),
    admin
      ? supabase.rpc('get_auto_topup', { p_org_id: orgId }).then(({ data, error }) => {
          if (error) throw error
          return data as AutoTopup
        })
      : Promise.resolve(null),
    admin
      ? supabase.rpc('get_alert_webhook', { p_org_id: orgId }).then(({ data, error }) => {
          if (error) throw error
          return data as AlertWebhook
        })
      : Promise.resolve(null),
  ])
  update({
    data: { balance, stats, daily, grants, ledger: page.entries, ledgerNext: page.nextCursor, ledgerBack, ledgerBefore, autoTopup, webhook },
    updatedAt: new Date(),
    blocked: null,
  })
}

async function selectOrg(orgId: string): Promise<void> {
  const url = new URL(location.href)
  url.searchParams.set('org', orgId)
  history.replaceState(null, '', url)
  update({ orgId, data: null, blocked: null, error: null, webhookSecret: null })
  try {
    await loadOrg(orgId)
  } catch (error) {
    update({ blocked: errorText(error), data: null })
  }
  subscribe()
}

/** Polls the balance; when it moved, everything else is read again (a charge landed). */
async function refreshIfChanged(): Promise<void> {
  const { tollgate, orgId, data } = state
  if (!tollgate || !orgId || !data || document.hidden || state.busy.size > 0) return
  try {
    const balance = await tollgate.balance(orgId)
    if (balance.available !== data.balance.available || balance.held !== data.balance.held) {
      await loadOrg(orgId, data.ledgerBefore, data.ledgerBack)
    } else {
      update({ updatedAt: new Date() })
    }
  } catch (error) {
    update({ error: errorText(error) })
  }
}

/**
 * Live updates. The local stack has no Realtime server, so the page polls the balance (one
 * O(1) RPC) every pollSeconds. With `realtime: true` in config.json (hosted Supabase, balance
 * table in the supabase_realtime publication), it listens to the org's balance row instead and
 * polls only every minute as a safety net.
 */
function subscribe(): void {
  if (timer) clearInterval(timer)
  void channel?.unsubscribe()
  channel = undefined
  const poll = (seconds: number) => (timer = setInterval(() => void refreshIfChanged(), seconds * 1000))
  const seconds = state.config.pollSeconds ?? 5
  if (state.config.realtime && state.orgId && state.session) {
    channel = state.session.supabase
      .channel(`balance:${state.orgId}`)
      .on('postgres_changes', { event: 'UPDATE', schema: 'public', table: 'credit_balances', filter: `org_id=eq.${state.orgId}` }, () => void refreshIfChanged())
      .subscribe((status) => {
        if (status === 'SUBSCRIBED') {
          if (timer) clearInterval(timer)
          poll(60)
          update({ live: 'realtime' })
        } else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') {
          if (timer) clearInterval(timer)
          poll(seconds)
          update({ live: 'polling' })
        }
      })
  }
  poll(seconds)
}

async function start(session: SignedIn): Promise<void> {
  const tollgate = createTollgateClient(session.supabase)
  update({ session, tollgate, error: null, notice: checkoutNotice() })
  try {
    const orgs = await tollgate.orgs()
    const asked = new URL(location.href).searchParams.get('org')
    update({ orgs })
    await selectOrg(asked ?? orgs[0]?.orgId ?? '')
  } catch (error) {
    update({ blocked: errorText(error) })
  }
}

function checkoutNotice(): string | null {
  const outcome = new URL(location.href).searchParams.get('checkout')
  if (outcome === 'success') return 'Payment received. The credits appear here as soon as Stripe confirms it.'
  if (outcome === 'cancelled') return 'Checkout cancelled: nothing was charged.'
  return null
}

// Actions -------------------------------------------------------------------------------------------

const formValue = (form: HTMLFormElement, name: string): string => String(new FormData(form).get(name) ?? '').trim()
const wholeOrNull = (value: string): number | null => (value === '' ? null : Number(value))

async function onBuy(event: SubmitEvent): Promise<void> {
  event.preventDefault()
  const credits = Number(formValue(event.target as HTMLFormElement, 'credits'))
  const { orgId, session } = state
  await withBusy('buy', async () => {
    const { data, error } = await session!.supabase.functions.invoke('credits-checkout', {
      body: { org_id: orgId, credits },
      headers: { 'idempotency-key': crypto.randomUUID() },
    })
    if (error) {
      const context = (error as { context?: Response }).context
      const body = context ? await context.json().catch(() => null) : null
      throw new Error(body?.message ? `${body.error}: ${body.message}` : error.message)
    }
    location.assign((data as { url: string }).url)
  })
}

async function onSaveTopup(event: SubmitEvent): Promise<void> {
  event.preventDefault()
  const form = event.target as HTMLFormElement
  const enabled = (form.elements.namedItem('enabled') as HTMLInputElement).checked
  await withBusy('topup', async () => {
    const { error } = await state.session!.supabase.rpc('set_auto_topup', {
      p_enabled: enabled,
      p_threshold: wholeOrNull(formValue(form, 'threshold')),
      p_amount: wholeOrNull(formValue(form, 'amount')),
      p_monthly_cap: wholeOrNull(formValue(form, 'monthly_cap')),
      p_org_id: state.orgId,
    })
    if (error) throw new Error(`${error.message}${error.hint ? `: ${error.hint}` : ''}`)
    await loadOrg(state.orgId!, state.data?.ledgerBefore ?? null, state.data?.ledgerBack ?? [])
    update({ notice: 'Auto top-up saved.', error: null })
  })
}

async function onSaveWebhook(event: SubmitEvent): Promise<void> {
  event.preventDefault()
  const url = formValue(event.target as HTMLFormElement, 'url')
  await withBusy('webhook', async () => {
    const { data, error } = await state.session!.supabase.rpc('set_alert_webhook', { p_url: url, p_org_id: state.orgId })
    if (error) throw new Error(`${error.message}${error.hint ? `: ${error.hint}` : ''}`)
    const saved = data as { url: string; secret: string }
    update({
      data: state.data ? { ...state.data, webhook: { url: saved.url, updated_at: new Date().toISOString() } } : state.data,
      webhookSecret: saved.secret,
      notice: 'Alert webhook saved.',
      error: null,
    })
  })
}

async function ledgerPage(direction: 'older' | 'newer' | 'newest'): Promise<void> {
  const data = state.data!
  let before: number | null = null
  let back: Array<number | null> = []
  if (direction === 'older') {
    before = data.ledgerNext
    back = [...data.ledgerBack, data.ledgerBefore]
  } else if (direction === 'newer') {
    back = data.ledgerBack.slice(0, -1)
    before = data.ledgerBack[data.ledgerBack.length - 1] ?? null
  }
  await withBusy('ledger', () => loadOrg(state.orgId!, before, back))
  document.getElementById('ledger-heading')?.focus()
}

// Views ---------------------------------------------------------------------------------------------

function signInView(): TemplateResult {
  const { config } = state
  const tokenSubmit = (event: SubmitEvent) => {
    event.preventDefault()
    try {
      void start(signInWithToken(config, formValue(event.target as HTMLFormElement, 'token')))
    } catch (error) {
      update({ error: errorText(error) })
    }
  }
  const passwordSubmit = async (event: SubmitEvent) => {
    event.preventDefault()
    const form = event.target as HTMLFormElement
    const session = await withBusy('signin', () => signInWithPassword(config, formValue(form, 'email'), formValue(form, 'password')))
    if (session) void start(session)
  }
  const magicLink = async (event: Event) => {
    const form = (event.target as HTMLElement).closest('form')!
    const sent = await withBusy('signin', () => sendMagicLink(config, formValue(form, 'email')).then(() => true))
    if (sent) update({ notice: 'Check your email for a sign-in link.' })
  }
  return html`
    <main id="main" class="signin">
      <h1>Sign in to see your usage</h1>
      ${messages()}
      ${config.auth === 'local'
        ? html`
            <p>This is the local stack: there is no Supabase Auth server, so you sign in with an access token the stack minted.</p>
            ${config.demoToken
              ? html`<button type="button" class="primary" @click=${() => void start(signInWithToken(config, config.demoToken!))}>
                  Sign in as the demo user (${config.demoEmail ?? 'demo'})
                </button>`
              : nothing}
            <form @submit=${tokenSubmit} class="stack">
              <label for="token">Access token (a user JWT)</label>
              <textarea id="token" name="token" rows="3" required spellcheck="false" autocomplete="off"></textarea>
              <button type="submit">Sign in with this token</button>
            </form>`
        : html`
            <form @submit=${passwordSubmit} class="stack">
              <label for="email">Email</label>
              <input id="email" name="email" type="email" autocomplete="email" required />
              <label for="password">Password</label>
              <input id="password" name="password" type="password" autocomplete="current-password" />
              <div class="row">
                <button type="submit" class="primary" ?disabled=${state.busy.has('signin')}>Sign in</button>
                <button type="button" @click=${magicLink} ?disabled=${state.busy.has('signin')}>Email me a sign-in link</button>
              </div>
            </form>`}
    </main>`
}

function messages(): TemplateResult {
  return html`
    <div role="status" aria-live="polite" class="notice" ?hidden=${!state.notice}>${state.notice ?? ''}</div>
    <div role="alert" class="error" ?hidden=${!state.error}>${state.error ?? ''}</div>`
}

function headerView(): TemplateResult {
  const { orgs, orgId, session } = state
  const known = orgs.some((o) => o.orgId === orgId)
  return html`
    <header class="top">
      <h1>Usage</h1>
      <div class="who">
        <label for="org">Organisation</label>
        <select id="org" @change=${(e: Event) => void selectOrg((e.target as HTMLSelectElement).value)}>
          ${known ? nothing : html`<option value=${orgId ?? ''} selected>(not one of yours)</option>`}
          ${orgs.map((o) => html`<option value=${o.orgId} ?selected=${o.orgId === orgId}>${o.name}${o.isPersonal ? ' (personal)' : ''} · ${o.role}</option>`)}
        </select>
        <span class="email">${session?.email ?? session?.userId}</span>
        <button type="button" @click=${async () => { await session?.signOut(); location.replace(location.pathname) }}>Sign out</button>
      </div>
    </header>`
}

function balanceView(d: OrgData): TemplateResult {
  const b = d.balance
  return html`
    <section aria-labelledby="balance-heading" class="card balance">
      <h2 id="balance-heading">Balance</h2>
      <dl class="figures">
        <div><dt>Available</dt><dd data-testid="available">${fmt.credits(b.available)}</dd></div>
        <div><dt>Held</dt><dd data-testid="held">${fmt.credits(b.held)}</dd></div>
        ${b.overage > 0 || b.overageLimit > 0 ? html`<div><dt>Overage</dt><dd data-testid="overage">${fmt.credits(b.overage)} <small>of ${fmt.credits(b.overageLimit)} allowed</small></dd></div>` : nothing}
        ${b.scheduled > 0 && b.nextStartAt ? html`<div>
          <dt>Scheduled</dt>
          <dd data-testid="scheduled">${fmt.credits(b.scheduled)} <small>next ${fmt.credits(b.nextStartAmount ?? 0)} on ${fmt.when(b.nextStartAt)}</small></dd>
        </div>` : nothing}
        <div>
          <dt>Next expiry</dt>
          <dd data-testid="next-expiry">${b.nextExpiryAt ? html`${fmt.credits(b.nextExpiryAmount ?? 0)} <small>on ${fmt.when(b.nextExpiryAt)}</small>` : 'none'}</dd>
        </div>
      </dl>
    </section>`
}

function usageView(d: OrgData): TemplateResult {
  const { stats, daily } = d
  const ops = operationsOf(daily)
  const days = periodDays(daily)
  const perOp = ops.map((operation) => {
    const rows = daily.days.filter((x) => x.operation === operation)
    const sum = (k: 'calls' | 'successfulCalls' | 'failedCalls' | 'creditsUsed') => rows.reduce((a, r) => a + r[k], 0)
    return { operation, calls: sum('calls'), ok: sum('successfulCalls'), failed: sum('failedCalls'), credits: sum('creditsUsed') }
  })
  const measureLabel = state.measure === 'calls' ? 'calls' : 'credits used'
  return html`
    <section aria-labelledby="usage-heading" class="card usage">
      <h2 id="usage-heading">Usage, last 30 days</h2>
      <dl class="figures">
        <div><dt>Calls</dt><dd data-testid="total-calls">${fmt.count(stats.totalCalls)}</dd></div>
        <div><dt>Success rate</dt><dd>${fmt.rate(stats.successfulCalls, stats.successfulCalls + stats.failedCalls)}</dd></div>
        <div><dt>Credits used</dt><dd data-testid="credits-used">${fmt.credits(stats.totalCreditsUsed)}</dd></div>
        <div><dt>Average latency</dt><dd>${stats.avgLatencyMs ? fmt.ms(stats.avgLatencyMs) : '–'}</dd></div>
      </dl>
      <fieldset class="measure">
        <legend>Chart shows</legend>
        <div class="options">
          ${(['calls', 'creditsUsed'] as const).map((m) => html`
            <label><input type="radio" name="measure" value=${m} .checked=${state.measure === m}
              @change=${() => update({ measure: m })} /> ${m === 'calls' ? 'Calls' : 'Credits used'}</label>`)}
        </div>
      </fieldset>
      <div class="chart-box">
        <canvas id="usage-chart" role="img"
          aria-label=${`Stacked bar chart of ${measureLabel} per day (UTC) over ${days.length} days, by operation: ${ops.join(', ') || 'no calls'}. The same numbers are in the table below.`}></canvas>
      </div>
      <details>
        <summary>Chart data as a table</summary>
        <div class="scroll" tabindex="0" role="region" aria-label="Daily usage table">
          <table>
            <caption>${measureLabel} per day (UTC) and operation</caption>
            <thead><tr><th scope="col">Day</th>${ops.map((op) => html`<th scope="col">${op}</th>`)}</tr></thead>
            <tbody>
              ${days.map((day) => html`<tr><th scope="row">${fmt.day(day)}</th>${ops.map((op) => {
                const row = daily.days.find((x) => x.day === day && x.operation === op)
                return html`<td>${fmt.count(row ? row[state.measure] : 0)}</td>`
              })}</tr>`)}
            </tbody>
          </table>
        </div>
      </details>
      <h3 id="top-heading">Top operations</h3>
      <div class="scroll" tabindex="0" role="region" aria-labelledby="top-heading">
        <table data-testid="top-operations">
          <caption class="visually-hidden">Top operations over the last 30 UTC days</caption>
          <thead><tr><th scope="col">Operation</th><th scope="col" class="num">Calls</th><th scope="col" class="num">Success</th><th scope="col" class="num">Credits</th></tr></thead>
          <tbody>
            ${perOp.length === 0 ? html`<tr><td colspan="4">No calls yet.</td></tr>` : nothing}
            ${perOp.slice(0, 10).map((r) => html`<tr><th scope="row">${r.operation}</th><td class="num">${fmt.count(r.calls)}</td>
              <td class="num">${fmt.rate(r.ok, r.ok + r.failed)}</td><td class="num">${fmt.credits(r.credits)}</td></tr>`)}
          </tbody>
        </table>
      </div>
    </section>`
}

function grantsView(d: OrgData): TemplateResult {
  const expiry = (g: Grant) => (g.expiresAt ? fmt.date(g.expiresAt) : 'never')
  // A scheduled grant says when it starts: until then its credits are not in the balance.
  const status = (g: Grant) => html`<span class=${`status ${g.status}`}>${g.status}</span>${g.status === 'scheduled' && g.effectiveAt
    ? html` <small data-testid="starts">starts ${fmt.date(g.effectiveAt)}</small>` : nothing}`
  return html`
    <section aria-labelledby="grants-heading" class="card grants">
      <h2 id="grants-heading">Grants</h2>
      ${d.grants.length === 0 ? html`<p>No grants yet.</p>` : nothing}
      <!-- A table where there is room, a list on narrow screens (only one is displayed). -->
      <table data-testid="grants" class="wide-only" ?hidden=${d.grants.length === 0}>
        <thead><tr><th scope="col">Source</th><th scope="col" class="num">Amount</th><th scope="col" class="num">Remaining</th><th scope="col">Expires</th><th scope="col">Status</th></tr></thead>
        <tbody>
          ${d.grants.map((g) => html`<tr>
            <th scope="row">${g.source}</th><td class="num">${fmt.credits(g.amount)}</td><td class="num">${fmt.credits(g.remaining)}</td>
            <td>${expiry(g)}</td><td>${status(g)}</td></tr>`)}
        </tbody>
      </table>
      <ul class="narrow-only grant-list">
        ${d.grants.map((g) => html`<li>
          <span class="grant-head"><strong>${g.source}</strong> ${status(g)}</span>
          <span>${fmt.credits(g.remaining)} of ${fmt.credits(g.amount)} remaining</span>
          <span class="hint">${g.status === 'expired' ? `expired ${fmt.date(g.expiresAt ?? g.expiredAt!)}` : g.expiresAt ? `expires ${expiry(g)}` : 'no expiry'}</span>
        </li>`)}
      </ul>
    </section>`
}

function ledgerView(d: OrgData): TemplateResult {
  const busy = state.busy.has('ledger')
  return html`
    <section aria-labelledby="ledger-heading" class="card ledger">
      <h2 id="ledger-heading" tabindex="-1">Recent ledger entries</h2>
      <div class="scroll" tabindex="0" role="region" aria-label="Ledger entries">
        <table data-testid="ledger">
          <thead><tr><th scope="col">When</th><th scope="col">Kind</th><th scope="col" class="num">Available</th><th scope="col" class="num">Held</th>
            <th scope="col" class="num">Balance after</th><th scope="col">Request</th></tr></thead>
          <tbody>
            ${d.ledger.length === 0 ? html`<tr><td colspan="6">No entries.</td></tr>` : nothing}
            ${d.ledger.map((e) => html`<tr>
              <td class="when">${fmt.short(e.createdAt)}</td><td>${e.kind}</td>
              <td class="num">${e.amount === 0 ? '' : fmt.signed(e.amount)}</td><td class="num">${e.heldDelta === 0 ? '' : fmt.signed(e.heldDelta)}</td>
              <td class="num">${fmt.credits(e.balanceAfter)}</td><td class="mono" title=${e.requestId ?? ''}>${e.requestId ?? ''}</td></tr>`)}
          </tbody>
        </table>
      </div>
      <nav class="row pager" aria-label="Ledger pages">
        <button type="button" ?disabled=${busy || d.ledgerBack.length === 0} @click=${() => void ledgerPage('newest')}>Newest</button>
        <button type="button" ?disabled=${busy || d.ledgerBack.length === 0} @click=${() => void ledgerPage('newer')}>Newer</button>
        <button type="button" ?disabled=${busy || d.ledgerNext === null} @click=${() => void ledgerPage('older')}>Older</button>
      </nav>
    </section>`
}

function settingsView(d: OrgData): TemplateResult {
  const t = d.autoTopup
  return html`
    <section aria-labelledby="settings-heading" class="card settings" data-testid="owner-settings">
      <h2 id="settings-heading">Billing settings <small>(owners and admins)</small></h2>
      <form @submit=${onBuy} class="stack buy">
        <h3>Buy credits</h3>
        <label for="buy-credits">Credits to buy</label>
        <input id="buy-credits" name="credits" type="number" inputmode="numeric" min="1" step="1" value="1000" required />
        <button type="submit" class="primary" ?disabled=${state.busy.has('buy')}>Buy credits</button>
        <p class="hint">Opens Stripe Checkout; the credits arrive when the payment is confirmed.</p>
      </form>
      <form @submit=${onSaveTopup} class="stack">
        <h3>Auto top-up</h3>
        <label class="check"><input type="checkbox" name="enabled" .checked=${t?.enabled ?? false} /> Top up automatically</label>
        <label for="topup-threshold">When the balance falls below (credits)</label>
        <input id="topup-threshold" name="threshold" type="number" min="0" step="1" .value=${t?.threshold?.toString() ?? ''} />
        <label for="topup-amount">Buy this many credits</label>
        <input id="topup-amount" name="amount" type="number" min="1" step="1" .value=${t?.amount?.toString() ?? ''} />
        <label for="topup-cap">At most this many credits a month</label>
        <input id="topup-cap" name="monthly_cap" type="number" min="1" step="1" .value=${t?.monthly_cap?.toString() ?? ''} />
        <p class="hint">${t?.payment_method_on_file ? 'A payment method is on file.' : 'No payment method on file yet: top-ups wait until one is saved.'}</p>
        <button type="submit" ?disabled=${state.busy.has('topup')}>Save auto top-up</button>
      </form>
      <form @submit=${onSaveWebhook} class="stack">
        <h3>Low-balance alerts</h3>
        <p class="hint" data-testid="webhook-current">${d.webhook?.url
          ? html`Alerts go to <code class="mono">${d.webhook.url}</code>.`
          : 'No webhook set: alerts are not sent.'}</p>
        <label for="webhook-url">Webhook URL (alerts at 50, 75, 90 and 100 % used)</label>
        <input id="webhook-url" name="url" type="url" placeholder="https://example.com/hooks/credits" .value=${d.webhook?.url ?? ''} required />
        <button type="submit" ?disabled=${state.busy.has('webhook')}>Save webhook</button>
        ${state.webhookSecret
          ? html`<p class="secret">Signing secret (shown once, keep it now): <code data-testid="webhook-secret">${state.webhookSecret}</code></p>`
          : html`<p class="hint">Saving sets a new signing secret, shown once.</p>`}
      </form>
    </section>`
}

function appView(): TemplateResult {
  const d = state.data
  return html`
    <a class="skip" href="#main">Skip to content</a>
    ${headerView()}
    <main id="main" tabindex="-1">
      ${messages()}
      ${state.blocked ? html`<p class="blocked" role="alert" data-testid="blocked">${state.blocked}</p>` : nothing}
      ${!d && !state.blocked ? html`<p aria-busy="true">Loading…</p>` : nothing}
      ${d
        ? html`
            <div class="grid">
              ${balanceView(d)} ${usageView(d)} ${grantsView(d)} ${ledgerView(d)} ${isAdmin() ? settingsView(d) : nothing}
            </div>`
        : nothing}
    </main>
    <footer>
      ${state.updatedAt
        ? html`Updated <time datetime=${state.updatedAt.toISOString()}>${state.updatedAt.toLocaleTimeString()}</time>;
            ${state.live === 'realtime' ? 'live (Realtime)' : `checks for new charges every ${state.config.pollSeconds ?? 5} s`}.`
        : nothing}
    </footer>`
}

let cleared = false

function paint(): void {
  // The static "Loading…" of index.html goes once the app draws.
  if (!cleared) {
    root.textContent = ''
    cleared = true
  }
  render(state.session ? appView() : signInView(), root)
  const canvas = document.getElementById('usage-chart') as HTMLCanvasElement | null
  if (canvas && state.data) canvas.dataset.total = String(drawUsageChart(canvas, state.data.daily, state.measure))
}

async function main(): Promise<void> {
  state = {
    config: { supabaseUrl: '', anonKey: '', auth: 'local' },
    session: null, tollgate: null, orgs: [], orgId: null, data: null, blocked: null, error: null, notice: null,
    measure: 'calls', updatedAt: null, busy: new Set(), webhookSecret: null, live: 'polling',
  }
  try {
    state.config = await loadConfig()
  } catch (error) {
    root.textContent = `The usage page could not load its configuration: ${errorText(error)}`
    return
  }
  onAuthChange(state.config, () => void currentSession(state.config).then((s) => (s && !state.session ? start(s) : undefined)))
  const session = await currentSession(state.config)
  if (session) await start(session)
  else paint()
}

void main()
