// Resolver over Deno's DNS client: A and AAAA records, asked in parallel. A type with no
// records counts as none; resolution fails only when neither type could be asked. Where a
// runtime has no Deno.resolveDns, the system resolver (node:dns lookup, all families) answers.
import { lookup } from 'node:dns/promises'
import type { Resolver } from './ports.ts'

export function dnsResolver(): Resolver {
  if (typeof Deno.resolveDns !== 'function') return systemResolver()
  return {
    async resolve(hostname, signal) {
      const lookups = await Promise.allSettled((['A', 'AAAA'] as const).map((type) => Deno.resolveDns(hostname, type, { signal })))
      const addresses: string[] = []
      const errors: unknown[] = []
      for (const result of lookups) {
        if (result.status === 'fulfilled') addresses.push(...result.value)
        else if (result.reason instanceof Deno.errors.NotFound) continue
        else errors.push(result.reason)
      }
      if (errors.length === lookups.length) throw errors[0]
      return addresses
    },
  }
}

/** The operating system's resolver (getaddrinfo: hosts file, then DNS), every address of every family. */
export function systemResolver(): Resolver {
  return {
    async resolve(hostname, signal) {
      const answer = lookup(hostname, { all: true, verbatim: true })
      const aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason)
        signal.addEventListener('abort', () => reject(signal.reason), { once: true })
      })
      try {
        return (await Promise.race([answer, aborted])).map((entry) => entry.address)
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOTFOUND') return []
        throw error
      }
    },
  }
}
