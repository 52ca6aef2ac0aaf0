import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const repoRoot = path.resolve(benchDir, '..')
export const resultsDir = path.join(benchDir, 'results')

/** Scratch space for pgbench scripts and logs (git-ignored, removed at the end of a run). */
export function tmpDir(): string {
  const dir = path.join(resultsDir, '.tmp', String(process.pid))
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

export function removeTmpDir(): void {
  fs.rmSync(path.join(resultsDir, '.tmp', String(process.pid)), { recursive: true, force: true })
  try {
    fs.rmdirSync(path.join(resultsDir, '.tmp'))
  } catch {
    // another run's scratch folder is still there
  }
}
