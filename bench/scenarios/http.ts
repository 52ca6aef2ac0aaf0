// Scenarios 7 and 8, over HTTP on loopback: consume_credits through the gateway and PostgREST
// (as supabase.rpc sends it), and the plugin /updates handler with its credits gate on and off.
import type { ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import os from 'node:os'
import path from 'node:path'
import { userJwt } from '@tollgate/local-stack'
import { denoBinary } from '../../packages/local-stack/src/binaries.ts'
import { denoConfig, denoEnv } from '../../packages/local-stack/src/functions.ts'
import { functionsDir, stateRoot } from '../../packages/local-stack/src/paths.ts'
import { freePort, isPortOpen, spawnService, stopChild, waitFor } from '../../packages/local-stack/src/process.ts'
import type { Context, ScenarioOutput } from '../lib/context.ts'
import { settle } from '../lib/context.ts'
import { httpLoad } from '../lib/http-load.ts'
import { assertRunning } from '../lib/lifecycle.ts'
import { find, pass, ratioText, tpsText, type Row } from '../lib/result.ts'
import { settings } from '../lib/settings.ts'
import { sideBySide, warmUp, type Variant } from '../lib/sidebyside.ts'
import type { Measurement } from '../lib/stats.ts'
import { gateApp, priceOperation, special, userId } from '../prepare.ts'

const requestId = (): string => `h-${crypto.randomUUID()}`

// Scenario 7 -----------------------------------------------------------------------------------

export async function httpConsume(ctx: Context): Promise<ScenarioOutput> {
  const env = ctx.stack.env
  const url = `${env.SUPABASE_URL}/rest/v1/rpc/consume_credits`
  // Access tokens as GoTrue would issue them after sign-in, one per user.
  const tokens = await Promise.all(Array.from({ length: settings.distinctOrgs }, (_, i) => userJwt(userId(i + 1), env.SUPABASE_JWT_SECRET, { expiresInSeconds: 3600 })))
  const hotToken = await userJwt(userId(special.hot), env.SUPABASE_JWT_SECRET, { expiresInSeconds: 3600 })
  const request = (token: string) => ({
    headers: { apikey: env.SUPABASE_ANON_KEY, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ p_operation: priceOperation, p_request_id: requestId() }),
  })
  const sanity = await fetch(url, { method: 'POST', ...request(hotToken) })
  const answer = (await sanity.json()) as { charged?: number }
  if (sanity.status !== 200 || answer.charged !== 1) throw new Error(`rpc consume_credits sanity check: ${sanity.status} ${JSON.stringify(answer)}`)

  const variants: Variant[] = [
    {
      name: 'http_distinct',
      run: (connections, seconds) => httpLoad({ url, connections, seconds, request: () => request(tokens[Math.floor(Math.random() * tokens.length)]!) }),
    },
    { name: 'http_hot', run: (connections, seconds) => httpLoad({ url, connections, seconds, request: () => request(hotToken) }) },
  ]
  await warmUp(variants)
  await settle(ctx.admin)
  const measurements: Measurement[] = []
  for (const c of settings.clients) measurements.push(...(await sideBySide(variants, c, settings.seconds)))

  const sql = ctx.results.flatMap((r) => r.measurements)
  const compare = (httpVariant: string, sqlVariant: string, label: string): Row => {
    const pairs = settings.clients.map((c) => {
      const s = sql.find((m) => m.variant === sqlVariant && m.clients === c)
      return { c, http: find(measurements, httpVariant, c), sql: s }
    })
    const known = pairs.filter((p) => p.sql)
    const at8 = pairs.find((p) => p.c === 8)!
    return {
      scenario: `7${label === 'distinct' ? 'a' : 'b'}. rpc consume_credits via gateway + PostgREST, ${label === 'distinct' ? `${settings.distinctOrgs.toLocaleString('en')} orgs` : 'one hot org'} vs SQL layer`,
      target: 'none (information): HTTP tps / pgbench tps at the same concurrency',
      ratio: at8.sql ? at8.http.tps / at8.sql.tps : null,
      measured: known.length ? known.map((p) => `${p.c}c ${ratioText(p.http.tps / p.sql!.tps)}`).join(', ') : 'SQL figures not measured in this run',
      status: 'INFO',
      absolute: `8c: HTTP ${tpsText(at8.http)}${at8.sql ? `; SQL ${tpsText(at8.sql)}` : ''}`,
    }
  }
  return { rows: [compare('http_distinct', 'ours_distinct', 'distinct'), compare('http_hot', 'ours_hot', 'hot')], measurements }
}

// Scenario 8 -----------------------------------------------------------------------------------

const pluginProcesses: ChildProcess[] = []

export async function stopPluginProcesses(): Promise<void> {
  await Promise.all(pluginProcesses.splice(0).map((child) => stopChild(child)))
}

