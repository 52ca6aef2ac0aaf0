import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import { StackError } from './log.ts'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a command to completion and captures its output; never throws on a non-zero exit. */
export function run(cmd: string, args: string[], options: SpawnOptions & { input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    child.on('error', (error) => reject(new StackError(`cannot run ${cmd}: ${error.message}`)))
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }))
    // A child may exit before it reads its input (EPIPE): its exit code tells what happened,
    // so the write error is not ours to raise.
    child.stdin!.on('error', () => {})
    child.stdin!.end(options.input ?? '')
  })
}

/** Runs a command and throws a StackError carrying its last output lines when it fails. */
export async function runChecked(what: string, cmd: string, args: string[], options: SpawnOptions & { input?: string } = {}): Promise<RunResult> {
  const result = await run(cmd, args, options)
  if (result.code !== 0) {
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-8).join('\n')
    throw new StackError(`${what} failed (exit ${result.code}):\n${tail}`)
  }
  return result
}

/** Starts a long-running service with its output appended to a log file. */
export function spawnService(cmd: string, args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string; logFile: string }): ChildProcess {
  const out = fs.openSync(options.logFile, 'a')
  const child = spawn(cmd, args, { env: options.env, cwd: options.cwd, stdio: ['ignore', out, out] })
  fs.closeSync(out)
  return child
}

/** Polls `probe` until it returns true; throws with `what` and a hint after `timeoutMs`. */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, hint = ''): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let delay = 50
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return
    await new Promise((resolve) => setTimeout(resolve, delay))
    delay = Math.min(delay * 2, 500)
  }
  throw new StackError(`${what} did not become ready within ${Math.round(timeoutMs / 1000)} s${hint ? `: ${hint}` : ''}`)
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function isPortOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** True when we can bind 127.0.0.1:port ourselves. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * Where free ports are picked: below Linux's ephemeral range (32768–60999), from which every
 * outgoing connection takes its local port. A port picked from that range (listen(0) hands one
 * out) can be taken by some client's connection before the service that was meant to have it
 * binds it; below it, only another listener can.
 */
const pickRange = { from: 20000, to: 32000 }
const handedOut = new Set<number>()

/** A port free right now and not handed out before by this process (ephemeral stacks). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = pickRange.from + Math.floor(Math.random() * (pickRange.to - pickRange.from))
    if (handedOut.has(port) || !(await isPortFree(port))) continue
    handedOut.add(port)
    return port
  }
  throw new StackError(`no free port found between ${pickRange.from} and ${pickRange.to}`)
}

/** Stops a child process: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}
