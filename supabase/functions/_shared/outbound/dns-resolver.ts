// Resolver over Deno's DNS client: A and AAAA records, asked in parallel. A type with no
// records counts as none; resolution fails only when neither type could be asked.
import type { Resolver } from './ports.ts'

export function dnsResolver(): Resolver {
  return {
    async resolve(hostname, signal) {
      const lookups = await Promise.allSettled((['A', 'AAAA'] as const).map((type) => Deno.resolveDns(hostname, type, { signal })))
      const addresses: string[] = []
      const errors: unknown[] = []
      for (const lookup of lookups) {
        if (lookup.status === 'fulfilled') addresses.push(...lookup.value)
        else if (lookup.reason instanceof Deno.errors.NotFound) continue
        else errors.push(lookup.reason)
      }
      if (errors.length === lookups.length) throw errors[0]
      return addresses
    },
  }
}
