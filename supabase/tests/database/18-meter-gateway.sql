-- Tool gateway records: reserve_meter_request binds a key to its caller and its request
-- fingerprint; settle_meter_request settles the hold and stores the answer's bytes in one
-- transaction; meter_requests is the service role's alone.
begin;
\ir helpers/setup.psql
select plan(30);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'carol') as carol_org \gset
insert into public.org_members (org_id, user_id, role) values (:'alice_org', :'bob', 'member');
insert into public.credit_prices (operation, credits) values ('meter_op', 4);
select public.grant_credits(:'alice_org', 100, 'purchase', 'alice-100') is not null as granted \gset

select encode(sha256('request a'), 'hex') as fp_a, encode(sha256('request b'), 'hex') as fp_b \gset

create temporary view alice_balance as
  select available, held from public.credit_balances where org_id = :'alice_org';
grant select on alice_balance to service_role;

-- Reserve -----------------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.reserve_meter_request(null, :'alice', 'meter_op', 'k-1', 2, 60, decode(:'fp_a', 'hex')) as k1 \gset
select is(
  :'k1'::jsonb - 'hold_expires_at',
  jsonb_build_object('request_id', 'k-1', 'org_id', :'alice_org', 'operation', 'meter_op', 'quantity', 2, 'status', 'held', 'charged', 0,
    'reserved', 8, 'balance_before', 100, 'balance_after', 92, 'replayed', false),
  'reserve_meter_request holds price x quantity in the personal org when no org is named'
);
select tests.clear_authentication();
select results_eq(
  format('select user_id, encode(fingerprint, %L), status, body from public.meter_requests where org_id = %L and request_id = %L', 'hex', :'alice_org', 'k-1'),
  format($$values (%L::uuid, %L, null::integer, null::bytea)$$, :'alice', :'fp_a'),
  'the key is recorded with its caller and fingerprint, no answer yet'
);

select tests.authenticate_as_service_role();
select is((public.reserve_meter_request(:'alice_org', :'alice', 'meter_op', 'k-1', 2, 60, decode(:'fp_a', 'hex')) ->> 'replayed')::boolean, true,
  'the same caller with the same request replays the hold');
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'k-1', 2, 60, decode(%L, 'hex'))$$, :'alice_org', :'alice', :'fp_b'),
  'PT409', 'idempotency_conflict', 'the same key with another request is a conflict');
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'k-1', 3, 60, decode(%L, 'hex'))$$, :'alice_org', :'alice', :'fp_a'),
  'PT409', 'idempotency_conflict', 'the same key with another quantity is a conflict');
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'k-1', 2, 60, decode(%L, 'hex'))$$, :'alice_org', :'bob', :'fp_a'),
  'PT409', 'idempotency_key_in_use', 'another member of the org cannot use the key');
select is(tests.error_of(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'k-1', 2, 60, decode(%L, 'hex'))$$, :'alice_org', :'bob', :'fp_a')) -> 'detail',
  '{"request_id": "k-1"}'::jsonb, 'the refusal says nothing about the first request');
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'k-9', 1, 60, decode(%L, 'hex'))$$, :'alice_org', :'carol', :'fp_a'),
  '42501', 'not_a_member', 'a non-member cannot reserve in the org');
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'k-9', 1, 60, '\x00'::bytea)$$, :'alice_org', :'alice'),
  '22023', 'invalid_fingerprint', 'the fingerprint is a SHA-256');
select throws_ok(format($$select public.reserve_meter_request(%L, null, 'meter_op', 'k-9', 1, 60, decode(%L, 'hex'))$$, :'alice_org', :'fp_a'),
  '22023', 'invalid_user', 'the gateway reserves for a user');
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'k-9', 30, 60, decode(%L, 'hex'))$$, :'alice_org', :'alice', :'fp_a'),
  'PT402', 'insufficient_credits', 'too few credits: nothing is reserved');
select public.reserve_credits(:'alice_org', :'alice', 'meter_op', 'outside-1') is not null as outside \gset
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'outside-1', 1, 60, decode(%L, 'hex'))$$, :'alice_org', :'alice', :'fp_a'),
  'PT409', 'idempotency_conflict', 'a key used outside the gateway is not the gateway''s');
