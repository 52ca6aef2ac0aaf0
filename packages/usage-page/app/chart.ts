// The 30-day usage chart: stacked bars per UTC day, one colour per operation (Chart.js, only
// the parts a bar chart needs, so the bundle stays small).
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from 'chart.js'
import type { DailyUsage } from '@tollgate/client'
import { day as dayLabel } from './format.ts'

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip)

// Colour-blind-safe (Okabe–Ito), readable on white.
const palette = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000']

export type Measure = 'calls' | 'creditsUsed'

/** Every day of the period, oldest first (days without calls are zero). */
export function periodDays(daily: DailyUsage): string[] {
  const days: string[] = []
  const last = new Date(`${daily.to}T00:00:00Z`)
  for (let d = new Date(`${daily.from}T00:00:00Z`); d <= last; d = new Date(d.getTime() + 86_400_000)) {
    days.push(d.toISOString().slice(0, 10))
  }
  return days
}

/** Operations by total calls, most first: the chart's stacking order and the table's rows. */
export function operationsOf(daily: DailyUsage): string[] {
  const totals = new Map<string, number>()
  for (const d of daily.days) totals.set(d.operation, (totals.get(d.operation) ?? 0) + d.calls)
  return [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([op]) => op)
}

function datasets(daily: DailyUsage, measure: Measure) {
  const days = periodDays(daily)
  const index = new Map(days.map((d, i) => [d, i]))
  return operationsOf(daily).map((operation, i) => {
    const data = days.map(() => 0)
    for (const d of daily.days) if (d.operation === operation) data[index.get(d.day)!] = d[measure]
    return { label: operation, data, backgroundColor: palette[i % palette.length], borderWidth: 0 }
  })
}

const charts = new WeakMap<HTMLCanvasElement, Chart<'bar'>>()

/** Draws or updates the chart on `canvas`; returns the total it shows. */
export function drawUsageChart(canvas: HTMLCanvasElement, daily: DailyUsage, measure: Measure): number {
  const labels = periodDays(daily).map(dayLabel)
  const sets = datasets(daily, measure)
  const existing = charts.get(canvas)
  if (existing) {
    existing.data.labels = labels
    existing.data.datasets = sets
    existing.update('none')
  } else {
    charts.set(canvas, new Chart(canvas, {
      type: 'bar',
      data: { labels, datasets: sets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        responsive: true,
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { autoSkip: true, maxRotation: 0 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
        },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } }, tooltip: { mode: 'index', intersect: false } },
      },
    }))
  }
  return sets.reduce((sum, s) => sum + s.data.reduce((a, b) => a + b, 0), 0)
}
