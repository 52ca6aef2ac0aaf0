// What the backends of a pgbench run wait on: pg_stat_activity sampled every 20 ms while the run
// goes, as shares of all samples (CPU = active, no wait event). The evidence for whether a side is
// bound by its own work or by something shared, such as flushing the WAL at commit.
import type pg from 'pg'
import type { Variant } from './sidebyside.ts'

export interface WaitProfile {
  variant: string
  clients: number
  tps: number
  samples: number
  /** Share of samples (0..1) per wait, largest first. */
  shares: Array<{ wait: string; share: number }>
}

export async function sampleWaits(db: pg.Client, variant: Variant, clients: number, seconds: number): Promise<WaitProfile> {
  const counts = new Map<string, number>()
  let samples = 0
  let running = true
  const sampling = (async () => {
    while (running) {
      const { rows } = await db.query<{ wait: string }>(
        `select coalesce(wait_event_type || ':' || wait_event, case when state = 'active' then 'CPU' else state end) as wait
         from pg_stat_activity where application_name = $1`,
        [`bench-${variant.name}`],
      )
      for (const r of rows) {
        counts.set(r.wait, (counts.get(r.wait) ?? 0) + 1)
        samples++
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  const sample = await variant.run(clients, seconds).finally(() => {
    running = false
  })
  await sampling
  const shares = [...counts].map(([wait, n]) => ({ wait, share: n / Math.max(samples, 1) })).sort((a, b) => b.share - a.share)
  return { variant: variant.name, clients, tps: sample.count / sample.seconds, samples, shares }
}

/** "LWLock:WALWrite 59%, IO:WALSync 10%, CPU 16%, ..." (the largest few). */
export function waitsText(p: WaitProfile, top = 4): string {
  return p.shares
    .slice(0, top)
    .map((s) => `${s.wait} ${Math.round(100 * s.share)}%`)
    .join(', ')
}
