-- Late and retried calls: what a backend that retries, or comes back after a TTL, gets.
begin;
\ir helpers/setup.psql
select plan(14);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.personal_org(:'alice') as alice_org \gset
insert into public.credit_prices (operation, credits) values ('test_op', 2);
select public.grant_credits(:'alice_org', 100, 'purchase', 'alice-100');

select tests.authenticate_as_service_role();

-- A hold past its TTL no longer authorises a charge; releasing it late is a harmless replay.
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'late-hold', 3);
select tests.clear_authentication();
update public.credit_requests set hold_expires_at = now() - interval '1 second' where org_id = :'alice_org' and request_id = 'late-hold';
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.capture_credits(%L, 'late-hold')$$, :'alice_org'), 'PT409', 'hold_expired',
  'capturing a hold past its TTL is refused');
select is(public.expire_stale_holds() >= 1, true, 'the stale hold is released by the cron function');
select is((public.release_credits(:'alice_org', 'late-hold') ->> 'replayed')::boolean, true,
  'releasing a hold the TTL already released replays instead of failing');
select is((select available from public.credit_balances where org_id = :'alice_org'), 100::bigint, 'nothing was charged');

-- p_result fields sent as JSON null mean "not given".
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'null-fields', 1);
select lives_ok(format($$select public.capture_credits(%L, 'null-fields', 1, '{"error_code": null, "latency_ms": 7, "output": null}')$$, :'alice_org'),
  'a result with null fields is accepted');
select results_eq(
  format($$select error_code, latency_ms, success from public.credit_requests where org_id = %L and request_id = 'null-fields'$$, :'alice_org'),
  $$values (null::text, 7, true)$$,
  'null fields are recorded as absent'
);

-- A retried payment is the same payment: only the amount decides.
select is((public.grant_credits(:'alice_org', 100, 'purchase', 'alice-100', now() + interval '30 days') ->> 'replayed')::boolean, true,
  'a retried payment with a recomputed expiry replays');
select throws_ok(format($$select public.grant_credits(%L, 101, 'purchase', 'alice-100')$$, :'alice_org'), 'PT409', 'idempotency_conflict',
  'a retried payment with another amount is a conflict');
select throws_ok(format($$select public.activate_credit_grant(%L, 'purchase', 'alice-100')$$, :'alice_org'), 'PT409', 'grant_not_pending',
  'activating a grant that never waited for payment is refused');
select tests.clear_authentication();

-- Workflow retries must repeat the same call.
select tests.authenticate_as(:'alice');
select public.create_workflow('Nightly', p_request_id => 'wf-1') as wf \gset
select is(public.create_workflow('Nightly', p_request_id => 'wf-1') ->> 'workflow_id', :'wf'::jsonb ->> 'workflow_id',
  'the same workflow request replays the first workflow');
select throws_ok($$select public.create_workflow('Weekly', p_request_id => 'wf-1')$$, 'PT409', 'idempotency_conflict',
  'the same request id with another workflow is a conflict');
select public.execute_workflow((:'wf'::jsonb ->> 'workflow_id')::uuid, '{"day": 1}', 'run-1');
select throws_ok(format($$select public.execute_workflow(%L, '{"day": 2}', 'run-1')$$, :'wf'::jsonb ->> 'workflow_id'), 'PT409', 'idempotency_conflict',
  'the same execution request id with another input is a conflict');
select tests.clear_authentication();

-- A charge against credits that expired a moment ago (before the cron job ran) is refused with
-- the true balance, and changes nothing.
select tests.create_user('bob2@example.test') as bob2 \gset
select tests.personal_org(:'bob2') as bob2_org \gset
select (public.grant_credits(:'bob2_org', 10, 'promotion', 'bob2-promo', '2030-01-01T00:00:00Z') ->> 'grant_id') as bob2_grant \gset
update public.credit_grants set expires_at = now() - interval '1 second' where id = :'bob2_grant';
select tests.authenticate_as(:'bob2');
select (tests.error_of($$select public.consume_credits('test_op', 'late-1', 2)$$) -> 'detail') - 'operation'::text - 'quantity'::text as late \gset
select tests.clear_authentication();
select is(:'late'::jsonb, '{"required": 4, "available": 0}'::jsonb, 'a just-expired grant does not pay: insufficient_credits with the true balance');
select results_eq(format('select status, remaining from public.credit_grants where id = %L', :'bob2_grant'), $$values ('active', 10::bigint)$$,
  'the refused charge wrote nothing (the cron job expires the grant)');

select * from finish();
rollback;
