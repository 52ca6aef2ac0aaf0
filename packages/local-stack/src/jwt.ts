import crypto from 'node:crypto'

/** The JWT secret `supabase start` uses; the local stack uses the same one. */
export const defaultJwtSecret = 'super-secret-jwt-token-with-at-least-32-characters-long'

const base64url = (input: string | Buffer): string => Buffer.from(input).toString('base64url')

/** Signs an HS256 JWT, the format GoTrue issues and PostgREST/Edge Runtime verify. */
export function signJwt(payload: Record<string, unknown>, secret: string): string {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))
  const body = base64url(JSON.stringify(payload))
  const signature = crypto.createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url')
  return `${header}.${body}.${signature}`
}

/** Verifies an HS256 JWT's signature and expiry; returns its claims or null. */
export function verifyJwt(token: string, secret: string): Record<string, unknown> | null {
  const parts = token.split('.')
  if (parts.length !== 3) return null
  const [header, body, signature] = parts as [string, string, string]
  const expected = crypto.createHmac('sha256', secret).update(`${header}.${body}`).digest()
  const given = Buffer.from(signature, 'base64url')
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null
  try {
    if (JSON.parse(Buffer.from(header, 'base64url').toString()).alg !== 'HS256') return null
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>
    if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) return null
    return claims
  } catch {
    return null
  }
}

/**
 * The API keys `supabase start` prints: long-lived role JWTs (anon, service_role). With the
 * default secret these are byte-for-byte Supabase's well-known local demo keys.
 */
export function apiKey(role: 'anon' | 'service_role', secret: string): string {
  return signJwt({ iss: 'supabase-demo', role, exp: 1983812996 }, secret)
}

/** A user access token as GoTrue would issue it after sign-in. */
export function userJwt(userId: string, secret: string, options: { email?: string; expiresInSeconds?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000)
  return signJwt(
    {
      aud: 'authenticated',
      role: 'authenticated',
      sub: userId,
      email: options.email,
      iat: now,
      exp: now + (options.expiresInSeconds ?? 3600),
      iss: 'tollgate-local-stack',
      app_metadata: { provider: 'email', providers: ['email'] },
      user_metadata: {},
    },
    secret,
  )
}
