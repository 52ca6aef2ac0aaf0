-- Holds (pre-authorisation): reserve_credits, capture_credits, release_credits and
-- expire_stale_holds, the call record from p_result, and who may call them.
begin;
\ir helpers/setup.psql
select plan(63);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'carol') as carol_org \gset
insert into public.credit_prices (operation, credits) values ('test_op', 2);
select (public.grant_credits(:'alice_org', 100, 'purchase', 'alice-100') ->> 'grant_id') as alice_grant \gset

create temporary view alice_balance as
  select available, held from public.credit_balances where org_id = :'alice_org';
grant select on alice_balance to service_role;

-- Reserve -----------------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-1', 5) as h1 \gset
select is(
  :'h1'::jsonb - 'org_id' - 'hold_expires_at',
  '{"request_id": "h-1", "operation": "test_op", "quantity": 5, "status": "held", "charged": 0, "reserved": 10, "balance_before": 100, "balance_after": 90, "replayed": false}'::jsonb,
  'reserve_credits holds price x quantity'
);
select is((:'h1'::jsonb ->> 'hold_expires_at')::timestamptz, now() + interval '300 seconds', 'the hold expires after the default TTL (300 s)');
select results_eq('select available, held from alice_balance', $$values (90::bigint, 10::bigint)$$, 'held credits leave available and go to held');
select is((select remaining from public.credit_grants where id = :'alice_grant'), 90::bigint, 'held credits are taken from the grant');
select results_eq(
  format('select kind, amount, held_delta, balance_after, held_after from public.credit_ledger where org_id = %L and request_id = %L', :'alice_org', 'h-1'),
  $$values ('hold', -10::bigint, 10::bigint, 90::bigint, 10::bigint)$$,
  'the ledger records the hold'
);
select is((public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-1', 5) ->> 'replayed')::boolean, true, 'reserving the same request id replays');
select results_eq('select available, held from alice_balance', $$values (90::bigint, 10::bigint)$$, 'a replayed reserve holds nothing more');
select throws_ok(format($$select public.reserve_credits(%L, null, 'test_op', 'h-1', 6)$$, :'alice_org'), 'PT409', 'idempotency_conflict',
  'reserving the same request id with another quantity is a conflict');

-- Capture -----------------------------------------------------------------------------------------

select public.capture_credits(:'alice_org', 'h-1', 3, '{"latency_ms": 120, "backend_endpoint": "https://api.example.test/v1/search", "output": {"hits": 3}}') as c1 \gset
select is((:'c1'::jsonb ->> 'charged')::bigint, 6::bigint, 'a partial capture charges unit_price x quantity');
select is(:'c1'::jsonb ->> 'status', 'captured', 'the hold is captured');
select is((:'c1'::jsonb ->> 'replayed')::boolean, false, 'the first capture is not a replay');
select results_eq('select available, held from alice_balance', $$values (94::bigint, 0::bigint)$$, 'the rest of the hold is released');
select is((select remaining from public.credit_grants where id = :'alice_grant'), 94::bigint, 'released credits go back to the grant');
select results_eq(
  format('select kind, amount, held_delta from public.credit_ledger where org_id = %L and request_id = %L order by id', :'alice_org', 'h-1'),
  $$values ('hold', -10::bigint, 10::bigint), ('capture', 0::bigint, -6::bigint), ('release', 4::bigint, -4::bigint)$$,
  'the ledger records hold, capture and the released rest'
);
select results_eq(
  format('select charged, balance_after, success, backend_error, latency_ms, backend_endpoint, error_code, output_summary, completed_at is not null from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'h-1'),
  $$values (6::bigint, 94::bigint, true, false, 120, 'https://api.example.test/v1/search', null::text, '{"hits": 3}'::jsonb, true)$$,
  'p_result lands on the request'
);
select is((public.capture_credits(:'alice_org', 'h-1', 3) ->> 'replayed')::boolean, true, 'capturing twice with the same quantity replays');
select results_eq('select available, held from alice_balance', $$values (94::bigint, 0::bigint)$$, 'a replayed capture charges nothing more');
select throws_ok(format($$select public.capture_credits(%L, 'h-1', 2)$$, :'alice_org'), 'PT409', 'idempotency_conflict',
  'capturing again with another quantity is a conflict');
select throws_ok(format($$select public.release_credits(%L, 'h-1')$$, :'alice_org'), 'PT409', 'hold_not_active', 'a captured hold cannot be released');

select public.reserve_credits(:'alice_org', null, 'test_op', 'h-2', 2);
select throws_ok(format($$select public.capture_credits(%L, 'h-2', %s)$$, :'alice_org', q), '22023', 'invalid_quantity', format('capture: invalid_quantity %s', q))
from unnest(array['3', '-1']) q;
select throws_ok(format($$select public.capture_credits(%L, 'h-2', 1, '{"latency_ms": "12"}')$$, :'alice_org'), '22023', 'invalid_result',
  'capture: latency_ms as a string is an invalid_result');
select throws_ok(format($$select public.capture_credits(%L, 'h-2', 1, '[]')$$, :'alice_org'), '22023', 'invalid_result',
  'capture: p_result must be an object');
select throws_ok(format($$select public.release_credits(%L, 'h-2', true, '{"success": "no"}')$$, :'alice_org'), '22023', 'invalid_result',
  'release: success as a string is an invalid_result');
select throws_ok(format($$select public.capture_credits(%L, 'h-2', 1, '{"latency_ms": -1}')$$, :'alice_org'), '22023', 'invalid_result',
  'capture: a negative latency is an invalid_result');
select is((select status from public.credit_requests where org_id = :'alice_org' and request_id = 'h-2'), 'held', 'failed captures left the hold held');
select results_eq('select available, held from alice_balance', $$values (90::bigint, 4::bigint)$$, 'failed captures moved no credits');

-- Release -------------------------------------------------------------------------------------------

select public.release_credits(:'alice_org', 'h-2', true, '{"error_code": "upstream_timeout", "latency_ms": 30000.4}') as r2 \gset
select is(:'r2'::jsonb ->> 'status', 'released', 'release_credits releases the hold');
select is((:'r2'::jsonb ->> 'charged')::bigint, 0::bigint, 'a release charges nothing');
select results_eq('select available, held from alice_balance', $$values (94::bigint, 0::bigint)$$, 'released credits are available again');
select results_eq(
  format('select status, charged, success, backend_error, error_code, latency_ms, allocations from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'h-2'),
  $$values ('released', 0::bigint, false, true, 'upstream_timeout', 30000, '[]'::jsonb)$$,
  'the release records the backend error'
);
select is(
  (select metadata ->> 'reason' from public.credit_ledger where org_id = :'alice_org' and request_id = 'h-2' and kind = 'release'),
  'backend_error', 'the release ledger entry says backend_error'
);
select is((public.release_credits(:'alice_org', 'h-2') ->> 'replayed')::boolean, true, 'releasing twice replays');
select results_eq('select available, held from alice_balance', $$values (94::bigint, 0::bigint)$$, 'a replayed release gives nothing back twice');
select throws_ok(format($$select public.capture_credits(%L, 'h-2')$$, :'alice_org'), 'PT409', 'hold_not_active', 'a released hold cannot be captured');

-- A full capture by default, and a release without backend error
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-4', 2);
select is((public.capture_credits(:'alice_org', 'h-4') ->> 'charged')::bigint, 4::bigint, 'capture without quantity charges the whole hold');
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-5', 1);
select public.release_credits(:'alice_org', 'h-5', false);
select results_eq(
  format('select status, backend_error, success from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'h-5'),
  $$values ('released', false, false)$$,
  'p_backend_error => false records a release that was not our fault'
);
select results_eq('select available, held from alice_balance', $$values (90::bigint, 0::bigint)$$, 'setup: 90 available after h-4');

-- Consume requests are not holds; unknown requests ---------------------------------------------------

select tests.authenticate_as(:'alice');
select public.consume_credits('test_op', 'c-1');
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.capture_credits(%L, 'c-1')$$, :'alice_org'), 'PT409', 'not_a_hold', 'capture of a consume request');
select throws_ok(format($$select public.release_credits(%L, 'c-1')$$, :'alice_org'), 'PT409', 'not_a_hold', 'release of a consume request');
select throws_ok(format($$select public.capture_credits(%L, 'nope')$$, :'alice_org'), 'PT404', 'unknown_request', 'capture of an unknown request');
select throws_ok(format($$select public.release_credits(%L, 'nope')$$, :'alice_org'), 'PT404', 'unknown_request', 'release of an unknown request');
select throws_ok($$select public.capture_credits('00000000-0000-4000-8000-00000000dead', 'h-1')$$, 'PT404', 'unknown_org', 'capture in an unknown org');

-- Reserve validation ---------------------------------------------------------------------------------

select throws_ok(format($$select public.reserve_credits(%L, %L, 'test_op', 'h-bob')$$, :'alice_org', :'bob'), '42501', 'not_a_member',
  'p_user_id must be a member of the org');
select throws_ok(format($$select public.reserve_credits(%L, null, 'test_op', 'h-ttl', 1, %s)$$, :'alice_org', t), '22023', 'invalid_ttl',
  format('invalid_ttl: %s', t))
from unnest(array['0', '86401', 'null']) t;
select throws_ok(format($$select public.reserve_credits(%L, null, 'test_op', 'h-big', 46)$$, :'alice_org'), 'PT402', 'insufficient_credits',
  'a hold cannot exceed the available credits');
select is_empty(format($$select 1 from public.credit_requests where org_id = %L and request_id in ('h-bob', 'h-ttl', 'h-big')$$, :'alice_org'),
  'refused reserves recorded nothing');

-- Stale holds expire ----------------------------------------------------------------------------------

select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-3', 4, 60);
select tests.clear_authentication();
update public.credit_requests set hold_expires_at = now() - interval '1 second' where org_id = :'alice_org' and request_id = 'h-3';
select count(*) as due_holds from public.credit_requests where status = 'held' and hold_expires_at <= now() \gset
select tests.authenticate_as_service_role();
select is(public.expire_stale_holds(), :'due_holds'::int, 'expire_stale_holds returns how many holds it released');
select results_eq(
  format('select status, charged, success, allocations from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'h-3'),
  $$values ('expired', 0::bigint, false, '[]'::jsonb)$$,
  'a stale hold is expired, nothing charged'
);
select results_eq('select available, held from alice_balance', $$values (88::bigint, 0::bigint)$$, 'its credits are available again');
select is(
  (select metadata ->> 'reason' from public.credit_ledger where org_id = :'alice_org' and request_id = 'h-3' and kind = 'release'),
  'hold_expired', 'the ledger says the hold expired'
);
select is(public.expire_stale_holds(), 0, 'a second run finds nothing to release');
select throws_ok(format($$select public.capture_credits(%L, 'h-3')$$, :'alice_org'), 'PT409', 'hold_expired', 'an expired hold cannot be captured');

-- A grant that expires while its credits are held: the uncaptured rest expires -------------------------

select (public.grant_credits(:'carol_org', 10, 'promotion', 'carol-promo', '2030-01-01T00:00:00Z') ->> 'grant_id') as carol_promo \gset
select public.reserve_credits(:'carol_org', :'carol', 'test_op', 'ch-1', 5);
select tests.clear_authentication();
update public.credit_grants set expires_at = now() - interval '1 minute' where id = :'carol_promo';
select tests.authenticate_as_service_role();
select is((public.capture_credits(:'carol_org', 'ch-1', 2) ->> 'charged')::bigint, 4::bigint, 'a hold on an expired grant can still be captured');
select results_eq(
  format('select available, held from public.credit_balances where org_id = %L', :'carol_org'),
  $$values (0::bigint, 0::bigint)$$,
  'the uncaptured rest of the expired grant does not come back'
);
select results_eq(
  format('select status, remaining, expired_amount from public.credit_grants where id = %L', :'carol_promo'),
  $$values ('expired', 0::bigint, 6::bigint)$$,
  'the rest is recorded as expired on the grant'
);
select tests.clear_authentication();

-- Who may hold --------------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok(format($$select public.reserve_credits(%L, %L, 'test_op', 'u-1')$$, :'alice_org', :'alice'), '42501', null, 'a user cannot reserve');
select throws_ok(format($$select public.capture_credits(%L, 'h-1')$$, :'alice_org'), '42501', null, 'a user cannot capture');
select throws_ok(format($$select public.release_credits(%L, 'h-1')$$, :'alice_org'), '42501', null, 'a user cannot release');
select throws_ok('select public.expire_stale_holds()', '42501', null, 'a user cannot expire holds');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.reserve_credits(%L, null, 'test_op', 'a-1')$$, :'alice_org'), '42501', null, 'anon cannot reserve');
select tests.clear_authentication();

select * from finish();
rollback;
