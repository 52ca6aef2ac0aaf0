import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chromiumPath, demoUser, isRoot, startAuthStandin, userJwt, type AuthStandin } from '@tollgate/local-stack'
import { buildUsagePage, usagePageHandler } from '@tollgate/usage-page'
import { createClient } from '@supabase/supabase-js'
import { createUser, serviceClient, supabaseOptions, type TestUser } from './support/clients.ts'
import { grantCredits } from './support/credits.ts'
import { primaryDb } from './support/db.ts'
import { env } from './support/env.ts'

// The usage page in a real browser (Debian's Chromium driven by playwright-core): sign-in,
// the numbers against the RPCs, the chart, live updates, who sees what, buying credits, and
// screenshots at 375 and 1440 px in test-artifacts/usage-page/ (git-ignored).

const artifacts = path.resolve('test-artifacts/usage-page')
const demoTeamOrg = '5eed0000-0000-4000-8000-00000000000a'
let browser: Browser
let pageUrl: string
let ownServer: http.Server | undefined
let demoJwt: string
const demo = () => createClient(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, supabaseOptions(demoJwt))

beforeAll(async () => {
  fs.mkdirSync(artifacts, { recursive: true })
  demoJwt = await userJwt(demoUser.id, env.SUPABASE_JWT_SECRET, { email: demoUser.email })
  // The local stack's gateway serves the page at /usage/; for another stack, serve the same
  // build here, pointed at it.
  const served = await fetch(`${env.SUPABASE_URL}/usage/config.json`).catch(() => undefined)
  if (served?.ok) {
    await served.body?.cancel()
    pageUrl = `${env.SUPABASE_URL}/usage/`
  } else {
    await served?.body?.cancel()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-usage-page-'))
    await buildUsagePage(dir)
    const handler = usagePageHandler(dir, { supabaseUrl: env.SUPABASE_URL, anonKey: env.SUPABASE_ANON_KEY, auth: 'local', demoToken: demoJwt, demoEmail: demoUser.email, pollSeconds: 5 })
    ownServer = http.createServer((req, res) => handler(req, res, new URL(req.url ?? '/', 'http://page').pathname.replace(/^\/usage/, '') || '/'))
    await new Promise<void>((resolve) => ownServer!.listen(0, '127.0.0.1', resolve))
    pageUrl = `http://127.0.0.1:${(ownServer.address() as AddressInfo).port}/usage/`
  }
  browser = await chromium.launch({ executablePath: chromiumPath, args: isRoot() ? ['--no-sandbox'] : [] })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await new Promise((resolve) => (ownServer ? ownServer.close(resolve) : resolve(undefined)))
  const { data } = await serviceClient().rpc('reconcile_credits')
  expect(data).toBe(0)
})

/** A fresh browser context that can reach this machine only: any other address is refused before it is contacted. */
async function newPage(width = 1280): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width, height: 900 }, locale: 'en-US', timezoneId: 'UTC' })
  await context.route((url) => !['127.0.0.1', 'localhost'].includes(url.hostname) && url.protocol !== 'data:', (route) => route.abort('blockedbyclient'))
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (error) => problems.push(error.message))
  page.on('console', (message) => message.type() === 'error' && problems.push(message.text()))
  return { context, page, problems }
}

async function signInAsDemo(page: Page, query = ''): Promise<void> {
  await page.goto(`${pageUrl}${query}`)
  await page.getByRole('button', { name: /Sign in as the demo user/ }).click()
  await page.getByTestId('available').waitFor()
}

async function signInWithToken(page: Page, token: string, query = ''): Promise<void> {
  await page.goto(`${pageUrl}${query}`)
  await page.getByLabel('Access token (a user JWT)').fill(token)
  await page.getByRole('button', { name: 'Sign in with this token' }).click()
}

const digits = (text: string | null): number => Number((text ?? '').replace(/[^0-9-]/g, ''))

