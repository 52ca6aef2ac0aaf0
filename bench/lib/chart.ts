// A hand-written SVG: throughput and p50/p99 latency by client count, one panel per family.
import type { Measurement } from './stats.ts'

interface Series {
  name: string
  color: string
  dashed?: boolean
  points: Array<{ x: number; y: number }>
}

interface Panel {
  title: string
  yLabel: string
  log: boolean
  series: Series[]
}

const palette: Record<string, string> = {
  ours_distinct: '#1f77b4',
  floor_distinct: '#9ecae1',
  ours_hot: '#d62728',
  floor_hot: '#ff9896',
  client_lock_hot: '#7f7f7f',
  ours_hot_rtt: '#d62728',
  floor_hot_rtt: '#ff9896',
  client_lock_hot_rtt: '#7f7f7f',
  meter_reserve_settle: '#9467bd',
  floor_distinct_meter: '#c5b0d5',
  ours_configured: '#ff7f0e',
  ours_unconfigured: '#ffbb78',
  http_distinct: '#1f77b4',
  http_hot: '#d62728',
  updates_gated: '#2ca02c',
  updates_ungated: '#98df8a',
}

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function niceMax(value: number): number {
  if (!(value > 0)) return 1
  const magnitude = 10 ** Math.floor(Math.log10(value))
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude
  return 10 * magnitude
}

function panel(p: Panel, x0: number, y0: number, width: number, height: number, xs: number[]): string {
  const left = 62
  const right = 170
  const top = 28
  const bottom = 36
  const w = width - left - right
  const h = height - top - bottom
  const all = p.series.flatMap((s) => s.points.map((pt) => pt.y)).filter((v) => Number.isFinite(v) && v > 0)
  const out: string[] = [`<g transform="translate(${x0},${y0})">`]
  out.push(`<text x="${left}" y="16" font-size="13" font-weight="bold">${escape(p.title)}</text>`)
  if (all.length === 0) {
    out.push(`<text x="${left}" y="${top + 20}" font-size="12">not measured in this run</text></g>`)
    return out.join('\n')
  }
  let yOf: (v: number) => number
  const ticks: number[] = []
  if (p.log) {
    const lo = Math.floor(Math.log10(Math.min(...all)))
    const hi = Math.ceil(Math.log10(Math.max(...all)))
    const span = Math.max(1, hi - lo)
    yOf = (v) => top + h - ((Math.log10(v) - lo) / span) * h
    for (let e = lo; e <= lo + span; e += 1) ticks.push(10 ** e)
  } else {
    const max = niceMax(Math.max(...all) * 1.05)
    yOf = (v) => top + h - (v / max) * h
    for (let i = 0; i <= 5; i += 1) ticks.push((max / 5) * i)
  }
  const xOf = (x: number) => left + (xs.length === 1 ? w / 2 : (xs.indexOf(x) / (xs.length - 1)) * w)
  out.push(`<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#ccc"/>`)
  for (const t of ticks) {
    const y = yOf(t).toFixed(1)
    out.push(`<line x1="${left}" x2="${left + w}" y1="${y}" y2="${y}" stroke="#eee"/>`)
    const label = t >= 1000 ? `${(t / 1000).toFixed(t % 1000 === 0 ? 0 : 1)}k` : t >= 1 ? `${+t.toFixed(1)}` : `${+t.toPrecision(2)}`
    out.push(`<text x="${left - 6}" y="${y}" font-size="10" text-anchor="end" dominant-baseline="middle">${label}</text>`)
  }
  for (const x of xs) {
    out.push(`<text x="${xOf(x).toFixed(1)}" y="${top + h + 14}" font-size="10" text-anchor="middle">${x}</text>`)
  }
  out.push(`<text x="${left + w / 2}" y="${top + h + 30}" font-size="11" text-anchor="middle">clients</text>`)
  out.push(`<text transform="translate(14,${top + h / 2}) rotate(-90)" font-size="11" text-anchor="middle">${escape(p.yLabel)}</text>`)
  p.series.forEach((s, i) => {
    const pts = s.points.filter((pt) => Number.isFinite(pt.y) && pt.y > 0 && xs.includes(pt.x))
    if (pts.length === 0) return
    const dash = s.dashed ? ' stroke-dasharray="5,3"' : ''
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${pts.map((pt) => `${xOf(pt.x).toFixed(1)},${yOf(pt.y).toFixed(1)}`).join(' ')}"/>`)
    for (const pt of pts) out.push(`<circle cx="${xOf(pt.x).toFixed(1)}" cy="${yOf(pt.y).toFixed(1)}" r="2.5" fill="${s.color}"/>`)
    const ly = top + 8 + i * 15
    out.push(`<line x1="${left + w + 12}" x2="${left + w + 32}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>`)
    out.push(`<text x="${left + w + 36}" y="${ly}" font-size="10" dominant-baseline="middle">${escape(s.name)}</text>`)
  })
  out.push('</g>')
  return out.join('\n')
}

export function chartSvg(measurements: Measurement[], subtitle: string): string {
  const families = [
    { title: 'SQL layer (pgbench): consume_credits and floors', variants: ['ours_distinct', 'floor_distinct', 'ours_hot', 'floor_hot', 'client_lock_hot'] },
    { title: 'SQL layer: hot org through the delay proxy', variants: ['ours_hot_rtt', 'floor_hot_rtt', 'client_lock_hot_rtt'] },
    { title: 'SQL layer: gateway path; top-up and alerts', variants: ['meter_reserve_settle', 'floor_distinct_meter', 'ours_configured', 'ours_unconfigured'] },
    { title: 'HTTP (loopback): rpc via PostgREST, /updates gate on/off', variants: ['http_distinct', 'http_hot', 'updates_gated', 'updates_ungated'] },
  ]
  const width = 560
  const height = 300
  const parts: string[] = []
  families.forEach((family, row) => {
    const present = family.variants.filter((v) => measurements.some((m) => m.variant === v))
    const xs = [...new Set(measurements.filter((m) => present.includes(m.variant)).map((m) => m.clients))].sort((a, b) => a - b)
    const pointsOf = (variant: string, pick: (m: Measurement) => number) =>
      measurements.filter((m) => m.variant === variant).map((m) => ({ x: m.clients, y: pick(m) })).sort((a, b) => a.x - b.x)
    const throughput: Panel = {
      title: `${family.title}: throughput`,
      yLabel: 'transactions / s',
      log: false,
      series: present.map((v) => ({ name: v, color: palette[v] ?? '#000', points: pointsOf(v, (m) => m.tps) })),
    }
    const latency: Panel = {
      title: 'latency p50 (solid) and p99 (dashed)',
      yLabel: 'ms (log scale)',
      log: true,
      series: present.flatMap((v) => [
        { name: `${v} p50`, color: palette[v] ?? '#000', points: pointsOf(v, (m) => m.p50_ms) },
        { name: `${v} p99`, color: palette[v] ?? '#000', dashed: true, points: pointsOf(v, (m) => m.p99_ms) },
      ]),
    }
    parts.push(panel(throughput, 0, 40 + row * height, width, height, xs))
    parts.push(panel(latency, width, 40 + row * height, width, height, xs))
  })
  const totalHeight = 40 + families.length * height + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width * 2}" height="${totalHeight}" viewBox="0 0 ${width * 2} ${totalHeight}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="12" y="20" font-size="15" font-weight="bold">Tollgate benchmark: throughput and latency by client count</text>`,
    `<text x="12" y="35" font-size="11" fill="#555">${escape(subtitle)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}
