import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { contentSecurityPolicy, usagePageHandler, type PageConfig } from '../src/index.ts'

// The page's static server: the bundle's own files and config.json, nothing else.

const config: PageConfig = { supabaseUrl: 'http://127.0.0.1:54321', anonKey: 'anon-key', auth: 'local', pollSeconds: 5 }
let server: http.Server
let base: string

beforeAll(async () => {
  // A folder of its own holds the page and, beside it, the file a traversal would reach.
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'usage-page-serve-'))
  const dir = path.join(parent, 'page')
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><p>page</p>')
  fs.writeFileSync(path.join(dir, 'app.js'), 'console.log(1)')
  fs.writeFileSync(path.join(dir, '.env'), 'SECRET=1')
  fs.writeFileSync(path.join(parent, 'outside.txt'), 'outside')
  const handler = usagePageHandler(dir, config)
  server = http.createServer((req, res) => handler(req, res, new URL(req.url ?? '/', 'http://x').pathname))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined))))

describe('usagePageHandler', () => {
  it('serves index.html, the bundle and config.json with a CSP that allows only the page and the API', async () => {
    const index = await fetch(`${base}/`)
    expect([index.status, index.headers.get('content-type'), await index.text()]).toEqual([200, 'text/html; charset=utf-8', '<!doctype html><p>page</p>'])
    expect(index.headers.get('content-security-policy')).toBe(contentSecurityPolicy(config))
    expect(contentSecurityPolicy(config)).toContain("connect-src 'self' http://127.0.0.1:54321 ws://127.0.0.1:54321")
    expect(index.headers.get('x-content-type-options')).toBe('nosniff')
    const js = await fetch(`${base}/app.js`)
    expect([js.status, js.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8'])
    await js.body?.cancel()
    expect(await (await fetch(`${base}/config.json`)).json()).toEqual(config)
  })

  it('answers 404 for anything outside the bundle folder, dot files and unknown types, and 405 for writes', async () => {
    for (const p of ['/.env', '/%2e%2e/outside.txt', '/..%2foutside.txt', '/sub/app.js', '/app.map', '/missing.js']) {
      const res = await fetch(`${base}${p}`)
      expect([p, res.status]).toEqual([p, 404])
      await res.body?.cancel()
    }
    const post = await fetch(`${base}/config.json`, { method: 'POST', body: '{}' })
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD'])
    await post.body?.cancel()
  })
})
