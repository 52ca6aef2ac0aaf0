import { jwtVerify, SignJWT, type JWTPayload } from 'jose'

/** The JWT secret `supabase start` uses; the local stack uses the same one. */
export const defaultJwtSecret = 'super-secret-jwt-token-with-at-least-32-characters-long'

const key = (secret: string) => new TextEncoder().encode(secret)

/** Signs an HS256 JWT, the format GoTrue issues and PostgREST/Edge Runtime verify. */
export function signJwt(payload: JWTPayload, secret: string): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key(secret))
}

/** Verifies an HS256 JWT's signature and expiry; returns its claims or null. */
export async function verifyJwt(token: string, secret: string): Promise<JWTPayload | null> {
  try {
    return (await jwtVerify(token, key(secret), { algorithms: ['HS256'] })).payload
  } catch {
    return null
  }
}

/**
 * The API keys `supabase start` prints: long-lived role JWTs (anon, service_role). With the
 * default secret these are byte-for-byte Supabase's well-known local demo keys.
 */
export function apiKey(role: 'anon' | 'service_role', secret: string): Promise<string> {
  return signJwt({ iss: 'supabase-demo', role, exp: 1983812996 }, secret)
}

/** A user access token as GoTrue would issue it after sign-in. */
export function userJwt(userId: string, secret: string, options: { email?: string; expiresInSeconds?: number } = {}): Promise<string> {
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
