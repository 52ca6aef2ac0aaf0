import * as jose from 'jose'
import { createVerifier } from './auth/verify.ts'
import { type Access, handle } from './entry.ts'
import { assertEquals } from './testing.ts'

const secret = 'a-test-jwt-secret-with-at-least-32-characters'
const userId = '5b7c3f5e-8d0a-4b8e-9a51-0c2d7e1f4a66'
const verifier = createVerifier({ jwtSecret: secret })

const sign = (claims: jose.JWTPayload) =>
  new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1m').sign(new TextEncoder().encode(secret))
const unsignedServiceRole = () => {
  const part = (value: unknown) => btoa(JSON.stringify(value)).replaceAll('=', '')
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ role: 'service_role', exp: 4102444800 })}.`
}

/** A function whose handler counts the times it did any work. */
function endpoint(access: Access, methods = ['POST']) {
  let runs = 0
  let verifications = 0
  const fn = handle('test', { methods, access }, (_req, caller) => {
    runs++
    return Promise.resolve(Response.json({ caller }))
  }, () => (token) => {
    verifications++
    return verifier(token)
  })
  return { fn, runs: () => runs, verifications: () => verifications }
}

const request = (method: string, token?: string) =>
  new Request('http://fn/test', { method, headers: token ? { authorization: `Bearer ${token}` } : {}, body: method === 'POST' ? '{}' : undefined })

Deno.test('OPTIONS answers CORS only: no verification, no work, whatever token it carries', async () => {
  const service = endpoint('service_role')
  const res = await service.fn(request('OPTIONS', unsignedServiceRole()))
  assertEquals([res.status, res.headers.get('access-control-allow-methods'), await res.text()], [204, 'POST, OPTIONS', ''])
  assertEquals([service.runs(), service.verifications()], [0, 0])
})

Deno.test('a method outside the allow-list is 405 before the caller is even looked at', async () => {
  const service = endpoint('service_role')
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
    const res = await service.fn(request(method, await sign({ role: 'service_role' })))
    assertEquals([res.status, (await res.json()).error, res.headers.get('allow')], [405, 'method_not_allowed', 'POST'], method)
  }
  assertEquals([service.runs(), service.verifications()], [0, 0])
})

Deno.test('service-only functions run for a verified service_role token and nothing else', async () => {
  const service = endpoint('service_role')
  const answers = []
  for (const token of [undefined, unsignedServiceRole(), await sign({ role: 'anon' }), await sign({ role: 'authenticated', sub: userId })]) {
    const res = await service.fn(request('POST', token))
    answers.push([res.status, (await res.json()).error])
  }
  assertEquals(answers, [[401, 'unauthorized'], [401, 'unauthorized'], [403, 'forbidden'], [403, 'forbidden']])
  assertEquals(service.runs(), 0)
  const ok = await service.fn(request('POST', await sign({ role: 'service_role' })))
  assertEquals([ok.status, (await ok.json()).caller.role, service.runs()], [200, 'service_role', 1])
})

Deno.test('user functions need a signed-in user and get the verified user id', async () => {
  const user = endpoint('user')
  const anon = await user.fn(request('POST', await sign({ role: 'anon' })))
  assertEquals([anon.status, anon.headers.get('www-authenticate')], [401, 'Bearer'])
  await anon.body?.cancel()
  const res = await user.fn(request('POST', await sign({ role: 'authenticated', sub: userId })))
  assertEquals([res.status, (await res.json()).caller.userId, user.runs()], [200, userId, 1])
})

Deno.test('public functions run without a token and get no caller', async () => {
  const open = endpoint('public')
  const res = await open.fn(request('POST'))
  assertEquals([res.status, (await res.json()).caller, open.verifications()], [200, null, 0])
})
