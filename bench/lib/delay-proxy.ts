// A TCP proxy on 127.0.0.1 that delays every chunk by a fixed one-way time in each direction,
// so a client and its database pay a network's round trip although both sit on this host.
//
// Per message, not per connection: each chunk read from one side is written to the other
// `oneWayMs` after it was read, whatever came before it (pipelined chunks are not delayed
// behind one another, as on a wire). Order is kept: one delay for every chunk means the chunks
// are due in the order they arrived, so one FIFO holds them all, sorted by deadline.
//
// Timers: Node's setTimeout counts whole milliseconds (a 0.25 ms timer fires after 1-2 ms),
// and spinning on setImmediate until a deadline would burn the core the database needs. A
// worker thread sleeps in Atomics.wait, which takes a fractional timeout, until the head of
// the FIFO is due, and wakes this thread (one message); this thread then writes every chunk
// that is due by then, in one batch, and arms the worker for the next head. Waking costs
// time of its own (the kernel's timer slack, about 50 µs, then the message: about 0.1 ms
// here), so the proxy measures how late each wake-up comes after the deadline it armed and
// arms that much earlier (a moving average, never more than the delay itself): a chunk is
// written about `oneWayMs` after it was read, never before its deadline minus that estimate.
// The achieved delay is measured, not assumed: see the scenario that uses the proxy.
//
// Bounded: per connection and direction, bytes queued here plus bytes the destination socket
// has not sent yet stay under `maxQueuedBytes`; past it, the source socket is paused (TCP flow
// control then slows the sender) until the backlog drains.
import net from 'node:net'
import { Worker } from 'node:worker_threads'

export interface DelayProxyOptions {
  /** Where the real server listens. */
  upstream: { host: string; port: number }
  /** Added delay per direction, in milliseconds (0: forward at once, to measure the hop itself). */
  oneWayMs: number
  /** Backlog per connection and direction before the source is paused. */
  maxQueuedBytes?: number
}

export interface DelayProxyStats {
  connections: number
  chunks: number
  bytes: number
  /** Times a source was paused because its backlog reached maxQueuedBytes. */
  pauses: number
  /** Wake-ups of this thread by the timer worker (each writes a batch of due chunks). */
  batches: number
  /** How late a wake-up comes after its deadline (moving average, ms): the proxy arms this much early. */
  wake_latency_ms: number
}

export interface DelayProxy {
  host: string
  port: number
  oneWayMs(): number
  /** Changes the delay of chunks read from now on (a proxy started with a delay keeps one). */
  setOneWayMs(ms: number): void
  stats(): DelayProxyStats
  close(): Promise<void>
}

/** One direction of one connection. */
interface Pipe {
  from: net.Socket
  to: net.Socket
  /** Bytes read from `from`, not yet handed to `to`. */
  queued: number
  paused: boolean
}

interface Item {
  due_ms: number
  pipe: Pipe
  /** null: `from` ended; end `to` once everything before it is written. */
  chunk: Buffer | null
}

// Milliseconds on the monotonic clock that both threads read (performance.now() has a
// per-thread origin).
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6

// The timer thread. ctl[0] is bumped whenever the deadline changes, ctl[1] asks it to stop;
// due[0] is the deadline (Infinity: nothing queued). It posts one message per deadline reached
// and then sleeps until it is armed again.
const timerSource = `
const { parentPort, workerData } = require('node:worker_threads')
const ctl = new Int32Array(workerData, 0, 2)
const due = new Float64Array(workerData, 8, 1)
const nowMs = () => Number(process.hrtime.bigint()) / 1e6
for (;;) {
  const generation = Atomics.load(ctl, 0)
  if (Atomics.load(ctl, 1) === 1) break
  const wait_ms = due[0] - nowMs()
  if (wait_ms > 0) {
    // Infinity: sleep until armed; otherwise until the deadline, or earlier if re-armed.
    Atomics.wait(ctl, 0, generation, wait_ms === Infinity ? undefined : wait_ms)
    continue
  }
  parentPort.postMessage(0)
  Atomics.wait(ctl, 0, generation)
}
`

