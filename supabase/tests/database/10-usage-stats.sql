-- The user's read RPCs: get_usage_stats (calls, outcomes, credits net of refunds, latency,
-- top operations) and get_credit_balance (available, held, next expiry).
begin;
\ir helpers/setup.psql
select plan(26);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset
select tests.personal_org(:'carol') as carol_org \gset
insert into public.credit_prices (operation, credits) values ('op_a', 2), ('op_b', 5), ('op_c', 1);
select public.grant_credits(:'alice_org', 1000, 'purchase', 'alice-1000');

-- Activity ------------------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select public.consume_credits('op_a', 'a-1');
select public.consume_credits('op_a', 'a-2', 2);
select public.consume_credits('op_a', 'a-old');
select public.consume_credits('op_b', 'b-1');
select public.consume_credits('op_c', 'c-1');
select tests.authenticate_as_service_role();
select public.refund_credits(:'alice_org', 'b-1', 'backend failed');
select public.reserve_credits(:'alice_org', :'alice', 'op_b', 'h-1', 2);
select public.capture_credits(:'alice_org', 'h-1', 1, '{"latency_ms": 100}');
select public.reserve_credits(:'alice_org', :'alice', 'op_c', 'h-2', 1);
select public.release_credits(:'alice_org', 'h-2', true, '{"latency_ms": 301, "error_code": "upstream_500"}');
select public.reserve_credits(:'alice_org', :'alice', 'op_c', 'h-3', 1);
select tests.clear_authentication();
-- a-old happened 40 days ago.
update public.credit_requests set created_at = now() - interval '40 days' where org_id = :'alice_org' and request_id = 'a-old';

-- get_usage_stats -------------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select public.get_usage_stats() as s30 \gset
select public.get_usage_stats(366) as s366 \gset
select tests.clear_authentication();

select is((:'s30'::jsonb ->> 'period_days')::int, 30, 'the default period is 30 days');
select is((:'s30'::jsonb ->> 'total_calls')::int, 7, 'total_calls counts every request in the period (held ones too)');
select is((:'s30'::jsonb ->> 'successful_calls')::int, 5, 'successful_calls: charges and captures');
select is((:'s30'::jsonb ->> 'failed_calls')::int, 1, 'failed_calls: released holds');
select is((:'s30'::jsonb ->> 'total_credits_used')::bigint, 12::bigint, 'total_credits_used is net of refunds and releases');
select is((:'s30'::jsonb ->> 'avg_latency_ms')::numeric, 200.5, 'avg_latency_ms averages the recorded latencies');
select is(
  :'s30'::jsonb -> 'top_operations',
  '[{"operation": "op_c", "calls": 3, "credits": 1}, {"operation": "op_a", "calls": 2, "credits": 6}, {"operation": "op_b", "calls": 2, "credits": 5}]'::jsonb,
  'top_operations is ordered by calls (then name), with net credits'
);
select is(
  :'s366'::jsonb - 'top_operations',
  '{"period_days": 366, "total_calls": 8, "successful_calls": 6, "failed_calls": 1, "total_credits_used": 14, "avg_latency_ms": 200.50}'::jsonb,
  'a longer period includes older calls'
);
select is(
  :'s366'::jsonb #>> '{top_operations,0,operation}', 'op_a', 'with the old call, op_a leads (3 calls, ties broken by name)'
);

select tests.authenticate_as(:'bob');
select is(
  public.get_usage_stats(7),
  '{"period_days": 7, "total_calls": 0, "successful_calls": 0, "failed_calls": 0, "total_credits_used": 0, "avg_latency_ms": 0, "top_operations": []}'::jsonb,
  'an org without calls gets zeros'
);
select throws_ok(format('select public.get_usage_stats(%s)', d), '22023', 'invalid_days', format('invalid_days: %s', d))
from unnest(array['0', '367', 'null']) d;
select throws_ok(format('select public.get_usage_stats(30, %L)', :'alice_org'), '42501', 'not_a_member', 'stats of another org: not_a_member');
select tests.authenticate_as_anon();
select throws_ok('select public.get_usage_stats()', '42501', null, 'anon cannot read usage stats');
select tests.clear_authentication();

-- get_credit_balance ----------------------------------------------------------------------------------

select public.grant_credits(:'carol_org', 100, 'purchase', 'carol-100');
select public.grant_credits(:'carol_org', 20, 'promotion', 'carol-20', '2030-01-01T00:00:00Z');
select public.grant_credits(:'carol_org', 5, 'promotion', 'carol-5', '2030-01-01T00:00:00Z');
select public.grant_credits(:'carol_org', 7, 'promotion', 'carol-7', '2031-01-01T00:00:00Z');
select (public.grant_credits(:'carol_org', 9, 'promotion', 'carol-9', '2032-01-01T00:00:00Z') ->> 'grant_id') as carol_due \gset
select public.reserve_credits(:'carol_org', :'carol', 'op_a', 'ch-1', 1);
-- carol-9 is due but the cron job has not run yet.
update public.credit_grants set expires_at = now() - interval '1 minute' where id = :'carol_due';
select results_eq(
  format('select available, held from public.credit_balances where org_id = %L', :'carol_org'),
  $$values (139::bigint, 2::bigint)$$,
  'setup: the balance row still counts the due grant'
);

select tests.authenticate_as(:'carol');
select public.get_credit_balance() as cb \gset
select is(:'cb'::jsonb ->> 'org_id', :'carol_org', 'get_credit_balance: the personal org by default');
select is((:'cb'::jsonb ->> 'available')::bigint, 130::bigint, 'available excludes due-but-unexpired grants');
select is((:'cb'::jsonb ->> 'held')::bigint, 2::bigint, 'held is what holds reserved');
select is((:'cb'::jsonb ->> 'next_expiry_at')::timestamptz, '2030-01-01T00:00:00Z'::timestamptz, 'next_expiry_at is the soonest future expiry');
select is((:'cb'::jsonb ->> 'next_expiry_amount')::bigint, 23::bigint, 'next_expiry_amount sums what remains of the grants expiring then');
select throws_ok(format('select public.get_credit_balance(%L)', :'alice_org'), '42501', 'not_a_member', 'balance of another org: not_a_member');
select tests.clear_authentication();
select results_eq(
  format('select status, available from public.credit_grants, public.credit_balances b where id = %L and b.org_id = %L', :'carol_due', :'carol_org'),
  $$values ('active', 139::bigint)$$,
  'reading the balance wrote nothing'
);

select tests.authenticate_as(:'bob');
select is(
  public.get_credit_balance(),
  jsonb_build_object('org_id', :'bob_org'::uuid, 'available', 0, 'held', 0, 'next_expiry_at', null, 'next_expiry_amount', null,
    'scheduled', 0, 'next_start_at', null, 'next_start_amount', null, 'overage', 0, 'overage_limit', 0, 'scopes', '[]'::jsonb),
  'an org without credits: zeros, no expiry, no debt, no scopes'
);
select tests.authenticate_as_anon();
select throws_ok('select public.get_credit_balance()', '42501', null, 'anon cannot read a balance');
select tests.authenticate_as_service_role();
select throws_ok(format('select public.get_credit_balance(%L)', :'carol_org'), '42501', null, 'service_role has no user RPC to call');
select tests.clear_authentication();

select * from finish();
rollback;
