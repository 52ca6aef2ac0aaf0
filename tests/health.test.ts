import { describe, expect, it } from 'vitest'
import { env } from './support/env.ts'

describe('/functions/v1/health', () => {
  it('reports primary and replica reachable, the subscription live and its lag', async () => {
    const res = await fetch(`${env.SUPABASE_URL}/functions/v1/health`, { headers: { Authorization: `Bearer ${env.SUPABASE_ANON_KEY}` } })
    expect(res.status).toBe(200)
    const body = await res.json()
    expect(body.status).toBe('ok')
    expect(body.primary.reachable).toBe(true)
    expect(body.replica).toMatchObject({ reachable: true, subscribed: true })
    expect(body.primary.replication).not.toBeNull()
    expect(body.primary.replication.lag_bytes).toBeGreaterThanOrEqual(0)
  })

  it('requires a JWT (verify_jwt)', async () => {
    const res = await fetch(`${env.SUPABASE_URL}/functions/v1/health`)
    expect(res.status).toBe(401)
    await res.body?.cancel()
  })
})
