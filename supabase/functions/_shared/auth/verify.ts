// Who is calling: every edge function verifies its caller's token itself (signature, expiry,
// role) with jose. The platform's gateway may verify too (verify_jwt), but it lets OPTIONS
// through for CORS and is one setting away from off: it is a second line, never the only one.
import * as jose from 'jose'
import { HttpError } from '../http.ts'

export type Role = 'anon' | 'authenticated' | 'service_role'

export interface Caller {
  role: Role
  /** The signed-in user (`sub`) for role authenticated; null otherwise. */
  userId: string | null
  claims: jose.JWTPayload
}

/** Where the keys that sign callers' tokens come from (any combination). */
export interface KeySources {
  /** The project's HS256 JWT secret (legacy keys, GoTrue's tokens, the local stack). */
  jwtSecret?: string
  /** The project's JWKS for asymmetric signing keys, inline (Supabase injects SUPABASE_JWKS). */
  jwks?: jose.JSONWebKeySet
  /** ...or fetched (and cached) from this URL. */
  jwksUrl?: URL
  /** Secret API keys (`sb_secret_...`): a caller presenting one acts as service_role. */
  secretKeys?: string[]
}

export type Verify = (token: string) => Promise<Caller>

const roles: ReadonlySet<string> = new Set<Role>(['anon', 'authenticated', 'service_role'])
const asymmetricAlgorithms = ['ES256', 'RS256', 'EdDSA']
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const encoder = new TextEncoder()

const unauthorized = (message: string) => new HttpError(401, 'unauthorized', message)

async function sha256(value: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(value)))
}

/** Compares digests, so the time taken says nothing about how much of a key matched. */
async function sameSecret(given: string, expected: Uint8Array[]): Promise<boolean> {
  const digest = await sha256(given)
  let found = false
  for (const candidate of expected) {
    let difference = 0
    for (let i = 0; i < digest.length; i++) difference |= digest[i]! ^ candidate[i]!
    found ||= difference === 0
  }
  return found
}

export function createVerifier(sources: KeySources): Verify {
  const secret = sources.jwtSecret ? encoder.encode(sources.jwtSecret) : undefined
  const keySet = sources.jwks
    ? jose.createLocalJWKSet(sources.jwks)
    : sources.jwksUrl
    ? jose.createRemoteJWKSet(sources.jwksUrl, { timeoutDuration: 3000, cooldownDuration: 30_000 })
    : undefined
  const secretKeyDigests = Promise.all((sources.secretKeys ?? []).filter(Boolean).map(sha256))

  return async (token) => {
    if (!token) throw unauthorized('send Authorization: Bearer <token>')
    if (token.startsWith('sb_secret_')) {
      if (await sameSecret(token, await secretKeyDigests)) return { role: 'service_role', userId: null, claims: {} }
      throw unauthorized('unknown secret API key')
    }
    let alg: string | undefined
    try {
      alg = jose.decodeProtectedHeader(token).alg
    } catch {
      throw unauthorized('the token is not a JWT')
    }
    let payload: jose.JWTPayload
    try {
      const options = { requiredClaims: ['exp', 'role'] }
      if (alg === 'HS256' && secret) {
        payload = (await jose.jwtVerify(token, secret, { ...options, algorithms: ['HS256'] })).payload
      } else if (alg && asymmetricAlgorithms.includes(alg) && keySet) {
        payload = (await jose.jwtVerify(token, keySet, { ...options, algorithms: asymmetricAlgorithms })).payload
      } else {
        throw unauthorized(`tokens signed with ${alg ?? 'no algorithm'} are not accepted here`)
      }
    } catch (error) {
      if (error instanceof HttpError) throw error
      if (error instanceof jose.errors.JWTExpired) throw unauthorized('the token has expired')
      throw unauthorized('the token is not valid: bad signature or claims')
    }
    const role = String(payload.role)
    if (!roles.has(role)) throw unauthorized(`role ${role} is not accepted here`)
    if (role === 'authenticated' && !uuid.test(payload.sub ?? '')) throw unauthorized('a user token must name its user (sub)')
    return { role: role as Role, userId: role === 'authenticated' ? payload.sub! : null, claims: payload }
  }
}

function parseJwks(value: string): jose.JSONWebKeySet {
  const parsed = JSON.parse(value) as jose.JSONWebKeySet | jose.JWK[]
  return Array.isArray(parsed) ? { keys: parsed } : parsed
}

/**
 * Keys from the environment Supabase injects: SUPABASE_JWT_SECRET (HS256), SUPABASE_JWKS (inline
 * JWKS) or SUPABASE_JWKS_URL (default: the project's Auth JWKS endpoint, fetched only when an
 * asymmetric token arrives), SUPABASE_SECRET_KEYS / SUPABASE_SECRET_KEY (sb_secret_ keys).
 */
export function keySourcesFromEnv(env: (name: string) => string | undefined = (name) => Deno.env.get(name)): KeySources {
  const jwks = env('SUPABASE_JWKS')
  const url = env('SUPABASE_URL')
  const jwksUrl = env('SUPABASE_JWKS_URL') ?? (url ? `${url.replace(/\/$/, '')}/auth/v1/.well-known/jwks.json` : undefined)
  const secretKeys = env('SUPABASE_SECRET_KEYS')
  return {
    jwtSecret: env('SUPABASE_JWT_SECRET') || undefined,
    jwks: jwks ? parseJwks(jwks) : undefined,
    jwksUrl: jwksUrl ? new URL(jwksUrl) : undefined,
    secretKeys: [...(secretKeys ? Object.values(JSON.parse(secretKeys) as Record<string, string>) : []), env('SUPABASE_SECRET_KEY') ?? ''].filter(Boolean),
  }
}

let fromEnv: Verify | undefined
/** The process's verifier, built once from the environment. */
export const verifierFromEnv = (): Verify => (fromEnv ??= createVerifier(keySourcesFromEnv()))

/** The bearer token of a request ('' when there is none). */
export const bearerToken = (req: Request): string => (req.headers.get('authorization') ?? '').replace(/^Bearer\s+/i, '').trim()
