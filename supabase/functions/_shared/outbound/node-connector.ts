// Connector over node:http / node:https (Deno's Node compatibility): the socket is opened to
// the checked address itself (`host` is the IP, and `lookup` can only answer that IP), while
// TLS sends the URL's hostname as SNI and verifies the certificate for it. No agent (no pooled
// connection from an earlier resolution), no redirect handling (node:http follows none).
import http from 'node:http'
import https from 'node:https'
import type { LookupFunction, Socket } from 'node:net'
import ipaddr from 'ipaddr.js'
import { type Connector, OutboundFailure, type PinnedRequest, type PinnedResponse } from './ports.ts'

export interface NodeConnectorOptions {
  /** Extra trusted CA certificates (PEM) instead of the default roots; tests only. */
  ca?: string[]
}

export function nodeConnector(options: NodeConnectorOptions = {}): Connector {
  return { send: (request) => send(request, options) }
}

function send(request: PinnedRequest, options: NodeConnectorOptions): Promise<PinnedResponse> {
  return new Promise((resolve, reject) => {
    const secure = request.protocol === 'https:'
    const family = request.address.includes(':') ? 6 : 4
    let phase: 'connecting' | 'handshake' | 'connected' = 'connecting'
    let settled = false
    let connectTimer: ReturnType<typeof setTimeout> | undefined

    const fail = (outcome: OutboundFailure['outcome'], detail: string) => {
      if (settled) return
      settled = true
      clearTimeout(connectTimer)
      request.signal.removeEventListener('abort', onAbort)
      outgoing.destroy()
      reject(new OutboundFailure(outcome, detail))
    }
    const onAbort = () => fail('timeout', `deadline reached while ${phase}`)

    const outgoing = (secure ? https : http).request({
      host: request.address,
      family,
      port: request.port,
      // Pinned: if the runtime resolves at all, it gets the checked address back.
      lookup: ((_hostname: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) =>
        opts?.all ? callback(null, [{ address: request.address, family }]) : callback(null, request.address, family)) as unknown as LookupFunction,
      method: request.method,
      path: request.path,
      headers: { ...Object.fromEntries(request.headers), host: request.hostHeader },
      agent: false,
      ...(secure
        ? {
            servername: ipaddr.isValid(request.hostname) ? undefined : request.hostname,
            rejectUnauthorized: true,
            ...(options.ca ? { ca: options.ca } : {}),
          }
        : {}),
    })

    outgoing.on('socket', (socket: Socket) => {
      connectTimer = setTimeout(() => fail('timeout', `no connection within ${request.connectTimeoutMs} ms`), request.connectTimeoutMs)
      socket.once('connect', () => {
        phase = secure ? 'handshake' : 'connected'
        if (!secure) clearTimeout(connectTimer)
      })
      socket.once('secureConnect', () => {
        phase = 'connected'
        clearTimeout(connectTimer)
      })
    })

    outgoing.on('error', (error: Error & { code?: string }) => {
      const detail = `${error.code ?? error.name}: ${error.message}`
      fail(phase === 'handshake' || /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED)/.test(error.code ?? '') ? 'tls_failed' : 'connection_failed', detail)
    })

    outgoing.on('response', (response: http.IncomingMessage) => {
      const status = response.statusCode ?? 0
      const headers = new Headers()
      for (const [name, value] of Object.entries(response.headers)) {
        if (value === undefined) continue
        for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item)
      }
      const finish = (body: Uint8Array<ArrayBuffer>) => {
        if (settled) return
        settled = true
        clearTimeout(connectTimer)
        request.signal.removeEventListener('abort', onAbort)
        resolve({ status, headers, body })
      }
      if (status >= 300 && status < 400) {
        // A redirect is an outcome: its body and its Location are never read.
        finish(new Uint8Array())
        outgoing.destroy()
        return
      }
      const declared = Number(response.headers['content-length'] ?? NaN)
      if (declared > request.maxResponseBytes) {
        fail('response_too_large', `content-length ${declared} > ${request.maxResponseBytes}`)
        return
      }
      const chunks: Uint8Array[] = []
      let size = 0
      response.on('data', (chunk: Uint8Array) => {
        size += chunk.byteLength
        if (size > request.maxResponseBytes) {
          fail('response_too_large', `more than ${request.maxResponseBytes} bytes`)
          return
        }
        chunks.push(chunk)
      })
      response.on('end', () => {
        const body = new Uint8Array(size)
        let offset = 0
        for (const chunk of chunks) {
          body.set(chunk, offset)
          offset += chunk.byteLength
        }
        finish(body)
      })
      response.on('error', (error: Error) => fail('connection_failed', `response: ${error.message}`))
    })

    if (request.signal.aborted) {
      onAbort()
      return
    }
    request.signal.addEventListener('abort', onAbort, { once: true })
    outgoing.end(request.body ?? undefined)
  })
}
