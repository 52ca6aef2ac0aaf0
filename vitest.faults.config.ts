import { defineConfig } from 'vitest/config'

// Fault and abuse tests: crashes, restarts, fuzzing, retry storms. Some start stacks of their
// own. `npm test` runs them short (FAULTS_SCALE=short); `npm run test:faults` runs them full.
export default defineConfig({
  test: {
    include: ['tests/faults/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
})
