import fs from 'node:fs'
import { expect, it } from 'vitest'
import { primaryDb } from './support/db.ts'

// The configuration half of the outbound URL rule (private.outbound_url_refusal, used by
// set_alert_webhook and set_meter_backend) against the one case table the delivery-time guard
// is also tested with (supabase/functions/_shared/outbound/url-rule_test.ts).

interface Case {
  url: string
  expect: 'allowed' | 'invalid_url' | 'url_not_allowed'
  rule?: string
  local_http?: boolean
  private_origins?: string[]
}

const table = JSON.parse(fs.readFileSync(new URL('../supabase/functions/_shared/outbound/url-rule-cases.json', import.meta.url), 'utf8')) as { cases: Case[] }

it('the database validator decides every case of the shared table as the guard does', async () => {
  expect(table.cases.length).toBeGreaterThan(100)
  const { rows } = await primaryDb.query<{ i: number; refusal: { key: string; rule?: string } | null }>(
    `select x.i, private.outbound_url_refusal(c.url, c.local_http, c.private_origins) as refusal
     from jsonb_array_elements($1::jsonb) with ordinality as x(c0, i),
          lateral (select x.c0 ->> 'url' as url, coalesce((x.c0 ->> 'local_http')::boolean, false) as local_http,
                          coalesce(array(select jsonb_array_elements_text(x.c0 -> 'private_origins')), '{}') as private_origins) c
     order by x.i`,
    [JSON.stringify(table.cases)],
  )
  const failures = rows
    .map((row, index) => {
      const c = table.cases[index]!
      const got = row.refusal === null ? 'allowed' : `${row.refusal.key}${row.refusal.rule ? `:${row.refusal.rule}` : ''}`
      const want = `${c.expect}${c.rule ? `:${c.rule}` : ''}`
      return got === want ? null : `${JSON.stringify(c)} → ${got}`
    })
    .filter((failure) => failure !== null)
  expect(rows).toHaveLength(table.cases.length)
  expect(failures).toEqual([])
})