describe('usage page in Chromium', { timeout: 90_000 }, () => {
  it('signs in as the demo user and shows the balance get_credit_balance answers', async () => {
    const { context, page, problems } = await newPage()
    await signInAsDemo(page)
    const { data: balance, error } = await demo().rpc('get_credit_balance')
    expect(error).toBeNull()
    expect(digits(await page.getByTestId('available').textContent())).toBe(balance.available)
    expect(digits(await page.getByTestId('held').textContent())).toBe(balance.held)
    expect(await page.getByTestId('next-expiry').textContent()).toContain(new Intl.NumberFormat('en-US').format(balance.next_expiry_amount))
    const { data: stats } = await demo().rpc('get_usage_stats', { p_days: 30 })
    expect(digits(await page.getByTestId('total-calls').textContent())).toBe(stats.total_calls)
    // The seeded grants: one expired, one pending, one scheduled (with its start), active ones.
    const statuses = await page.getByTestId('grants').locator('tbody td .status').allTextContents()
    expect(new Set(statuses)).toEqual(new Set(['active', 'pending', 'expired', 'scheduled']))
    expect(await page.getByTestId('grants').getByTestId('starts').textContent()).toMatch(/^starts /)
    // Scheduled credits are shown beside the balance, not in it.
    expect(balance.scheduled).toBeGreaterThan(0)
    expect(await page.getByTestId('scheduled').textContent()).toContain(new Intl.NumberFormat('en-US').format(balance.scheduled))
    expect(problems).toEqual([])
    await context.close()
  })

  it('draws the 30-day chart with data, by operation', async () => {
    const { context, page } = await newPage()
    await signInAsDemo(page)
    const canvas = page.locator('#usage-chart')
    await expect.poll(async () => Number(await canvas.getAttribute('data-total'))).toBeGreaterThan(0)
    const { data: daily } = await demo().rpc('get_daily_usage', { p_days: 30 })
    const calls = (daily.days as Array<{ calls: number }>).reduce((sum, d) => sum + d.calls, 0)
    expect(Number(await canvas.getAttribute('data-total'))).toBe(calls)
    // Painted: a good share of the canvas is coloured bars, not background.
    const painted = await canvas.evaluate((el: HTMLCanvasElement) => {
      const { data } = el.getContext('2d')!.getImageData(0, 0, el.width, el.height)
      let coloured = 0
      for (let i = 0; i < data.length; i += 4) if (data[i + 3]! > 0 && !(data[i]! > 200 && data[i + 1]! > 200 && data[i + 2]! > 200)) coloured++
      return coloured / (el.width * el.height)
    })
    expect(painted).toBeGreaterThan(0.05)
    // Accessible: the chart says what it is, and its numbers are in a table.
    expect(await canvas.getAttribute('aria-label')).toMatch(/per day .* search/)
    const topOps = await page.getByTestId('top-operations').locator('tbody th').allTextContents()
    expect(topOps).toEqual(expect.arrayContaining(['search', 'embed', 'chat.completion', 'ocr', 'translate']))
    await page.getByRole('radio', { name: 'Credits used' }).check()
    await expect.poll(async () => Number(await canvas.getAttribute('data-total'))).toBe((daily.days as Array<{ credits_used: number }>).reduce((sum, d) => sum + d.credits_used, 0))
    await context.close()
  })

  it('shows a charge made through the RPC without a reload', async () => {
    const { context, page } = await newPage()
    await signInAsDemo(page)
    const before = digits(await page.getByTestId('available').textContent())
    const callsBefore = digits(await page.getByTestId('total-calls').textContent())
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'same document'))
    const { data: charge, error } = await demo().rpc('consume_credits', { p_operation: 'chat.completion', p_request_id: `browser-${Date.now()}`, p_quantity: 3 })
    expect(error).toBeNull()
    expect(charge.charged).toBe(15)
    await expect.poll(async () => digits(await page.getByTestId('available').textContent()), { timeout: 20_000, interval: 250 }).toBe(before - 15)
    expect(digits(await page.getByTestId('total-calls').textContent())).toBe(callsBefore + 1)
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe('same document')
    await context.close()
  })

  it("does not show an org to someone who is not its member", async () => {
    const stranger = await createUser('page-stranger')
    const { data: orgs } = await demo().rpc('list_my_orgs')
    const demoOrg = (orgs as Array<{ org_id: string; is_personal: boolean }>).find((o) => o.is_personal)!.org_id
    const { context, page } = await newPage()
    await signInWithToken(page, stranger.jwt, `?org=${demoOrg}`)
    await expect.poll(async () => page.getByTestId('blocked').textContent()).toContain('not a member')
    expect(await page.getByTestId('available').count()).toBe(0)
    expect(await page.getByTestId('grants').count()).toBe(0)
    const options = await page.getByLabel('Organisation').locator('option').allTextContents()
    expect(options.some((o) => o.startsWith('Demo'))).toBe(false)
    // Their own org is there, empty.
    await page.getByLabel('Organisation').selectOption(stranger.personalOrgId)
    await expect.poll(async () => page.getByTestId('available').textContent()).toBe('0')
    await context.close()
  })

  it('gives a plain member the numbers but not the owner settings', async () => {
    const member = await createUser('page-member')
    await primaryDb.query(`insert into public.org_members (org_id, user_id, role) values ($1, $2, 'member')`, [demoTeamOrg, member.id])
    const { context, page } = await newPage()
    await signInWithToken(page, member.jwt, `?org=${demoTeamOrg}`)
    await page.getByTestId('available').waitFor()
    const { data: balance } = await member.client.rpc('get_credit_balance', { p_org_id: demoTeamOrg })
    expect(digits(await page.getByTestId('available').textContent())).toBe(balance.available)
    expect(await page.getByTestId('owner-settings').count()).toBe(0)
    expect(await page.getByRole('button', { name: 'Buy credits' }).count()).toBe(0)
    await context.close()

    // The demo user owns the same org and gets them.
    const owner = await newPage()
    await signInAsDemo(owner.page, `?org=${demoTeamOrg}`)
    await owner.page.getByTestId('owner-settings').waitFor()
    expect(await owner.page.getByRole('button', { name: 'Buy credits' }).count()).toBe(1)
    await owner.context.close()
  })

  it('lets an owner save settings and buy credits through Stripe Checkout (the local stand-in)', async () => {
    const { context, page, problems } = await newPage()
    await signInAsDemo(page, `?org=${demoTeamOrg}`)
    // Auto top-up through set_auto_topup.
    await page.getByLabel('Top up automatically').check()
    await page.getByLabel('When the balance falls below (credits)').fill('100')
    await page.getByLabel('Buy this many credits').fill('500')
    await page.getByLabel('At most this many credits a month').fill('2000')
    await page.getByRole('button', { name: 'Save auto top-up' }).click()
    await expect.poll(async () => page.getByRole('status').textContent()).toContain('Auto top-up saved')
    const { data: topup } = await demo().rpc('get_auto_topup', { p_org_id: demoTeamOrg })
    expect(topup).toMatchObject({ enabled: true, threshold: 100, amount: 500, monthly_cap: 2000 })
    // The alert webhook: its secret is shown once; the URL is shown to owners and admins from
    // then on (get_alert_webhook), the secret never again.
    await page.getByLabel(/Webhook URL/).fill('https://hooks.example.com/tollgate')
    await page.getByRole('button', { name: 'Save webhook' }).click()
    await expect.poll(async () => page.getByTestId('webhook-secret').textContent()).toMatch(/^whsec_/)
    const secret = (await page.getByTestId('webhook-secret').textContent())!
    await page.reload()
    await expect.poll(async () => page.getByTestId('webhook-current').textContent()).toContain('https://hooks.example.com/tollgate')
    expect(await page.getByLabel(/Webhook URL/).inputValue()).toBe('https://hooks.example.com/tollgate')
    expect(await page.getByTestId('webhook-secret').count()).toBe(0)
    expect(await page.textContent('body')).not.toContain(secret)

    const before = digits(await page.getByTestId('available').textContent())
    await page.getByLabel('Credits to buy').fill('1200')
    await page.getByRole('button', { name: 'Buy credits' }).click()
    await page.waitForURL(/\/stripe-checkout\/cs_test_local_/)
    expect(await page.textContent('body')).toContain('1200 credits')
    await page.getByRole('button', { name: /^Pay/ }).click()
    await page.waitForURL(/checkout=success/)
    await expect.poll(async () => digits(await page.getByTestId('available').textContent()), { timeout: 20_000, interval: 250 }).toBe(before + 1200)
    const { rows } = await primaryDb.query(`select amount::int, status from public.credit_grants where org_id = $1 and source = 'purchase' and external_ref like 'cs_test_local_%'`, [demoTeamOrg])
    expect(rows).toContainEqual({ amount: 1200, status: 'active' })
    expect(problems).toEqual([])
    await context.close()
  })

  it('is keyboard reachable, labelled, and readable at 375 and 1440 px (screenshots in test-artifacts/usage-page)', async () => {
    for (const width of [375, 1440]) {
      const { context, page } = await newPage(width)
      await signInAsDemo(page)
      // Every control has an accessible name.
      const unnamed = await page.evaluate(() =>
        [...document.querySelectorAll('input, select, textarea, button')].filter((el) => {
          const labelled = (el as HTMLInputElement).labels?.length || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent?.trim())
          return !labelled
        }).map((el) => el.outerHTML.slice(0, 80)),
      )
      expect(unnamed).toEqual([])
      // Tab reaches the org switcher, the chart options, the ledger pager and Buy credits.
      const reached = new Set<string>()
      for (let i = 0; i < 60; i++) {
        await page.keyboard.press('Tab')
        reached.add(await page.evaluate(() => {
          const el = document.activeElement as HTMLElement
          return el.id || el.getAttribute('name') || el.textContent?.trim().slice(0, 20) || el.tagName
        }))
      }
      expect([...reached]).toEqual(expect.arrayContaining(['org', 'measure', 'Older', 'buy-credits', 'Buy credits', 'enabled', 'webhook-url']))
      // Nothing is wider than the screen except the scrollable table regions.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
      expect(overflow).toBeLessThanOrEqual(0)
      await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur())
      await page.screenshot({ path: path.join(artifacts, `usage-${width}.png`), fullPage: true })
      expect(fs.statSync(path.join(artifacts, `usage-${width}.png`)).size).toBeGreaterThan(20_000)
      await context.close()
    }
  })
})

