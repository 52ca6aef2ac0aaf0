import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { verifyJwt } from './jwt.ts'

export interface GatewayRoutes {
  postgrestPort: number
  /** function name → local port and whether the gateway verifies the caller's JWT first */
  functions: Map<string, { port: number; verifyJwt: boolean }>
  jwtSecret: string
  /** Handlers by mount point (`/usage` → the usage page, `/v1` → the Stripe stand-in, ...); a handler gets the path below its mount. */
  pages?: Map<string, (req: http.IncomingMessage, res: http.ServerResponse, subpath: string) => void>
}

const json = (res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

const restCors = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
  'access-control-allow-headers': 'authorization, apikey, content-type, content-profile, accept-profile, prefer, range, x-client-info',
  'access-control-expose-headers': 'content-range, content-location',
}

/**
 * The API gateway on :54321 with Supabase's paths: `/rest/v1/*` → PostgREST and
 * `/functions/v1/<name>/*` → that function (which sees `/<name>/*`, as on Edge Runtime).
 * Like Supabase's gateway it demands a valid API key on /rest/v1 and, for functions with
 * `verify_jwt` on, a valid JWT in Authorization.
 */
export function startGateway(routes: GatewayRoutes, port: number): Promise<http.Server> {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    const bearer = (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '')

    if (url.pathname.startsWith('/rest/v1/') || url.pathname === '/rest/v1') {
      if (req.method === 'OPTIONS') return void res.writeHead(204, restCors).end()
      const apikey = (req.headers.apikey as string | undefined) ?? url.searchParams.get('apikey') ?? ''
      if (!apikey) return json(res, 401, { message: 'No API key found in request', hint: 'send the anon or service_role key in the apikey header' }, restCors)
      const claims = await verifyJwt(apikey, routes.jwtSecret)
      if (!claims || (claims.role !== 'anon' && claims.role !== 'service_role')) {
        return json(res, 401, { message: 'Invalid API key' }, restCors)
      }
      const headers = { ...req.headers, authorization: req.headers.authorization ?? `Bearer ${apikey}` }
      return proxy(req, res, routes.postgrestPort, url.pathname.slice('/rest/v1'.length) || '/', url.search, headers, restCors)
    }

    const fn = /^\/functions\/v1\/([^/?]+)(\/.*)?$/.exec(url.pathname)
    if (fn) {
      const [, name, rest = ''] = fn as unknown as [string, string, string | undefined]
      const target = routes.functions.get(name)
      if (!target) return json(res, 404, { code: 'NOT_FOUND', message: 'Requested function was not found' })
      if (target.verifyJwt && req.method !== 'OPTIONS' && !(await verifyJwt(bearer, routes.jwtSecret))) {
        return json(res, 401, { code: 401, message: 'Invalid JWT' })
      }
      return proxy(req, res, target.port, `/${name}${rest}`, url.search, req.headers)
    }

    for (const [mount, page] of routes.pages ?? []) {
      if (url.pathname === mount) {
        res.writeHead(301, { location: `${mount}/${url.search}` })
        return void res.end()
      }
      if (url.pathname.startsWith(`${mount}/`)) return page(req, res, url.pathname.slice(mount.length))
    }

    if (url.pathname.startsWith('/auth/v1')) {
      return json(res, 501, { message: 'GoTrue is not part of the docker-free local stack: mint user JWTs with the JWT secret (see packages/local-stack/README.md)' })
    }
    json(res, 404, { message: `no route: the local gateway serves /rest/v1, /functions/v1${[...(routes.pages?.keys() ?? [])].map((m) => `, ${m}/`).join('')}` })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}

function proxy(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  port: number,
  path: string,
  search: string,
  headers: http.IncomingHttpHeaders,
  extraHeaders: http.OutgoingHttpHeaders = {},
): void {
  const upstream = http.request(
    { host: '127.0.0.1', port, method: req.method, path: `${path}${search}`, headers: { ...headers, host: `127.0.0.1:${port}` } },
    (upstreamRes) => {
      // The upstream answered before reading the whole request (e.g. it refused an oversized
      // body): answer, then close the connection instead of leaving the client streaming into
      // a keep-alive socket nobody reads.
      const early = !req.complete
      res.writeHead(upstreamRes.statusCode ?? 502, { ...upstreamRes.headers, ...extraHeaders, ...(early ? { connection: 'close' } : {}) })
      upstreamRes.pipe(res)
      if (early) res.once('finish', () => closeAfterEarlyAnswer(req, upstream))
    },
  )
  upstream.on('error', (error) => {
    if (!res.headersSent) json(res, 502, { message: `upstream on :${port} unavailable: ${error.message}` })
    else res.destroy()
  })
  req.pipe(upstream)
}

function closeAfterEarlyAnswer(req: http.IncomingMessage, upstream: http.ClientRequest): void {
  if (req.complete) return
  req.unpipe(upstream)
  upstream.destroy()
  req.resume() // discard what is still arriving while the answer drains
  req.socket.end()
  setTimeout(() => req.socket.destroy(), 1000).unref()
}

export const gatewayPort = (server: http.Server): number => (server.address() as AddressInfo).port
