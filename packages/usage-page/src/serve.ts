// Serves a built usage page (static files) and its config.json. Mounted by the local stack's
// gateway under /usage/; any static host does the same job for a deployed page.
import fs from 'node:fs'
import type http from 'node:http'
import path from 'node:path'
import type { PageConfig } from './page-config.ts'

export type { PageConfig }

const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
}

/** The page talks to the project's API (and its Realtime websocket) and nothing else. */
export function contentSecurityPolicy(config: PageConfig): string {
  const api = new URL(config.supabaseUrl)
  const ws = `${api.protocol === 'https:' ? 'wss:' : 'ws:'}//${api.host}`
  return [
    "default-src 'self'",
    `connect-src 'self' ${api.origin} ${ws}`,
    "img-src 'self' data:",
    "style-src 'self'",
    "script-src 'self'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ')
}

/** A handler for paths below the page's mount point (`/`, `/app.js`, `/config.json`, ...). */
export function usagePageHandler(distDir: string, config: PageConfig): (req: http.IncomingMessage, res: http.ServerResponse, subpath: string) => void {
  const headers = {
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'content-security-policy': contentSecurityPolicy(config),
  }
  return (req, res, subpath) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed')
      return
    }
    if (subpath === '/config.json') {
      res.writeHead(200, { ...headers, 'content-type': types['.json'] }).end(JSON.stringify(config))
      return
    }
    const name = subpath === '/' || subpath === '' ? 'index.html' : subpath.slice(1)
    // Files of the bundle folder only: no subfolders, no dot files, no way out of it.
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name) || !(path.extname(name) in types)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
      return
    }
    const file = path.join(distDir, name)
    fs.readFile(file, (error, content) => {
      if (error) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
        return
      }
      res.writeHead(200, { ...headers, 'content-type': types[path.extname(name)]! })
      res.end(req.method === 'HEAD' ? undefined : content)
    })
  }
}
