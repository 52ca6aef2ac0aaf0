// Bundles the usage page with esbuild: app/main.ts (+ its CSS) → app.js and app.css, next to a
// copy of index.html. The local stack builds it into its own folder when it starts (and
// rebuilds on change with --watch); `npm run build -w @tollgate/usage-page` writes dist/ for a
// static host and prints the bundle size.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import zlib from 'node:zlib'
import * as esbuild from 'esbuild'

export const pageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

const options = (outDir: string): esbuild.BuildOptions => ({
  entryPoints: { app: path.join(pageRoot, 'app/main.ts') },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  // The page is part of this workspace: it bundles @tollgate/client from source (see its package.json).
  conditions: ['@tollgate/source'],
  target: ['es2020'],
  minify: true,
  outdir: outDir,
  legalComments: 'linked',
  logLevel: 'silent',
})

export interface BundleFile {
  name: string
  bytes: number
  gzipBytes: number
}

function copyHtml(outDir: string): void {
  fs.copyFileSync(path.join(pageRoot, 'index.html'), path.join(outDir, 'index.html'))
}

export function bundleSizes(outDir: string): BundleFile[] {
  return ['app.js', 'app.css', 'index.html']
    .filter((name) => fs.existsSync(path.join(outDir, name)))
    .map((name) => {
      const content = fs.readFileSync(path.join(outDir, name))
      return { name, bytes: content.length, gzipBytes: zlib.gzipSync(content, { level: 9 }).length }
    })
}

/** Builds once into `outDir`. */
export async function buildUsagePage(outDir: string): Promise<BundleFile[]> {
  fs.mkdirSync(outDir, { recursive: true })
  await esbuild.build(options(outDir))
  copyHtml(outDir)
  return bundleSizes(outDir)
}

/** Builds, then rebuilds whenever a source file changes; `stop()` ends the watch. */
export async function watchUsagePage(outDir: string, onError: (message: string) => void): Promise<{ stop(): Promise<void> }> {
  fs.mkdirSync(outDir, { recursive: true })
  const context = await esbuild.context({
    ...options(outDir),
    plugins: [{
      name: 'report',
      setup(build) {
        build.onEnd((result) => {
          copyHtml(outDir)
          for (const error of result.errors) onError(`usage page: ${error.text}`)
        })
      },
    }],
  })
  await context.rebuild()
  await context.watch()
  return { stop: () => context.dispose() }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = path.resolve(process.argv[2] ?? path.join(pageRoot, 'dist'))
  const files = await buildUsagePage(outDir)
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`
  for (const f of files) process.stdout.write(`${path.join(path.relative(process.cwd(), outDir), f.name)}  ${kib(f.bytes)}  (${kib(f.gzipBytes)} gzip)\n`)
  const total = files.reduce((a, f) => ({ bytes: a.bytes + f.bytes, gzip: a.gzip + f.gzipBytes }), { bytes: 0, gzip: 0 })
  process.stdout.write(`total ${kib(total.bytes)} (${kib(total.gzip)} gzip)\n`)
}
