import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { gatewayPort, startGateway } from '../src/gateway.ts'

// A function that refuses a body before reading it all (an oversized upload): the client gets
// the answer at once and the connection is closed, not left hanging on a keep-alive socket.
let fn: http.Server
let gateway: http.Server

beforeAll(async () => {
  fn = http.createServer((_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' })
    res.end('{"error":"invalid_request"}')
  })
  await new Promise<void>((resolve) => fn.listen(0, '127.0.0.1', resolve))
  const port = (fn.address() as AddressInfo).port
  gateway = await startGateway({ postgrestPort: 1, functions: new Map([['upload', { port, verifyJwt: false }]]), jwtSecret: 'x'.repeat(32) }, 0)
})

afterAll(async () => {
  gateway.closeAllConnections()
  fn.closeAllConnections()
  await new Promise((resolve) => gateway.close(resolve))
  await new Promise((resolve) => fn.close(resolve))
})

it('closes the connection after an early answer to a streamed upload', async () => {
  const agent = new http.Agent({ keepAlive: true })
  const started = Date.now()
  const outcome = await new Promise<{ status: number; connection: string | undefined; closedAfterMs: number }>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: gatewayPort(gateway), path: '/functions/v1/upload', method: 'POST', agent, headers: { 'transfer-encoding': 'chunked' } })
    let status = 0
    let connection: string | undefined
    req.on('response', (res) => {
      status = res.statusCode ?? 0
      connection = res.headers.connection
      res.resume()
    })
    req.on('socket', (socket) => socket.on('close', () => resolve({ status, connection, closedAfterMs: Date.now() - started })))
    req.on('error', () => {})
    const chunk = Buffer.alloc(64 * 1024, 120)
    let sent = 0
    const write = () => {
      while (sent < 256 * 1024 * 1024 && !req.destroyed) {
        sent += chunk.length
        if (!req.write(chunk)) return void req.once('drain', write)
      }
      req.end()
    }
    write()
  })
  agent.destroy()
  expect(outcome.status).toBe(400)
  expect(outcome.connection).toBe('close')
  expect(outcome.closedAfterMs).toBeLessThan(3000)
})
