import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { builtinModules } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import * as esbuild from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { denoBinary } from '../packages/local-stack/src/binaries.ts'
import { exampleFiles } from '../packages/client/scripts/readme-examples.ts'
import { exampleTests } from './support/client-examples.ts'
import { createUser } from './support/clients.ts'
import { env } from './support/env.ts'
import { createPrice, expectBooksBalanced, expectReconciled, ledgerOfRequest } from './support/credits.ts'

// @tollgate/client as npm users get it: `npm pack`, the tarball installed into an empty project
// outside the repository (with the peer from the npm cache when it is there), the README examples
// compiled with tsc against the packaged declarations and run with plain `node` (no loader), the
// same package imported by Deno through `npm:`, and a browser bundle of the user half. All of it
// at both ends of the supabase-js range that package.json claims.

const repoRoot = path.resolve(import.meta.dirname, '..')
const clientDir = path.join(repoRoot, 'packages/client')
const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc')
const installedVersion = (name: string): string => (JSON.parse(fs.readFileSync(path.join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version

/**
 * The oldest supabase-js the package claims, installed with each of its dependencies at the
 * lowest version its range allows (as an old lockfile would have them): the first release whose
 * realtime-js types take a WebSocket constructor as `transport`, which examples/node-client.ts
 * needs on Node 20. Below it, only that example's types fail; nothing older is claimed.
 */
const OLDEST = {
  version: '2.39.3',
  pinned: {
    '@supabase/functions-js': '2.1.5',
    '@supabase/gotrue-js': '2.60.0',
    '@supabase/node-fetch': '2.6.14',
    '@supabase/postgrest-js': '1.9.0',
    '@supabase/realtime-js': '2.9.3',
    '@supabase/storage-js': '2.5.4',
  } as Record<string, string>,
}
/** The newest supabase-js 2.x at the time of writing (it pins its own dependencies exactly). */
const NEWEST = { version: '2.119.1', pinned: {} as Record<string, string> }

/** Node, npm and tsc run as a user's would: no loader, no npm lifecycle variables from `npm test`. */
function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig'])
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_') || keep.has(key.toLowerCase())))
  delete clean.NODE_OPTIONS
  return { ...clean, NO_COLOR: '1', ...extra }
}

interface Ran {
  code: number
  stdout: string
  stderr: string
}

interface RunOptions {
  cwd: string
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
  /**
   * Packing, installing and type-checking are CPU-heavy and not timing-sensitive: they run at
   * the lowest priority (`nice -n 19`, inherited by their children), so they do not starve the
   * stack that other files' timing-sensitive tests (the replica heartbeat) share on a small
   * machine.
   */
  lowPriority?: boolean
}

function run(command: string, args: string[], options: RunOptions): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const [cmd, argv] = options.lowPriority ? ['nice', ['-n', '19', command, ...args]] : [command, args]
    const child = spawn(cmd, argv, { cwd: options.cwd, env: options.env ?? plainEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })
    })
  })
}

/** Fails with the command's output when it did not exit 0. */
async function ok(command: string, args: string[], options: RunOptions): Promise<Ran> {
  const result = await run(command, args, options)
  if (result.code !== 0) throw new Error(`${path.basename(command)} ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`)
  return result
}

interface PackResult {
  tarball: string
  sizeBytes: number
  unpackedBytes: number
  files: string[]
}

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-client-package-'))
const timings: string[] = []
let packed: PackResult

beforeAll(async () => {
  // prepack builds dist/ first, so the tarball never holds a stale build.
  const { stdout } = await ok('npm', ['pack', '--json', '--pack-destination', workDir], { cwd: clientDir, timeoutMs: 180_000, lowPriority: true })
  const [info] = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> }>
  packed = { tarball: path.join(workDir, info!.filename), sizeBytes: info!.size, unpackedBytes: info!.unpackedSize, files: info!.files.map((f) => f.path).sort() }
  timings.push(`tarball ${(packed.sizeBytes / 1000).toFixed(1)} kB (${(packed.unpackedBytes / 1000).toFixed(1)} kB unpacked, ${packed.files.length} files)`)
}, 180_000)

afterAll(() => {
  if (timings.length) console.log(`@tollgate/client package: ${timings.join('; ')}`)
  fs.rmSync(workDir, { recursive: true, force: true })
})

