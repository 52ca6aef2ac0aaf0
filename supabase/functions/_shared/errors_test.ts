import { signature } from './alerts.ts'
import { isUnreachable } from './db-errors.ts'
import { fromRpcError } from './pg-errors.ts'
import { assertEquals } from './testing.ts'

Deno.test('documented RPC errors keep their key, numbers and HTTP status', () => {
  const insufficient = fromRpcError({ code: 'PT402', message: 'insufficient_credits', detail: '{"required": 5, "available": 2}' })
  assertEquals([insufficient?.status, insufficient?.key, insufficient?.extra], [402, 'insufficient_credits', { required: 5, available: 2 }])
  assertEquals(fromRpcError({ code: '22023', message: 'invalid_quantity', detail: '{}' })?.status, 400)
  assertEquals(fromRpcError({ code: '42501', message: 'not_a_member' })?.status, 403)
})

Deno.test('anything else is not mistaken for a documented error', () => {
  assertEquals(fromRpcError({ code: '23505', message: 'duplicate key value violates unique constraint "x"' }), undefined)
  assertEquals(fromRpcError({ code: 'XX000', message: 'balance_out_of_sync' }), undefined)
  assertEquals(fromRpcError(new Error('socket hang up')), undefined)
})

Deno.test('outages are told apart from bugs', () => {
  assertEquals(isUnreachable({ code: 'ECONNREFUSED' }), true)
  assertEquals(isUnreachable({ code: '57P01' }), true)
  assertEquals(isUnreachable({ code: '08006' }), true)
  assertEquals(isUnreachable({ code: '42P01' }), false)
})

Deno.test('alert signatures are HMAC-SHA256 of "<t>.<body>", hex', async () => {
  // Reference computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
  assertEquals(await signature('whsec_test', 1700000000, '{"a":1}'), '38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789')
})
