import fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { exampleFiles, exampleSource, readmeBlocks, readmeFile } from '../packages/client/scripts/readme-examples.ts'
import { runExample } from '../packages/client/scripts/run-example.ts'
import { exampleTests } from './support/client-examples.ts'

// packages/client/README.md shows packages/client/examples/*.ts verbatim; each example runs here
// on the source against the stack under test, so the documentation cannot rot.
// tests/client-package.test.ts runs the same examples from the packed tarball.
describe('@tollgate/client README examples', () => {
  it('the README shows every example file, unchanged', () => {
    const blocks = readmeBlocks(fs.readFileSync(readmeFile, 'utf8'))
    expect(blocks.map((b) => b.file).sort()).toEqual(exampleFiles())
    for (const block of blocks) {
      if (block.code !== exampleSource(block.file)) {
        expect.fail(`README block for ${block.file} differs from the file: run \`npx tsx packages/client/scripts/readme-examples.ts\``)
      }
    }
    expect(exampleFiles()).toEqual([
      'examples/errors.ts',
      'examples/node-client.ts',
      'examples/retries.ts',
      'examples/server.ts',
      'examples/user.ts',
      'examples/with-credits.ts',
    ])
  })

  // JSON in and out, as the packaged run carries them.
  exampleTests(async (name, args) => JSON.parse(JSON.stringify(await runExample(name, args))))
})