describe('@tollgate/client tarball', () => {
  it('holds the build, the source its maps point at, the README and package.json; nothing else', () => {
    const sources = fs.readdirSync(path.join(clientDir, 'src')).filter((f) => f.endsWith('.ts'))
    const built = sources.flatMap((f) => {
      const stem = f.replace(/\.ts$/, '')
      return [`${stem}.js`, `${stem}.js.map`, `${stem}.d.ts`, `${stem}.d.ts.map`].map((name) => `dist/${name}`)
    })
    expect(packed.files).toEqual(['README.md', 'package.json', ...built, ...sources.map((f) => `src/${f}`)].sort())
    expect(packed.sizeBytes).toBeLessThan(100_000)
  })

  it('package.json: an exports map with types before default, ESM only, no side effects, the tested peer range', async () => {
    const manifest = JSON.parse((await ok('tar', ['-xOzf', packed.tarball, 'package/package.json'], { cwd: workDir })).stdout) as Record<string, unknown>
    expect(manifest).toMatchObject({
      name: '@tollgate/client',
      type: 'module',
      sideEffects: false,
      engines: { node: '>=20' },
      peerDependencies: { '@supabase/supabase-js': `^${OLDEST.version}` },
      exports: {
        '.': { '@tollgate/source': './src/index.ts', types: './dist/index.d.ts', default: './dist/index.js' },
        './server': { '@tollgate/source': './src/server.ts', types: './dist/server.d.ts', default: './dist/server.js' },
        './package.json': './package.json',
      },
    })
    for (const entry of ['.', './server']) {
      // TypeScript and bundlers take the first condition they know: `types` must precede `default`.
      expect(Object.keys((manifest.exports as Record<string, object>)[entry]!)).toEqual(['@tollgate/source', 'types', 'default'])
    }
    expect(manifest).not.toHaveProperty('dependencies')
    // The README states the same range and the versions tested here.
    const readme = fs.readFileSync(path.join(clientDir, 'README.md'), 'utf8')
    for (const claim of [`^${OLDEST.version}`, NEWEST.version]) expect(readme).toContain(claim)
  })
})

