// CheckoutStore over the primary database: the caller's membership and role, read from
// org_members (the body's org id is only a question, this is the answer).
import type postgres from 'postgres'
import { unavailableAs } from '../db-errors.ts'
import type { CheckoutStore, Membership } from './checkout.ts'

export function checkoutStore(sql: postgres.Sql): CheckoutStore {
  return unavailableAs('database_unavailable', {
    async membership(userId, orgId) {
      const rows = await sql<Membership[]>`
        select m.org_id, m.role from public.org_members m
        where m.user_id = ${userId}::uuid
          and m.org_id = coalesce(${orgId}::uuid, (select o.id from public.orgs o where o.personal_user_id = ${userId}::uuid))`
      return rows[0]
    },
  } satisfies CheckoutStore)
}
