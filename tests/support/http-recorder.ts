import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Recorded {
  method: string
  path: string
  headers: http.IncomingHttpHeaders
  body: string
  /** The body exactly as received (binary-safe). */
  bytes: Buffer
}

export interface Answer {
  status: number
  /** a string or bytes (sent as is) or anything else (sent as JSON) */
  body?: unknown
  delayMs?: number
  headers?: Record<string, string>
}

/** How the server answers a request: at once, or after some asynchronous work (a promise). */
export type Reply = (req: Recorded) => Answer | Promise<Answer>

/**
 * A local HTTP server on a free loopback port that records every request and answers with
 * `reply` — a stand-in for a metered backend, Stripe's API or an org's webhook.
 */
export async function startRecorder(reply: Reply): Promise<{ url: string; requests: Recorded[]; close(): Promise<void> }> {
  const requests: Recorded[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const bytes = Buffer.concat(chunks)
      const recorded = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: bytes.toString('utf8'), bytes }
      requests.push(recorded)
      void Promise.resolve()
        .then(() => reply(recorded))
        .catch((error: unknown): Answer => ({ status: 500, body: { error: String(error) } }))
        .then((answer) =>
          setTimeout(() => {
            if (res.destroyed) return
            res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers })
            res.end(answer.body === undefined ? '' : typeof answer.body === 'string' || answer.body instanceof Uint8Array ? answer.body : JSON.stringify(answer.body))
          }, answer.delayMs ?? 0),
        )
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
