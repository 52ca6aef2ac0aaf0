// bench/results/latest.{json,md,svg}: the targets, the measured ratios, PASS/MISS, and the
// absolute numbers and machine they come from.
import fs from 'node:fs'
import path from 'node:path'
import type { Prepared } from '../prepare.ts'
import { chartSvg } from './chart.ts'
import type { Machine } from './machine.ts'
import { resultsDir } from './paths.ts'
import type { ScenarioResult } from './result.ts'
import type { Settings } from './settings.ts'

export interface Report {
  machine: Machine
  settings: Settings
  results: ScenarioResult[]
  setupSeconds: number
  totalSeconds: number
  prepared: Prepared
  only: string[] | null
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

export function writeReport(report: Report): string[] {
  fs.mkdirSync(resultsDir, { recursive: true })
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const { machine, settings } = report
  const mode = settings.quick ? `QUICK smoke run (BENCH_QUICK=1, ${settings.seconds} s per measurement, smaller data)` : `full run (${settings.seconds} s per measurement)`
  const loadEnd = report.results.at(-1)?.load_after ?? []
  const machineLine =
    `${machine.cores} cores, ${machine.cpu_model}, ${machine.memory_gib} GiB; ${machine.os}; Node ${machine.node}; ` +
    `${machine.postgres.split(' on ')[0]}; ${machine.pgbench}; ` +
    Object.entries(machine.settings).map(([k, v]) => `${k}=${v}`).join(', ')
  const rows = report.results.flatMap((r) => r.rows)
  const counts = (['PASS', 'MISS', 'INFO', 'ERROR'] as const).map((s) => `${rows.filter((r) => r.status === s).length} ${s}`).join(', ')

  const json = {
    generated_at: when,
    mode: settings.quick ? 'quick' : 'full',
    only: report.only,
    settings,
    machine,
    load_at_end: loadEnd,
    setup_seconds: report.setupSeconds,
    total_seconds: report.totalSeconds,
    data: { users: report.prepared.users, setup_timings_s: report.prepared.timings_s },
    summary: counts,
    rows,
    scenarios: report.results,
  }

  const md: string[] = []
  md.push(`# Tollgate benchmark`, '')
  md.push(`${when} — ${mode}${report.only ? `, only scenarios ${report.only.join(', ')}` : ''}. Total ${report.totalSeconds} s (setup ${report.setupSeconds} s). ${counts}.`, '')
  md.push(`**Machine:** ${machineLine}.`, '')
  md.push(`**Load average** (1/5/15 min) at start ${machine.load_at_start.join(' / ')}, at end ${loadEnd.join(' / ')}. The machine is shared: absolute numbers move from run to run; the ratios are what the targets are about.`, '')
  md.push(
    `**Method.** Every ratio compares variants measured side by side in this run, interleaved in mirrored order (A B … B A, half the time each pass) so a drift in background load hits both. ` +
      `SQL: pgbench -M prepared -n -j 2 (fewer threads than clients never), -T per pass, against the stack's primary as postgres; latency percentiles from pgbench's per-transaction log. ` +
      `consume_credits runs with the caller's claims set in request.jwt.claims in the same statement, as PostgREST does. ` +
      `Scenario 3b connects both sides through a TCP delay proxy on 127.0.0.1 that adds ${settings.rttMs} ms per round trip, per message (its measured round trip is row 3c). ` +
      `HTTP: autocannon, closed loop, loopback only. pg_cron jobs are paused on this throwaway stack so they neither add noise nor do scenario 6's work. ` +
      `A target is met or missed as measured; a MISS is reported, never retried away.`,
    '',
  )
  md.push('| scenario | target | measured ratio | result | absolute numbers |', '|---|---|---|---|---|')
  for (const r of rows) md.push(`| ${cell(r.scenario)} | ${cell(r.target)} | ${cell(r.measured)} | **${r.status}** | ${cell(r.absolute)} |`)
  md.push('')
  const notes = rows.filter((r) => r.note)
  if (notes.length > 0) {
    md.push('**Likely causes**', '')
    for (const r of notes) md.push(`- ${r.scenario.split('.')[0]}: ${r.note}`)
    md.push('')
  }
  md.push('![throughput and latency by client count](latest.svg)', '')
  md.push('## Every measurement', '')
  md.push('| scenario | variant | clients | tps | p50 ms | p99 ms | max ms | mean ms | count | failed |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of report.results) {
    for (const m of r.measurements) {
      md.push(`| ${r.id} | ${m.variant} | ${m.clients} | ${m.tps.toFixed(0)} | ${m.p50_ms.toFixed(2)} | ${m.p99_ms.toFixed(2)} | ${m.max_ms.toFixed(2)} | ${m.mean_ms.toFixed(2)} | ${m.count} | ${m.failed} |`)
    }
  }
  md.push('')
  md.push('## Scenarios', '')
  for (const r of report.results) {
    md.push(`- **${r.id}** ${r.title}: ${r.seconds} s, load ${r.load_before.join('/')} → ${r.load_after.join('/')}`)
  }
  md.push('')
  md.push(`Set-up: ${Object.entries(report.prepared.timings_s).map(([k, v]) => `${k} ${v} s`).join('; ')}.`, '')
  md.push('Details (query plans, refresh runs, expiry batches, consumer latencies) are in `latest.json`. Run with `npm run bench` (`BENCH_QUICK=1` for a smoke run); see `bench/README.md`.', '')

  const files = {
    json: path.join(resultsDir, 'latest.json'),
    md: path.join(resultsDir, 'latest.md'),
    svg: path.join(resultsDir, 'latest.svg'),
  }
  fs.writeFileSync(files.json, JSON.stringify(json, null, 2) + '\n')
  fs.writeFileSync(files.md, md.join('\n'))
  fs.writeFileSync(files.svg, chartSvg(report.results.flatMap((r) => r.measurements), `${when} — ${settings.quick ? 'quick' : 'full'} run — ${machine.cores} cores ${machine.cpu_model} — load ${machine.load_at_start[0]} at start`))
  return Object.values(files)
}
