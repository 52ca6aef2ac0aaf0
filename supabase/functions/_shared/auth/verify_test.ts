import * as jose from 'jose'
import { HttpError } from '../http.ts'
import { assertEquals } from '../testing.ts'
import { createVerifier, keySourcesFromEnv, type Verify } from './verify.ts'

const secret = 'a-test-jwt-secret-with-at-least-32-characters'
const userId = '5b7c3f5e-8d0a-4b8e-9a51-0c2d7e1f4a66'
const now = () => Math.floor(Date.now() / 1000)

function hs256(claims: jose.JWTPayload, key = secret): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(key))
}

/** An unsigned token, as an attacker would send it. */
function unsigned(claims: Record<string, unknown>): string {
  const part = (value: unknown) => btoa(JSON.stringify(value)).replaceAll('=', '').replaceAll('+', '-').replaceAll('/', '_')
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`
}

async function refusal(verify: Verify, token: string): Promise<string> {
  try {
    await verify(token)
  } catch (error) {
    if (error instanceof HttpError) return `${error.status} ${error.key}`
    throw error
  }
  return 'accepted'
}

const verify = createVerifier({ jwtSecret: secret, secretKeys: ['sb_secret_abc123'] })

Deno.test('a valid HS256 token names its role and, for users, the user', async () => {
  const service = await verify(await hs256({ role: 'service_role', exp: now() + 60 }))
  assertEquals([service.role, service.userId], ['service_role', null])
  const user = await verify(await hs256({ role: 'authenticated', sub: userId, exp: now() + 60 }))
  assertEquals([user.role, user.userId], ['authenticated', userId])
})

Deno.test('unsigned, forged, expired and incomplete tokens are refused with 401', async () => {
  const cases: Array<[string, Promise<string> | string]> = [
    ['alg none', unsigned({ role: 'service_role', exp: now() + 60 })],
    ['other secret', hs256({ role: 'service_role', exp: now() + 60 }, 'another-secret-of-at-least-32-characters!!')],
    ['expired', hs256({ role: 'service_role', exp: now() - 5 })],
    ['no expiry', hs256({ role: 'service_role' })],
    ['no role', hs256({ exp: now() + 60 })],
    ['unknown role', hs256({ role: 'supabase_admin', exp: now() + 60 })],
    ['user without id', hs256({ role: 'authenticated', exp: now() + 60 })],
    ['user with a non-uuid id', hs256({ role: 'authenticated', sub: 'admin', exp: now() + 60 })],
    ['not a JWT', 'hello'],
    ['empty', ''],
    ['unknown secret key', 'sb_secret_abc124'],
  ]
  for (const [what, token] of cases) assertEquals(await refusal(verify, await token), '401 unauthorized', what)
})

Deno.test('a known secret API key acts as service_role', async () => {
  assertEquals((await verify('sb_secret_abc123')).role, 'service_role')
})

Deno.test('asymmetric tokens verify against the project JWKS, inline or fetched', async () => {
  const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true })
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
  const token = await new jose.SignJWT({ role: 'authenticated', sub: userId })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setExpirationTime('1m')
    .sign(privateKey)

  assertEquals((await createVerifier({ jwks: { keys: [jwk] } })(token)).userId, userId, 'inline')

  const server = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen: () => {} }, () => Response.json({ keys: [jwk] }))
  try {
    const jwksUrl = new URL(`http://127.0.0.1:${server.addr.port}/auth/v1/.well-known/jwks.json`)
    assertEquals((await createVerifier({ jwksUrl })(token)).userId, userId, 'fetched')
  } finally {
    await server.shutdown()
  }

  // A token signed by a key outside the set, and the HS256-with-the-public-key confusion.
  const other = await jose.generateKeyPair('ES256')
  const stranger = await new jose.SignJWT({ role: 'service_role' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('1m').sign(other.privateKey)
  const onlyJwks = createVerifier({ jwks: { keys: [jwk] } })
  assertEquals(await refusal(onlyJwks, stranger), '401 unauthorized', 'foreign key')
  assertEquals(await refusal(onlyJwks, await hs256({ role: 'service_role', exp: now() + 60 }, JSON.stringify(jwk))), '401 unauthorized', 'HS256 without a secret')
})

Deno.test('keys come from the variables Supabase injects', () => {
  const env: Record<string, string> = {
    SUPABASE_URL: 'https://abc.supabase.co/',
    SUPABASE_JWT_SECRET: secret,
    SUPABASE_JWKS: '[{"kty":"EC","crv":"P-256","x":"x","y":"y"}]',
    SUPABASE_SECRET_KEYS: '{"default":"sb_secret_one","ci":"sb_secret_two"}',
  }
  const sources = keySourcesFromEnv((name) => env[name])
  assertEquals(sources.jwtSecret, secret)
  assertEquals(sources.jwks?.keys.length, 1)
  assertEquals(sources.jwksUrl?.href, 'https://abc.supabase.co/auth/v1/.well-known/jwks.json')
  assertEquals(sources.secretKeys, ['sb_secret_one', 'sb_secret_two'])
})
