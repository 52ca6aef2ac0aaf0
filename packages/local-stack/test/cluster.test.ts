import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { Cluster } from '../src/postgres.ts'

// A primary created before `supabase_admin` owned the cluster has `postgres` as its bootstrap
// superuser, which cannot be demoted in place: the stack must say so and how to recreate it,
// not start a primary where migrations would run as a superuser again.
const home = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-cluster-'))
afterAll(() => fs.rmSync(home, { recursive: true, force: true }))

it('refuses an existing cluster whose superuser is not the one the stack needs, naming the way out', async () => {
  fs.mkdirSync(path.join(home, 'data'))
  fs.writeFileSync(path.join(home, 'data', 'PG_VERSION'), '15\n')
  const primary = new Cluster({ name: 'primary', home, port: 0, settings: {}, superuser: 'supabase_admin' })
  await expect(primary.init()).rejects.toThrow(/created with `postgres` as its superuser; this stack needs `supabase_admin`.*`npm run reset`/)
  // The replica keeps `postgres` as its superuser: the same folder is fine for it.
  await expect(new Cluster({ name: 'replica', home, port: 0, settings: {} }).init()).resolves.toBe(false)
})
