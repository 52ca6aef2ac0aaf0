// Closed-loop HTTP load on loopback with autocannon: `connections` clients, each sending its next
// request when the previous answer arrives, for a bounded time. Every answer's latency is kept.
import autocannon from 'autocannon'
import { assertRunning } from './lifecycle.ts'
import type { Sample } from './stats.ts'

export interface HttpLoad {
  url: string
  connections: number
  seconds: number
  /** Builds each request: headers and body may differ per request (ids, users). */
  request: () => { headers: Record<string, string>; body: string }
}

export async function httpLoad(spec: HttpLoad): Promise<Sample> {
  assertRunning()
  const url = new URL(spec.url)
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) throw new Error(`load tests target loopback only, not ${url.hostname}`)
  const latencies: number[] = []
  let failed = 0
  const statuses = new Map<number, number>()
  const instance = autocannon({
    url: url.origin,
    connections: spec.connections,
    duration: spec.seconds,
    pipelining: 1,
    timeout: 10,
    requests: [
      {
        method: 'POST',
        path: url.pathname,
        setupRequest: (req: autocannon.Request) => {
          const { headers, body } = spec.request()
          return { ...req, headers, body }
        },
      },
    ],
  }) as unknown as autocannon.Instance & Promise<autocannon.Result>
  // Without a callback autocannon returns its emitter made thenable (its typings split the two).
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1)
    if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
    else failed += 1
  })
  const result = await instance
  failed += result.errors + result.timeouts
  const seconds = (new Date(result.finish).getTime() - new Date(result.start).getTime()) / 1000
  if (failed > 0) {
    const byStatus = [...statuses].map(([code, n]) => `${code}×${n}`).join(' ')
    throw new Error(`${spec.url} at ${spec.connections} connections: ${failed} failed requests (${byStatus}; errors ${result.errors}, timeouts ${result.timeouts})`)
  }
  return { count: latencies.length, seconds, latencies_ms: Float64Array.from(latencies), failed }
}
