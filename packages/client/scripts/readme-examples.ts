// The README's code blocks ARE the example files: every block preceded by
// `<!-- example: examples/<file>.ts -->` must equal that file, and every file in examples/ must
// have a block. tests/client-examples.test.ts checks it and runs the examples; this script
// rewrites the blocks from the files after an example changed:
//
//   npx tsx packages/client/scripts/readme-examples.ts

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const readmeFile = path.join(packageRoot, 'README.md')

const BLOCK = /<!-- example: (examples\/[\w.-]+\.ts) -->\n```ts\n([\s\S]*?)```\n/g

export interface ReadmeBlock {
  /** Path relative to packages/client, e.g. `examples/user.ts`. */
  file: string
  code: string
}

export function readmeBlocks(readme: string): ReadmeBlock[] {
  return [...readme.matchAll(BLOCK)].map((m) => ({ file: m[1]!, code: m[2]! }))
}

export function exampleFiles(): string[] {
  return fs
    .readdirSync(path.join(packageRoot, 'examples'))
    .filter((name) => name.endsWith('.ts'))
    .sort()
    .map((name) => `examples/${name}`)
}

export const exampleSource = (file: string): string => fs.readFileSync(path.join(packageRoot, file), 'utf8')

/** The README with every marked block replaced by its file's current text. */
export function syncedReadme(readme: string): string {
  return readme.replace(BLOCK, (_, file: string) => `<!-- example: ${file} -->\n\`\`\`ts\n${exampleSource(file)}\`\`\`\n`)
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const before = fs.readFileSync(readmeFile, 'utf8')
  const after = syncedReadme(before)
  const missing = exampleFiles().filter((file) => !readmeBlocks(after).some((block) => block.file === file))
  if (after !== before) fs.writeFileSync(readmeFile, after)
  process.stdout.write(`${after === before ? 'README already in sync' : 'README blocks rewritten'}${missing.length ? `; no block yet for ${missing.join(', ')}` : ''}\n`)
}