select results_eq('select available, held from alice_balance', $$values (88::bigint, 12::bigint)$$, 'refusals hold nothing');
select tests.clear_authentication();
select is((select count(*)::integer from public.meter_requests where org_id = :'alice_org'), 1, 'refusals record nothing');

-- Settle ------------------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.settle_meter_request(:'alice_org', 'k-1', true, '{"latency_ms": 12, "backend_endpoint": "meter_op", "success": true}',
  200, 'application/octet-stream', '\x00ff00c328'::bytea) as s1 \gset
select is((:'s1'::jsonb ->> 'charged')::integer, 8, 'a capture charges the hold');
select tests.clear_authentication();
select results_eq(
  format('select status, content_type, body, completed_at is not null from public.meter_requests where org_id = %L and request_id = %L', :'alice_org', 'k-1'),
  $$values (200, 'application/octet-stream', '\x00ff00c328'::bytea, true)$$,
  'the answer is stored byte for byte, NUL bytes and all'
);
select results_eq(
  format('select status, backend_endpoint from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'k-1'),
  $$values ('captured', 'meter_op')$$,
  'the request is captured, its backend recorded by name'
);

select tests.authenticate_as_service_role();
select is((public.settle_meter_request(:'alice_org', 'k-1', true, '{}', 500, 'text/plain', 'other'::bytea) ->> 'replayed')::boolean, true,
  'settling again replays');
select tests.clear_authentication();
select is((select body from public.meter_requests where org_id = :'alice_org' and request_id = 'k-1'), '\x00ff00c328'::bytea, 'the first answer stays');

select tests.authenticate_as_service_role();
select public.reserve_meter_request(:'alice_org', :'alice', 'meter_op', 'k-2', 1, 60, decode(:'fp_b', 'hex')) is not null as k2 \gset
select throws_ok(format($$select public.settle_meter_request(%L, 'k-2', false, '{}', 502, 'application/json', decode(repeat('61', 1048577), 'hex'))$$, :'alice_org'),
  '22023', 'invalid_response', 'an answer over 1 MiB is refused');
select throws_ok(format($$select public.settle_meter_request(%L, 'k-2', null, '{}', 200, null, '\x'::bytea)$$, :'alice_org'),
  '22023', 'invalid_response', 'capture or release must be said');
select is((public.settle_meter_request(:'alice_org', 'k-2', false, '{"error_code": "backend_timeout"}', 504, 'application/json', '{"error":"backend_timeout"}'::bytea) ->> 'status'),
  'released', 'a release charges nothing');
select throws_ok(format($$select public.settle_meter_request(%L, 'outside-1', true, '{}', 200, null, '\x'::bytea)$$, :'alice_org'),
  'PT404', 'unknown_request', 'a hold made outside the gateway is not settled here');
select tests.clear_authentication();
select results_eq(
  format($$select request_id, status from public.credit_requests where org_id = %L and request_id in ('k-2', 'outside-1') order by 1$$, :'alice_org'),
  $$values ('k-2', 'released'), ('outside-1', 'held')$$,
  'the refused settle rolled its capture back'
);
select results_eq('select available, held from alice_balance', $$values (88::bigint, 4::bigint)$$, 'balance: 8 charged, 4 still held by the outside hold');

-- Who may call and read ---------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'u-1', 1, 60, decode(%L, 'hex'))$$, :'alice_org', :'alice', :'fp_a'),
  '42501', null, 'a user cannot reserve through the gateway RPC');
select throws_ok(format($$select public.settle_meter_request(%L, 'k-2', true, '{}', 200, null, '\x'::bytea)$$, :'alice_org'),
  '42501', null, 'a user cannot settle');
select throws_ok('select * from public.meter_requests', '42501', null, 'a user cannot read meter_requests');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.reserve_meter_request(%L, %L, 'meter_op', 'a-1', 1, 60, decode(%L, 'hex'))$$, :'alice_org', :'alice', :'fp_a'),
  '42501', null, 'anon cannot reserve');
select throws_ok('select * from public.meter_requests', '42501', null, 'anon cannot read meter_requests');
select tests.clear_authentication();

select * from finish();
rollback;
