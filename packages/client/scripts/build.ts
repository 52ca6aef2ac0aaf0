// Builds dist/ from src/: ESM JavaScript, .d.ts and their maps, with tsc (tsconfig.build.json).
// `npm pack` runs it (prepack), so a tarball never holds a stale build; the workspace itself
// reads src/ through the `@tollgate/source` export condition and needs no build.
//
//   npm run build -w @tollgate/client

import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const distDir = path.join(packageRoot, 'dist')

const RELATIVE_TS_SPECIFIER = /(\bfrom\s+|\bimport\s*\(\s*)(['"])(\.\.?\/[^'"]+)\.ts\2/g

/**
 * tsc rewrites `./errors.ts` to `./errors.js` in the JavaScript it emits
 * (rewriteRelativeImportExtensions) but keeps `.ts` in declaration files. Declarations name the
 * emitted `.js` files too, so every TypeScript version and tool resolves them the same way.
 */
export function rewriteDeclarationSpecifiers(source: string): string {
  return source.replace(RELATIVE_TS_SPECIFIER, (_, lead: string, quote: string, stem: string) => `${lead}${quote}${stem}.js${quote}`)
}

export function build(): void {
  fs.rmSync(distDir, { recursive: true, force: true })
  const tsc = path.join(path.dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc')
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(packageRoot, 'tsconfig.build.json')], { stdio: 'inherit' })
  if (result.status !== 0) throw new Error(`tsc failed (exit ${result.status ?? result.signal})`)
  for (const name of fs.readdirSync(distDir).filter((file) => file.endsWith('.d.ts'))) {
    const file = path.join(distDir, name)
    fs.writeFileSync(file, rewriteDeclarationSpecifiers(fs.readFileSync(file, 'utf8')))
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) build()
