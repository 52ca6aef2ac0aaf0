import crypto from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { userJwt, verifyJwt } from './jwt.ts'
import { readBody } from './read-body.ts'

/**
 * A local stand-in for the few Supabase Auth (GoTrue) endpoints supabase-js calls for an email +
 * password sign-in, so that a page in `"auth": "supabase"` mode can be driven against the local
 * stack, which has no GoTrue. It is a project URL of its own (127.0.0.1, a free port):
 *
 * - `POST /auth/v1/token?grant_type=password` checks the email and password against the accounts
 *   it was given and answers a session whose access token is a user JWT minted exactly as the
 *   stack mints them (`userJwt`), so PostgREST and the functions accept it; a wrong email or
 *   password answers what GoTrue answers: 400 `invalid_credentials` "Invalid login credentials";
 * - `GET /auth/v1/user` answers the user of a valid access token (403 `bad_jwt` otherwise);
 * - `POST /auth/v1/logout` answers 204;
 * - any other `/auth/v1/...` answers 404 (no sign-up, magic links, refresh or OAuth here);
 * - every other path (`/rest/v1/...`, `/functions/v1/...`) is proxied to the stack's gateway
 *   unchanged, so data reads reach the real PostgREST with the session's token.
 *
 * The auth endpoints, like Kong in front of GoTrue, want an `apikey` signed with the stack's
 * secret. Passwords live in memory only; nothing here reads or writes auth.users.
 */
export interface AuthStandinAccount {
  /** auth.users.id: the JWT's `sub`. */
  id: string
  email: string
  password: string
}

export interface AuthStandin {
  /** The project URL to hand to supabase-js (`http://127.0.0.1:<port>`). */
  url: string
  close(): Promise<void>
}

// What GoTrue (through Kong) allows a browser to send.
const authCors = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, PUT, DELETE, OPTIONS',
  'access-control-allow-headers': 'authorization, apikey, content-type, x-client-info, x-supabase-api-version',
  'access-control-expose-headers': 'x-supabase-api-version',
}

// supabase-js asks for API version 2024-01-01: errors are `{ code: "<error code>", message }`.
function authError(res: http.ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { ...authCors, 'content-type': 'application/json', 'x-supabase-api-version': '2024-01-01' })
  res.end(JSON.stringify({ code, message }))
}

const sameSecret = (a: string, b: string): boolean => {
  const [x, y] = [crypto.createHash('sha256').update(a).digest(), crypto.createHash('sha256').update(b).digest()]
  return crypto.timingSafeEqual(x, y)
}

export async function startAuthStandin(options: { gatewayUrl: string; jwtSecret: string; accounts: AuthStandinAccount[] }): Promise<AuthStandin> {
  const gateway = new URL(options.gatewayUrl)
  // A stand-in for local tests: it forwards to this machine only.
  if (!['127.0.0.1', 'localhost'].includes(gateway.hostname)) throw new Error(`the auth stand-in proxies to a local gateway only, not ${gateway.host}`)
  const byEmail = new Map(options.accounts.map((a) => [a.email.toLowerCase(), a]))
  const byId = new Map(options.accounts.map((a) => [a.id, a]))
  const createdAt = new Date().toISOString()

  const userOf = (account: AuthStandinAccount) => ({
    id: account.id,
    aud: 'authenticated',
    role: 'authenticated',
    email: account.email,
    email_confirmed_at: createdAt,
    phone: '',
    app_metadata: { provider: 'email', providers: ['email'] },
    user_metadata: {},
    identities: [],
    created_at: createdAt,
    updated_at: createdAt,
    last_sign_in_at: new Date().toISOString(),
    is_anonymous: false,
  })

  const auth = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> => {
    if (req.method === 'OPTIONS') return void res.writeHead(204, authCors).end()
    const apikey = req.headers.apikey
    const keyClaims = typeof apikey === 'string' ? await verifyJwt(apikey, options.jwtSecret) : null
    if (!keyClaims || !['anon', 'service_role'].includes(String(keyClaims.role))) {
      return authError(res, 401, 'no_authorization', 'No valid API key found in request')
    }
    const route = `${req.method} ${url.pathname}`
    if (route === 'POST /auth/v1/token') {
      if (url.searchParams.get('grant_type') !== 'password') {
        return authError(res, 400, 'validation_failed', 'the local auth stand-in supports grant_type=password only')
      }
      let body: { email?: unknown; password?: unknown }
      try {
        body = JSON.parse(await readBody(req)) as typeof body
      } catch {
        return authError(res, 400, 'bad_json', 'Could not parse request body as JSON')
      }
      const account = typeof body.email === 'string' ? byEmail.get(body.email.trim().toLowerCase()) : undefined
      if (!account || typeof body.password !== 'string' || !sameSecret(body.password, account.password)) {
        return authError(res, 400, 'invalid_credentials', 'Invalid login credentials')
      }
      const expiresIn = 3600
      const session = {
        access_token: await userJwt(account.id, options.jwtSecret, { email: account.email, expiresInSeconds: expiresIn }),
        token_type: 'bearer',
        expires_in: expiresIn,
        expires_at: Math.floor(Date.now() / 1000) + expiresIn,
        refresh_token: crypto.randomBytes(16).toString('hex'),
        user: userOf(account),
      }
      res.writeHead(200, { ...authCors, 'content-type': 'application/json', 'x-supabase-api-version': '2024-01-01' })
      return void res.end(JSON.stringify(session))
    }
    if (route === 'GET /auth/v1/user') {
      const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1]
      const claims = bearer ? await verifyJwt(bearer, options.jwtSecret) : null
      const account = typeof claims?.sub === 'string' ? byId.get(claims.sub) : undefined
      if (!account) return authError(res, 403, 'bad_jwt', 'invalid JWT: unable to parse or verify signature')
      res.writeHead(200, { ...authCors, 'content-type': 'application/json', 'x-supabase-api-version': '2024-01-01' })
      return void res.end(JSON.stringify(userOf(account)))
    }
    if (route === 'POST /auth/v1/logout') return void res.writeHead(204, authCors).end()
    return authError(res, 404, 'not_found', `the local auth stand-in has no ${route} (it implements password sign-in only)`)
  }

  // Everything that is not Auth goes to the gateway as it came (method, path, headers, body).
  const proxy = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const upstream = http.request(
      { host: gateway.hostname, port: gateway.port, method: req.method, path: req.url, headers: { ...req.headers, host: gateway.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ message: `auth stand-in: the gateway did not answer (${error.message})` }))
    })
    req.pipe(upstream)
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://standin')
    if (url.pathname === '/auth/v1' || url.pathname.startsWith('/auth/v1/')) {
      auth(req, res, url).catch((error: unknown) => {
        if (!res.headersSent) authError(res, 500, 'unexpected_failure', (error as Error).message)
        else res.end()
      })
    } else {
      proxy(req, res)
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
