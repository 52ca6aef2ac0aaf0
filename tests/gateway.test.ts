import { describe, expect, it } from 'vitest'
import { env } from './support/env.ts'

// The gateway's contract is Supabase's: an API key on /rest/v1, a JWT on verify_jwt functions.
describe('API gateway', () => {
  it('rejects /rest/v1 without an API key and with a forged one', async () => {
    const missing = await fetch(`${env.SUPABASE_URL}/rest/v1/orgs`)
    expect(missing.status).toBe(401)
    const forged = await fetch(`${env.SUPABASE_URL}/rest/v1/orgs`, {
      headers: { apikey: `${env.SUPABASE_ANON_KEY.slice(0, -4)}AAAA` },
    })
    expect(forged.status).toBe(401)
  })

  it('answers 404 for a function that does not exist', async () => {
    const res = await fetch(`${env.SUPABASE_URL}/functions/v1/no-such-function`, {
      headers: { Authorization: `Bearer ${env.SUPABASE_ANON_KEY}` },
    })
    expect(res.status).toBe(404)
    await res.body?.cancel()
  })
})
