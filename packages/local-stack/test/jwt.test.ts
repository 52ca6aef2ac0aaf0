import { expect, it } from 'vitest'
import { apiKey, defaultJwtSecret, userJwt, verifyJwt } from '../src/jwt.ts'

// With the default secret the stack's API keys are Supabase's well-known local demo keys, so
// anything written against `supabase start` works unchanged.
it('mints the same API keys as supabase start', async () => {
  expect(await apiKey('anon', defaultJwtSecret)).toBe(
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0',
  )
  expect(await apiKey('service_role', defaultJwtSecret)).toBe(
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU',
  )
})

it('verifies its own tokens and refuses expired or foreign ones', async () => {
  const id = '5b7c3f5e-8d0a-4b8e-9a51-0c2d7e1f4a66'
  expect((await verifyJwt(await userJwt(id, defaultJwtSecret), defaultJwtSecret))?.sub).toBe(id)
  expect(await verifyJwt(await userJwt(id, defaultJwtSecret, { expiresInSeconds: -10 }), defaultJwtSecret)).toBeNull()
  expect(await verifyJwt(await userJwt(id, 'another-secret-that-is-at-least-32-chars'), defaultJwtSecret)).toBeNull()
})