export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  let oneWayMs = options.oneWayMs
  const maxQueued = options.maxQueuedBytes ?? 1 << 20
  if (!(oneWayMs >= 0 && oneWayMs < 1000)) throw new Error(`delay proxy: one-way delay ${oneWayMs} ms is out of range`)
  const stats: DelayProxyStats = { connections: 0, chunks: 0, bytes: 0, pauses: 0, batches: 0, wake_latency_ms: 0 }
  const sockets = new Set<net.Socket>()

  const shared = new SharedArrayBuffer(16)
  const ctl = new Int32Array(shared, 0, 2)
  const due = new Float64Array(shared, 8, 1)
  due[0] = Infinity
  const timer = oneWayMs > 0 ? new Worker(timerSource, { eval: true, workerData: shared }) : undefined
  timer?.unref()
  // Wake-up latency estimate; deadlines are armed this much before a chunk is due.
  let lead_ms = 0
  let armed_ms = Infinity
  const arm = (deadline: number) => {
    armed_ms = deadline
    due[0] = deadline
    Atomics.add(ctl, 0, 1)
    Atomics.notify(ctl, 0)
  }

  // The FIFO: items[head..] are waiting, oldest (earliest due) first.
  let items: Array<Item | undefined> = []
  let head = 0

  const resumeIfDrained = (pipe: Pipe) => {
    if (pipe.paused && pipe.queued + pipe.to.writableLength < maxQueued / 2) {
      pipe.paused = false
      pipe.from.resume()
    }
  }
  const deliver = (item: Item) => {
    const { pipe, chunk } = item
    if (pipe.to.destroyed) return
    if (chunk === null) {
      pipe.to.end()
      return
    }
    pipe.queued -= chunk.length
    pipe.to.write(chunk)
    stats.chunks += 1
    stats.bytes += chunk.length
    resumeIfDrained(pipe)
  }
  const flush = () => {
    stats.batches += 1
    const now = nowMs()
    // A message posted for an earlier deadline can arrive after a re-arm: no sample then.
    const late_ms = now - armed_ms
    if (late_ms >= 0) lead_ms += (Math.min(late_ms, oneWayMs) - lead_ms) / 16
    while (head < items.length && items[head]!.due_ms - lead_ms <= now) {
      const item = items[head]!
      items[head] = undefined
      head += 1
      deliver(item)
    }
    if (head === items.length) {
      items = []
      head = 0
      armed_ms = Infinity
      due[0] = Infinity
    } else {
      if (head > 4096) {
        items = items.slice(head)
        head = 0
      }
      arm(items[head]!.due_ms - lead_ms)
    }
  }
  timer?.on('message', flush)

  const enqueue = (pipe: Pipe, chunk: Buffer | null) => {
    if (!timer) {
      deliver({ due_ms: 0, pipe, chunk })
      return
    }
    const item = { due_ms: nowMs() + oneWayMs, pipe, chunk }
    items.push(item)
    // An empty FIFO has no deadline armed; otherwise the head is due no later than this one.
    if (items.length - head === 1) arm(item.due_ms - lead_ms)
  }

  const connect = (pipe: Pipe) => {
    pipe.from.on('data', (chunk: Buffer) => {
      pipe.queued += chunk.length
      enqueue(pipe, chunk)
      if (!pipe.paused && pipe.queued + pipe.to.writableLength >= maxQueued) {
        pipe.paused = true
        stats.pauses += 1
        pipe.from.pause()
      }
    })
    pipe.from.on('end', () => enqueue(pipe, null))
    pipe.to.on('drain', () => resumeIfDrained(pipe))
  }

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    stats.connections += 1
    const upstream = net.connect({ host: options.upstream.host, port: options.upstream.port, allowHalfOpen: true, noDelay: true })
    const pair = [client, upstream]
    for (const socket of pair) {
      sockets.add(socket)
      // An error or a close on either side ends both at once (queued chunks are dropped).
      socket.on('error', () => pair.forEach((s) => s.destroy()))
      socket.on('close', () => {
        sockets.delete(socket)
        pair.forEach((s) => s.destroy())
      })
    }
    connect({ from: client, to: upstream, queued: 0, paused: false })
    connect({ from: upstream, to: client, queued: 0, paused: false })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port

  return {
    host: '127.0.0.1',
    port,
    oneWayMs: () => oneWayMs,
    setOneWayMs(ms) {
      // Chunks already queued keep their deadlines (and their order: the FIFO never reorders).
      if (!timer || !(ms > 0 && ms < 1000)) throw new Error(`delay proxy: cannot change the one-way delay from ${oneWayMs} to ${ms} ms`)
      oneWayMs = ms
    },
    stats: () => ({ ...stats, wake_latency_ms: Math.round(lead_ms * 1000) / 1000 }),
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      if (timer) {
        Atomics.store(ctl, 1, 1)
        Atomics.add(ctl, 0, 1)
        Atomics.notify(ctl, 0)
        await timer.terminate()
      }
    },
  }
}
