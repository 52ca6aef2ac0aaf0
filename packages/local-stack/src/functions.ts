import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { denoBinary } from './binaries.ts'
import type { EdgeFunction } from './config.ts'
import { functionsDir } from './paths.ts'
import { freePort, isPortOpen, runChecked, spawnService, stopChild, waitFor } from './process.ts'

export const denoConfig = path.join(functionsDir, 'deno.json')

/**
 * Environment every Deno process of ours gets. The system CA store is trusted alongside
 * Mozilla's so npm: downloads work behind TLS-inspecting proxies (Node and curl already trust it).
 */
export function denoEnv(denoDir: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    DENO_DIR: denoDir,
    DENO_NO_UPDATE_CHECK: '1',
    DENO_TLS_CA_STORE: 'mozilla,system',
    NO_COLOR: '1',
  }
}

/** Downloads the functions' npm: dependencies up front, so a failure is one clear error. */
export async function cacheFunctionDependencies(entrypoints: string[], denoDir: string): Promise<void> {
  if (entrypoints.length === 0) return
  await runChecked('caching edge function dependencies (deno cache)', denoBinary(), ['cache', `--config=${denoConfig}`, ...entrypoints], {
    env: denoEnv(denoDir),
  })
}

export interface RunningFunction extends EdgeFunction {
  port: number
  child: ChildProcess
}

/**
 * Runs each edge function in its own Deno process (as Edge Runtime isolates them), listening
 * where `Deno.serve` is told by DENO_SERVE_ADDRESS, with the environment Supabase injects.
 * `watch` reloads a function when its files change, like `supabase functions serve`.
 */
export async function startFunctions(
  functions: EdgeFunction[],
  options: { env: Record<string, string>; logDir: string; denoDir: string; watch: boolean },
): Promise<RunningFunction[]> {
  const running: RunningFunction[] = []
  await cacheFunctionDependencies(functions.map((fn) => fn.entrypoint), options.denoDir)
  try {
    await Promise.all(
      functions.map(async (fn) => {
        const port = await freePort()
        const logFile = path.join(options.logDir, `function-${fn.name}.log`)
        const child = spawnService(
          denoBinary(),
          [
            'run',
            '--no-prompt',
            '--allow-net',
            '--allow-env',
            '--allow-read',
            '--allow-sys',
            `--config=${denoConfig}`,
            ...(options.watch ? ['--watch'] : []),
            fn.entrypoint,
          ],
          {
            logFile,
            env: {
              ...denoEnv(options.denoDir),
              DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}`,
              SB_EXECUTION_ID: fn.name,
              ...options.env,
            },
          },
        )
        running.push({ ...fn, port, child })
        await waitFor(
          `edge function ${fn.name}`,
          async () => {
            if (child.exitCode !== null) throw new Error('exited')
            return isPortOpen(port)
          },
          30_000,
          `see ${logFile}`,
        )
      }),
    )
  } catch (error) {
    await Promise.all(running.map((fn) => stopChild(fn.child)))
    throw error
  }
  return running
}
