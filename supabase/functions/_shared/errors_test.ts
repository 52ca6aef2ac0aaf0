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