/** One more Deno process of supabase/functions/updates, spawned as the stack spawns its functions. */
async function startUpdates(ctx: Context, gate: 'on' | 'off'): Promise<string> {
  const port = await freePort()
  assertRunning()
  const logFile = path.join(ctx.stack.home, 'logs', `bench-updates-gate-${gate}.log`)
  const child = spawnService(
    denoBinary(),
    ['run', '--no-prompt', '--allow-net', '--allow-env', '--allow-read', '--allow-sys', `--config=${denoConfig}`, path.join(functionsDir, 'updates/index.ts')],
    {
      logFile,
      env: {
        ...denoEnv(path.join(stateRoot, 'deno-cache')),
        DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}`,
        SB_EXECUTION_ID: 'updates',
        // As the stack does: TOLLGATE_* settings of our environment, then the stack's env.
        ...Object.fromEntries(Object.entries(process.env).filter(([key, value]) => key.startsWith('TOLLGATE_') && value !== undefined)),
        ...ctx.stack.env,
        TOLLGATE_PLUGIN_GATE: gate,
      },
    },
  )
  pluginProcesses.push(child)
  await waitFor(
    `bench updates function (gate ${gate})`,
    async () => {
      if (child.exitCode !== null) throw new Error('exited')
      return isPortOpen(port)
    },
    30_000,
    `see ${logFile}`,
  )
  return `http://127.0.0.1:${port}/`
}

const deviceBody = (appId: string): string =>
  JSON.stringify({
    app_id: appId,
    device_id: `device-${crypto.randomUUID()}`,
    version_name: '1.0.0',
    version_build: '100',
    platform: 'android',
    plugin_version: '6.1.0',
    is_emulator: false,
    is_prod: true,
  })

async function post(url: string, body: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

export async function pluginGate(ctx: Context): Promise<ScenarioOutput> {
  // Both processes are started here, identically but for the gate setting, and both are hit
  // directly (not through the gateway), so the only difference between them is the gate query.
  const [gated, ungated] = await Promise.all([startUpdates(ctx, 'on'), startUpdates(ctx, 'off')])
  for (const url of [gated, ungated]) {
    const ok = await post(url, deviceBody(gateApp.large))
    if (ok.status !== 200 || ok.body.version !== '1.1.0') throw new Error(`updates sanity check at ${url}: ${ok.status} ${JSON.stringify(ok.body)}`)
  }
  // The gate really runs in one and not the other: an unknown app is 404 only when gated.
  const unknownApp = deviceBody('com.bench.unknown.app')
  const [g, u] = await Promise.all([post(gated, unknownApp), post(ungated, unknownApp)])
  if (g.status !== 404 || u.status !== 200) throw new Error(`gate on/off check: gated ${g.status}, ungated ${u.status}`)

  const headers = { 'content-type': 'application/json' }
  const variants: Variant[] = [
    { name: 'updates_gated', run: (c, s) => httpLoad({ url: gated, connections: c, seconds: s, request: () => ({ headers, body: deviceBody(gateApp.large) }) }) },
    { name: 'updates_ungated', run: (c, s) => httpLoad({ url: ungated, connections: c, seconds: s, request: () => ({ headers, body: deviceBody(gateApp.large) }) }) },
  ]
  await warmUp(variants)
  await settle(ctx.admin)
  const measurements: Measurement[] = []
  for (const c of settings.clients) measurements.push(...(await sideBySide(variants, c, settings.seconds)))
  await stopPluginProcesses()
  const ratios = settings.clients.map((c) => ({ c, ratio: find(measurements, 'updates_gated', c).tps / find(measurements, 'updates_ungated', c).tps }))
  const worst = ratios.reduce((a, b) => (b.ratio < a.ratio ? b : a))
  return {
    rows: [
      {
        scenario: '8. POST /updates handler, gate on vs gate off (same replica, interleaved)',
        target: 'gated ≥ 0.9× ungated tps (worst of 1/8/32 connections)',
        ratio: worst.ratio,
        measured: `${ratioText(worst.ratio)} (${ratios.map((r) => `${r.c}c ${ratioText(r.ratio)}`).join(', ')})`,
        status: pass(worst.ratio >= 0.9),
        absolute: `at ${worst.c}c: gated ${tpsText(find(measurements, 'updates_gated', worst.c))}; ungated ${tpsText(find(measurements, 'updates_ungated', worst.c))}`,
        note:
          worst.ratio >= 0.9
            ? undefined
            : `both handlers send one replica query (handlers.ts); the gated one also joins apps and orgs and reads the flag through to_jsonb(o), which at 1 connection costs ${(find(measurements, 'updates_gated', 1).mean_ms - find(measurements, 'updates_ungated', 1).mean_ms).toFixed(2)} ms per request; the worst ratio is at the concurrency where Deno, the replica and the load generator saturate the ${os.cpus().length} cores, so it moves with the machine's load (compare the other connection counts)`,
      },
    ],
    measurements,
  }
}