// Hosted mode ("auth": "supabase") against a local stand-in for Supabase Auth's password
// sign-in (the local stack has no GoTrue): the real bundle, the real browser and supabase-js's
// own sign-in code, and the data read from the real PostgREST with the token it handed out.
describe('usage page signing in with Supabase Auth (the local stand-in)', { timeout: 90_000 }, () => {
  const password = `pw-${crypto.randomUUID()}`
  let user: TestUser
  let auth: AuthStandin
  let hostedServer: http.Server
  let hostedUrl: string

  beforeAll(async () => {
    user = await createUser('page-password')
    await grantCredits(user.personalOrgId, 750)
    auth = await startAuthStandin({ gatewayUrl: env.SUPABASE_URL, jwtSecret: env.SUPABASE_JWT_SECRET, accounts: [{ id: user.id, email: user.email, password }] })
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-usage-page-hosted-'))
    await buildUsagePage(dir)
    const handler = usagePageHandler(dir, { supabaseUrl: auth.url, anonKey: env.SUPABASE_ANON_KEY, auth: 'supabase', pollSeconds: 5 })
    hostedServer = http.createServer((req, res) => handler(req, res, new URL(req.url ?? '/', 'http://page').pathname || '/'))
    await new Promise<void>((resolve) => hostedServer.listen(0, '127.0.0.1', resolve))
    hostedUrl = `http://127.0.0.1:${(hostedServer.address() as AddressInfo).port}/`
  }, 60_000)

  afterAll(async () => {
    await new Promise((resolve) => (hostedServer ? hostedServer.close(resolve) : resolve(undefined)))
    await auth?.close()
  })

  /** Opens the page, fills the sign-in form and submits it; returns the API requests the page made. */
  async function signInWithPassword(page: Page, email: string, secret: string): Promise<Array<{ path: string; authorization: string | undefined }>> {
    const requests: Array<{ path: string; authorization: string | undefined }> = []
    page.on('request', (request) => {
      if (request.url().startsWith(auth.url)) requests.push({ path: new URL(request.url()).pathname, authorization: request.headers().authorization })
    })
    await page.goto(hostedUrl)
    await page.getByLabel('Email').fill(email)
    await page.getByLabel('Password').fill(secret)
    await page.getByRole('button', { name: 'Sign in', exact: true }).click()
    return requests
  }

  it('signs in with email and password and shows the balance get_credit_balance answers for that user', async () => {
    const { context, page, problems } = await newPage()
    const requests = await signInWithPassword(page, user.email, password)
    await page.getByTestId('available').waitFor()
    const { data: balance, error } = await user.client.rpc('get_credit_balance')
    expect(error).toBeNull()
    expect(balance.available).toBe(750)
    expect(digits(await page.getByTestId('available').textContent())).toBe(balance.available)
    // The reads went to PostgREST as this user, with the token Supabase Auth (the stand-in) issued.
    const read = requests.find((r) => r.path === '/rest/v1/rpc/get_credit_balance')
    expect(read?.authorization).toMatch(/^Bearer /)
    const claims = JSON.parse(Buffer.from(read!.authorization!.slice('Bearer '.length).split('.')[1]!, 'base64url').toString())
    expect(claims).toMatchObject({ sub: user.id, role: 'authenticated', email: user.email })
    expect(requests.map((r) => r.path)).toContain('/auth/v1/token')
    // GET /auth/v1/user (supabase.auth.getUser) knows that token, as GoTrue would.
    const who = await fetch(`${auth.url}/auth/v1/user`, { headers: { apikey: env.SUPABASE_ANON_KEY, authorization: read!.authorization! } })
    expect(await who.json()).toMatchObject({ id: user.id, email: user.email, aud: 'authenticated' })
    // supabase-js keeps the session: a reload stays signed in.
    await page.reload()
    await page.getByTestId('available').waitFor()
    expect(digits(await page.getByTestId('available').textContent())).toBe(balance.available)
    expect(problems).toEqual([])
    await context.close()
  })

  it('shows Supabase Auth\'s error for a wrong password and no data', async () => {
    const { context, page } = await newPage()
    const requests = await signInWithPassword(page, user.email, `${password}-wrong`)
    await expect.poll(async () => page.getByRole('alert').textContent()).toContain('Invalid login credentials')
    expect(await page.getByTestId('available').count()).toBe(0)
    expect(await page.getByLabel('Password').count()).toBe(1)
    expect(requests.map((r) => r.path)).toEqual(['/auth/v1/token'])
    await context.close()
  })
})
