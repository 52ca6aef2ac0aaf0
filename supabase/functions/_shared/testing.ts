// Minimal assertions for Deno tests (Deno's std library is not reachable from here).

export function assertEquals(actual: unknown, expected: unknown, what = 'value'): void {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`)
}