describe.each([
  { end: 'oldest', ...OLDEST },
  { end: 'newest', ...NEWEST },
])('@tollgate/client installed from the tarball, with supabase-js $version ($end)', ({ version, pinned }) => {
  const project = path.join(workDir, `supabase-js-${version}`)
  const nodeRun = (args: string[]) => run(process.execPath, args, { cwd: project, env: plainEnv() })

  beforeAll(async () => {
    fs.mkdirSync(project, { recursive: true })
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'tollgate-client-consumer', private: true, type: 'module', overrides: pinned }, null, 2))
    const started = performance.now()
    await ok(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        packed.tarball,
        `@supabase/supabase-js@${version}`,
        // examples/node-client.ts hands `ws` to supabase-js on Node 20; its types for tsc.
        `ws@${installedVersion('ws')}`,
        `@types/ws@${installedVersion('@types/ws')}`,
      ],
      { cwd: project, timeoutMs: 300_000, lowPriority: true },
    )
    timings.push(`supabase-js ${version} project installed in ${((performance.now() - started) / 1000).toFixed(1)} s`)

    // The examples as a user's TypeScript app: compiled by tsc against the installed package.
    fs.cpSync(path.join(clientDir, 'examples'), path.join(project, 'examples'), { recursive: true })
    fs.mkdirSync(path.join(project, 'scripts'))
    fs.copyFileSync(path.join(clientDir, 'scripts/run-example.ts'), path.join(project, 'scripts/run-example.ts'))
    fs.mkdirSync(path.join(project, 'deno'))
    fs.copyFileSync(path.join(clientDir, 'deno/smoke.ts'), path.join(project, 'deno/smoke.ts'))
    fs.writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          allowImportingTsExtensions: true,
          rewriteRelativeImportExtensions: true,
          // Declarations are checked too: the package's must hold against this supabase-js.
          skipLibCheck: false,
          types: [],
          lib: ['ES2022', 'DOM'],
          rootDir: '.',
          outDir: 'out',
        },
        include: ['examples/*.ts', 'scripts/*.ts'],
      }),
    )
  }, 300_000)

  it('installs the packed package and exactly the supabase-js it was asked for', () => {
    const manifest = (name: string) => JSON.parse(fs.readFileSync(path.join(project, 'node_modules', name, 'package.json'), 'utf8')) as { version: string; dependencies?: Record<string, string> }
    expect(fs.lstatSync(path.join(project, 'node_modules/@tollgate/client')).isSymbolicLink()).toBe(false)
    expect(fs.existsSync(path.join(project, 'node_modules/@tollgate/client/dist/index.js'))).toBe(true)
    const supabase = manifest('@supabase/supabase-js')
    expect(supabase.version).toBe(version)
    // The oldest end runs with every dependency at the bottom of supabase-js's own ranges.
    for (const [name, pin] of Object.entries(pinned)) {
      expect({ name, range: supabase.dependencies?.[name]?.replace(/^[\^~]/, '') }).toEqual({ name, range: pin })
      expect({ name, installed: manifest(name).version }).toEqual({ name, installed: pin })
    }
  })

  it('compiles the README examples against the packaged declarations (tsc, declarations checked)', { timeout: 120_000 }, async () => {
    const result = await run(process.execPath, [tsc, '-p', '.', '--singleThreaded'], { cwd: project, lowPriority: true })
    // supabase-js's own declarations do not all pass every lib check; ours and the examples must.
    const ours = result.stdout.split('\n').filter((line) => /^\S+\(\d+,\d+\): error/.test(line) && !(line.startsWith('node_modules/') && !line.startsWith('node_modules/@tollgate/')))
    expect(ours).toEqual([])
    const compiled = fs.readdirSync(path.join(project, 'out/examples')).sort()
    expect(compiled).toEqual(exampleFiles().map((f) => path.basename(f).replace(/\.ts$/, '.js')))
  })

  it('plain node resolves @tollgate/client to the installed build', async () => {
    fs.writeFileSync(
      path.join(project, 'probe.mjs'),
      "console.log(JSON.stringify([import.meta.resolve('@tollgate/client'), import.meta.resolve('@tollgate/client/server'), process.execArgv, process.env.NODE_OPTIONS ?? null]))\n",
    )
    const probe = await nodeRun(['probe.mjs'])
    expect(probe.stderr).toBe('')
    const dist = path.join(fs.realpathSync(project), 'node_modules/@tollgate/client/dist')
    expect(JSON.parse(probe.stdout)).toEqual([`file://${dist}/index.js`, `file://${dist}/server.js`, [], null])
  })

  exampleTests(
    async (name, args) => {
      const result = await nodeRun(['out/scripts/run-example.js', name, JSON.stringify(args)])
      if (result.code !== 0) throw new Error(`example ${name} exited ${result.code}: ${result.stderr}`)
      // The examples log with console.log; the result is the last line.
      return JSON.parse(result.stdout.trim().split('\n').pop()!)
    },
    { timeout: 60_000 },
  )

  it('Deno imports it through npm:, type-checks it and runs it: a lost answer retried once, errors mapped, holds settled', { timeout: 120_000 }, async () => {
    const user = await createUser('deno')
    const org = user.personalOrgId
    const operation = await createPrice(3, 'cdeno')
    const denoDir = fs.mkdtempSync(path.join(workDir, 'deno-dir-'))
    const denoEnv = plainEnv({
      DENO_DIR: denoDir,
      DENO_NO_UPDATE_CHECK: '1',
      SUPABASE_URL: env.SUPABASE_URL,
      SUPABASE_ANON_KEY: env.SUPABASE_ANON_KEY,
      SUPABASE_SERVICE_ROLE_KEY: env.SUPABASE_SERVICE_ROLE_KEY,
      SMOKE_JWT: user.jwt,
      SMOKE_ORG_ID: org,
      SMOKE_OPERATION: operation,
    })
    // `npm:` specifiers resolve to this project's node_modules (no download: --cached-only).
    const flags = ['--node-modules-dir=manual', '--cached-only', '--no-lock']
    const deno = (args: string[], lowPriority = false) => run(denoBinary(), args, { cwd: project, env: denoEnv, timeoutMs: 90_000, lowPriority })
    const check = await deno(['check', ...flags, 'deno/smoke.ts'], true)
    expect({ code: check.code, stderr: check.code === 0 ? '' : check.stderr }).toEqual({ code: 0, stderr: '' })
    const smoke = await deno(['run', ...flags, '--allow-net', '--allow-env', '--allow-read', 'deno/smoke.ts'])
    expect({ code: smoke.code, stderr: smoke.code === 0 ? '' : smoke.stderr }).toEqual({ code: 0, stderr: '' })
    const out = JSON.parse(smoke.stdout.trim().split('\n').pop()!)
    expect(out).toEqual({
      runtime: expect.stringMatching(/^deno 2\./),
      grant: 20,
      charge: { requestId: expect.any(String), charged: 6, replayed: true, attempts: 2 },
      insufficient: { required: 3000, available: 14 },
      metered: { result: 'done', charged: 3 },
      userFault: 'bad_input',
      balance: 8,
      ledgerKinds: ['capture', 'hold'],
    })
    expect(await ledgerOfRequest(org, out.charge.requestId)).toEqual([['charge', -6, 0]])
    expect(await expectBooksBalanced(org)).toEqual({ available: 8, held: 0 })
    await expectReconciled([org])
  })

  it('bundles for the browser (esbuild): the user half and supabase-js, no Node built-in, no server half', async () => {
    const result = await esbuild.build({
      stdin: {
        contents: [
          "import { createClient } from '@supabase/supabase-js'",
          "import { createTollgateClient } from '@tollgate/client'",
          'export const connect = (url, anonKey) => createTollgateClient(createClient(url, anonKey))',
        ].join('\n'),
        resolveDir: project,
        loader: 'js',
      },
      absWorkingDir: project,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    })
    expect(result.errors).toEqual([])
    const inputs = Object.keys(result.metafile.inputs)
    expect(inputs).toContain('node_modules/@tollgate/client/dist/index.js')
    expect(inputs.filter((input) => input.startsWith('node_modules/@tollgate/client/')).sort()).toEqual(
      ['errors', 'index', 'internal', 'retry', 'types', 'user-error'].map((stem) => `node_modules/@tollgate/client/dist/${stem}.js`),
    )
    const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]))
    const imports = Object.values(result.metafile.inputs).flatMap((input) => input.imports.map((i) => i.path))
    expect(imports.filter((specifier) => builtins.has(specifier) || specifier.startsWith('node:'))).toEqual([])
    const code = result.outputFiles[0]!.text
    expect(code).not.toMatch(/\brequire\(\s*["'](node:)?(fs|path|crypto|http|https|net|tls|stream|os|child_process)["']/)
    expect(code).toContain('createTollgateClient')
    expect(code).not.toContain('createTollgateServer')
  })
})
