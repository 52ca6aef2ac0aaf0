import { defaultServerConditions } from 'vite'
import { defineConfig } from 'vitest/config'

// Workspace packages resolve to their TypeScript source through the `@tollgate/source` export
// condition (tsconfig.json's `customConditions` says the same to tsc), so tests never run a stale
// build. Installed from a tarball, `@tollgate/client` is its built `dist/` (tests/client-package.test.ts).
const conditions = ['@tollgate/source', ...defaultServerConditions]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['tests/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    // Fault tests crash and restart stacks: they have their own config (vitest.faults.config.ts).
    exclude: ['tests/faults/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
