import { expect, it } from 'vitest'
import { run } from '../src/process.ts'

// A child that exits before reading its input must not crash the runner with an unhandled EPIPE
// (vitest fails a run on any unhandled error): its exit code is the answer.
it('run() reports the exit code of a child that never reads its input', async () => {
  const input = 'x'.repeat(8 * 1024 * 1024)
  const results = await Promise.all(Array.from({ length: 4 }, () => run('sh', ['-c', 'exit 3'], { input })))
  expect(results.map((r) => r.code)).toEqual([3, 3, 3, 3])
  await new Promise((resolve) => setTimeout(resolve, 100))
})
