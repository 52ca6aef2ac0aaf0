// The one way into every edge function, in this order and before any work:
//   1. OPTIONS answers the CORS preflight and does nothing else (no body read, no database);
//   2. a method outside the function's allow-list is 405;
//   3. the caller is verified here (signature, expiry, role: auth/verify.ts), whatever the
//      gateway did; a function open to devices or signed webhooks says so with access 'public'
//      and authenticates its callers its own way (a webhook signature, the app id);
//   4. the handler runs; an HttpError becomes `{error, message, ...}`, anything else a logged 500.
import { bearerToken, type Caller, verifierFromEnv, type Verify } from './auth/verify.ts'
import { HttpError, json, logEvent } from './http.ts'

export type Access =
  /** trusted servers only: a valid service_role token (or secret API key) */
  | 'service_role'
  /** a signed-in user: a valid token of role authenticated with a user id */
  | 'user'
  /** any valid token of the project (anon key included) */
  | 'any_role'
  /** no token needed: the handler authenticates its callers itself */
  | 'public'

export interface Route<A extends Access> {
  methods: readonly string[]
  access: A
  /**
   * Adds what every answer of this function carries (not the OPTIONS preflight): `refused` is
   * true for a 405, which must not touch a database. The plugin endpoints add the replica lag.
   */
  decorate?: (res: Response, refused: boolean) => Response | Promise<Response>
}

export type UserCaller = Caller & { role: 'authenticated'; userId: string }
export type CallerFor<A extends Access> = A extends 'public' ? null : A extends 'user' ? UserCaller : Caller

export type Handler<A extends Access> = (req: Request, caller: CallerFor<A>) => Promise<Response>

const corsAllowHeaders = 'authorization, apikey, x-client-info, content-type, idempotency-key, x-tollgate-org, stripe-signature'

function corsHeaders(methods: readonly string[]): Record<string, string> {
  return {
    'access-control-allow-origin': '*',
    'access-control-allow-methods': [...methods, 'OPTIONS'].join(', '),
    'access-control-allow-headers': corsAllowHeaders,
    'access-control-max-age': '86400',
  }
}

async function verifyCaller<A extends Access>(req: Request, access: A, verify: () => Verify): Promise<CallerFor<A>> {
  if (access === 'public') return null as CallerFor<A>
  const caller = await verify()(bearerToken(req))
  if (access === 'service_role' && caller.role !== 'service_role') {
    throw new HttpError(403, 'forbidden', 'this endpoint is for the service role only')
  }
  if (access === 'user' && (caller.role !== 'authenticated' || !caller.userId)) {
    throw new HttpError(401, 'unauthorized', 'sign in first: this endpoint needs a user token')
  }
  return caller as CallerFor<A>
}

function render(error: unknown, fn: string, req: Request): Response {
  if (error instanceof HttpError) {
    const headers: Record<string, string> = { ...error.headers }
    if (error.status === 401) headers['www-authenticate'] = 'Bearer'
    return json(error.status, { error: error.key, message: error.message, ...error.extra }, headers)
  }
  logEvent('error', 'unhandled_error', { fn, method: req.method, message: (error as Error)?.message ?? String(error) })
  return json(500, { error: 'internal_error', message: 'internal error' })
}

/** Builds the function's request handler: `Deno.serve(handle('name', route, handler))`. */
export function handle<A extends Access>(
  fn: string,
  route: Route<A>,
  handler: Handler<A>,
  verify: () => Verify = verifierFromEnv,
): (req: Request) => Promise<Response> {
  const cors = corsHeaders(route.methods)
  const decorate = route.decorate ?? ((res: Response) => res)
  return async (req) => {
    if (req.method === 'OPTIONS') return new Response(null, { status: 204, headers: cors })
    const started = performance.now()
    const refused = !route.methods.includes(req.method)
    let res: Response
    let key: string | undefined
    try {
      if (refused) throw new HttpError(405, 'method_not_allowed', `use ${route.methods.join(', ')}`, {}, { allow: route.methods.join(', ') })
      res = await handler(req, await verifyCaller(req, route.access, verify))
    } catch (error) {
      key = error instanceof HttpError ? error.key : 'internal_error'
      res = render(error, fn, req)
    }
    res = await decorate(res, refused)
    if (!res.headers.has('access-control-allow-origin')) res.headers.set('access-control-allow-origin', '*')
    logEvent(res.status >= 500 ? 'error' : 'info', 'request', {
      fn,
      method: req.method,
      status: res.status,
      latency_ms: Math.round(performance.now() - started),
      ...(key ? { error: key } : {}),
    })
    return res
  }
}
