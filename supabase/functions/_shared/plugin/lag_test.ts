import { assertEquals } from '../testing.ts'
import { LagMeter } from './lag.ts'

/** A measurement the test resolves by hand, and a clock it moves by hand. */
function controlled() {
  let clock = 0
  const pending: Array<{ resolve: (v: number | null) => void; reject: (e: Error) => void }> = []
  const measure = () => new Promise<number | null>((resolve, reject) => pending.push({ resolve, reject }))
  return { measure, pending, now: () => clock, tick: (ms: number) => (clock += ms) }
}

Deno.test('lag: measured at most once per maxAgeMs; an answer waits for a measurement in flight', async () => {
  const c = controlled()
  const meter = new LagMeter(c.measure, { maxAgeMs: 1000, now: c.now })
  const first = meter.current()
  assertEquals(c.pending.length, 1, 'one measurement started')
  c.pending[0]!.resolve(1500.4)
  assertEquals(await first, 1500)
  c.tick(999)
  assertEquals(await meter.current(), 1500, 'fresh: cached')
  assertEquals(c.pending.length, 1, 'no second measurement while fresh')
  c.tick(1)
  const second = meter.current()
  const concurrent = meter.current()
  assertEquals(c.pending.length, 2, 'stale: one new measurement, shared by concurrent answers')
  c.pending[1]!.resolve(4200)
  assertEquals([await second, await concurrent], [4200, 4200])
})

Deno.test('lag: unknown when the measurement fails, is missing or too slow; never negative', async () => {
  const c = controlled()
  const meter = new LagMeter(c.measure, { maxAgeMs: 1000, waitMs: 20, now: c.now })
  const failed = meter.current()
  c.pending[0]!.reject(new Error('replica down'))
  assertEquals(await failed, null)
  c.tick(1000)
  const missing = meter.current()
  c.pending[1]!.resolve(null)
  assertEquals(await missing, null)
  c.tick(1000)
  const skewed = meter.current()
  c.pending[2]!.resolve(-35)
  assertEquals(await skewed, 0, 'a replica clock behind the primary clamps at 0')
  c.tick(1000)
  assertEquals(await meter.current(), null, 'no answer within waitMs')
  c.pending[3]!.resolve(10)
  await Promise.resolve()
})

Deno.test('lag: last() reports without measuring', async () => {
  const c = controlled()
  const meter = new LagMeter(c.measure, { now: c.now })
  assertEquals(meter.last(), null)
  assertEquals(c.pending.length, 0)
  const value = meter.current()
  c.pending[0]!.resolve(7)
  await value
  c.tick(60_000)
  assertEquals([meter.last(), c.pending.length], [7, 1])
})
