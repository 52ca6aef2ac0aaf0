-- Scheduled grants: grant_credits(..., p_effective_at) in the future is neither spendable nor in
-- available until activate_scheduled_grants() credits it; the flag flips then; idempotency,
-- validation, voiding, expiry, alerts, reconciliation, privileges and the cron job.
-- Time cannot pass inside a test transaction (now() is fixed), so "the start has come" is set
-- up by moving a grant's effective_at into the past, as 07-expiry-and-flag moves expires_at.
begin;
\ir helpers/setup.psql
select plan(65);

select tests.create_user('sam@example.test') as sam \gset
select tests.create_user('tia@example.test') as tia \gset
select tests.personal_org(:'sam') as sam_org \gset
select tests.personal_org(:'tia') as tia_org \gset
insert into public.credit_prices (operation, credits) values ('sched_op', 10);

select tests.authenticate_as_service_role();

-- The replaced signature: one grant_credits, and old calls keep working ---------------------------

select is((select count(*)::int from pg_catalog.pg_proc where proname = 'grant_credits' and pronamespace = 'public'::regnamespace), 1,
  'one grant_credits: the eight-parameter form is gone');
select is(to_regprocedure('public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean)'), null,
  'the old signature does not exist');
select lives_ok(format($$select public.grant_credits(%L, 5, 'purchase', 'old-positional', '2030-01-01', '{"a": 1}', 100, true)$$, :'tia_org'),
  'an eight-argument positional call (pending) still works');
select is((select status from public.credit_grants where org_id = :'tia_org' and external_ref = 'old-positional'), 'pending',
  'the positional call made a pending grant, as before');
select lives_ok(format($$select public.grant_credits(%L, 7, 'purchase', 'old-three')$$, :'tia_org'), 'a short positional call still works');
select lives_ok(format($$select public.grant_credits(p_org_id => %L, p_amount => 3, p_source => 'promotion', p_priority => 5)$$, :'tia_org'),
  'a call by name still works');
select is((select available from public.credit_balances where org_id = :'tia_org'), 10::bigint, 'the two active grants are credited (7 + 3)');
select is((select count(*)::int from public.credit_grants where org_id = :'tia_org' and effective_at is not null), 0,
  'grants without a start have no effective_at');

-- A grant that starts later ------------------------------------------------------------------------

select is((select has_usage_credits from public.orgs where id = :'sam_org'), false, 'setup: sam has no credits');
select public.grant_credits(:'sam_org', 100, 'promotion', 'next-month', p_effective_at => now() + interval '1 hour') as s1 \gset
select is(:'s1'::jsonb ->> 'status', 'scheduled', 'a future start makes a scheduled grant');
select is((:'s1'::jsonb ->> 'effective_at')::timestamptz, now() + interval '1 hour', 'the answer carries the start');
select is((:'s1'::jsonb ->> 'balance_after')::bigint, 0::bigint, 'the answer''s balance does not count it');
select results_eq(
  format('select status, amount, remaining, activated_at from public.credit_grants where id = %L', :'s1'::jsonb ->> 'grant_id'),
  $$values ('scheduled', 100::bigint, 100::bigint, null::timestamptz)$$,
  'the row is scheduled, whole, not activated'
);
select is((select available from public.credit_balances where org_id = :'sam_org'), 0::bigint, 'available does not count a scheduled grant');
select is((select count(*)::int from public.credit_ledger where org_id = :'sam_org'), 0, 'no ledger entry before it starts');
select is((select has_usage_credits from public.orgs where id = :'sam_org'), false, 'the flag stays false');
select is((select alert_grant_id from public.credit_balances where org_id = :'sam_org'), null, 'a scheduled grant is not the alerts'' reference yet');

select tests.authenticate_as(:'sam');
select public.get_credit_balance() as b1 \gset
select is((:'b1'::jsonb ->> 'available')::bigint, 0::bigint, 'get_credit_balance: not available');
select is((:'b1'::jsonb ->> 'scheduled')::bigint, 100::bigint, 'get_credit_balance: scheduled amount');
select is((:'b1'::jsonb ->> 'next_start_at')::timestamptz, now() + interval '1 hour', 'get_credit_balance: next start');
select is((:'b1'::jsonb ->> 'next_start_amount')::bigint, 100::bigint, 'get_credit_balance: amount starting then');
select throws_ok($$select public.consume_credits('sched_op', 'sam-early')$$, 'PT402', 'insufficient_credits',
  'a scheduled grant is not spendable');
select is((select status from public.credit_grants where org_id = :'sam_org'), 'scheduled', 'members read their scheduled grant');
select throws_ok($$select public.activate_scheduled_grants()$$, '42501', null, 'authenticated cannot run the activation job');
select tests.authenticate_as_anon();
select throws_ok($$select public.activate_scheduled_grants()$$, '42501', null, 'anon cannot run the activation job');
select tests.authenticate_as_service_role();

select public.activate_scheduled_grants() as ignored \gset
select is((select status from public.credit_grants where id = (:'s1'::jsonb ->> 'grant_id')::uuid), 'scheduled',
  'the job leaves a grant whose start has not come');

-- Idempotency ---------------------------------------------------------------------------------------

select public.grant_credits(:'sam_org', 100, 'promotion', 'next-month', p_effective_at => now() + interval '1 hour') as s1r \gset
select is((:'s1r'::jsonb ->> 'replayed')::boolean, true, 'the same grant again is a replay');
select is((:'s1r'::jsonb ->> 'grant_id'), :'s1'::jsonb ->> 'grant_id', 'the replay answers the first grant');
select is(tests.error_of(format($$select public.grant_credits(%L, 100, 'promotion', 'next-month', p_effective_at => now() + interval '2 hours')$$, :'sam_org')) - 'detail',
  '{"sqlstate": "PT409", "message": "idempotency_conflict"}'::jsonb, 'a replay with another start is idempotency_conflict');
select is(tests.error_of(format($$select public.grant_credits(%L, 100, 'promotion', 'next-month')$$, :'sam_org')) -> 'detail' ->> 'effective_at',
  (select to_jsonb(now() + interval '1 hour') #>> '{}'), 'a replay without the start conflicts too, and names the first start');
select is((select count(*)::int from public.credit_grants where org_id = :'sam_org'), 1, 'replays and conflicts added no grant');

-- Validation ---------------------------------------------------------------------------------------

select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', p_effective_at => now() + interval '2 days', p_expires_at => now() + interval '1 day')$$, :'sam_org'),
  '22023', 'invalid_effective_at', 'an expiry before the start is refused');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', p_effective_at => now() + interval '1 day', p_expires_at => now() + interval '1 day')$$, :'sam_org'),
  '22023', 'invalid_effective_at', 'an expiry at the start is refused');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', p_effective_at => 'infinity')$$, :'sam_org'),
  '22023', 'invalid_effective_at', 'a start at infinity is refused');
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase', 'cs_pending_later', p_pending => true, p_effective_at => now() + interval '1 day')$$, :'sam_org'),
  '22023', 'invalid_effective_at', 'a pending grant with a future start is refused');
select is(tests.error_of(format($$select public.grant_credits(%L, 10, 'promotion', p_effective_at => now() + interval '2 days', p_expires_at => now() + interval '1 day')$$, :'sam_org')) -> 'detail' ? 'expires_at',
  true, 'invalid_effective_at details name the expiry');
select is((select count(*)::int from public.credit_grants where org_id = :'sam_org'), 1, 'refused grants wrote nothing');

-- A start that has already come is no schedule.
select public.grant_credits(:'tia_org', 4, 'promotion', 'already', p_effective_at => now() - interval '1 hour') as t1 \gset
select is(:'t1'::jsonb ->> 'status', 'active', 'a past start: active at once');
select is((:'t1'::jsonb ->> 'balance_after')::bigint, 14::bigint, 'a past start: credited at once');

-- Activation --------------------------------------------------------------------------------------

select tests.clear_authentication();
update public.credit_grants set effective_at = now() - interval '1 second' where id = (:'s1'::jsonb ->> 'grant_id')::uuid;
select tests.authenticate_as_service_role();
select ok(public.activate_scheduled_grants() >= 1, 'the job activates a grant whose start has come');
select results_eq(
  format('select status, remaining, activated_at from public.credit_grants where id = %L', :'s1'::jsonb ->> 'grant_id'),
  $$values ('active', 100::bigint, now())$$,
  'the grant is active, whole, activated now'
);
select results_eq(
  format('select kind, amount, balance_after, grant_id::text, created_at from public.credit_ledger where org_id = %L', :'sam_org'),
  format('values (%L, 100::bigint, 100::bigint, %L, now())', 'grant', :'s1'::jsonb ->> 'grant_id'),
  'one grant ledger entry, at activation'
);
select is((select available from public.credit_balances where org_id = :'sam_org'), 100::bigint, 'available counts it now');
select is((select has_usage_credits from public.orgs where id = :'sam_org'), true, 'the flag flips at activation');
select results_eq(
  format('select alert_grant_id::text, alert_grant_amount, alert_threshold_next from public.credit_balances where org_id = %L', :'sam_org'),
  format('values (%L, 100::bigint, 50::smallint)', :'s1'::jsonb ->> 'grant_id'),
  'the started grant is the alerts'' reference, like any newly credited grant'
);
select is(public.activate_scheduled_grants() >= 0 and (select count(*)::int from public.credit_ledger where org_id = :'sam_org') = 1, true,
  'running the job again credits nothing twice');
select tests.authenticate_as(:'sam');
select is((public.consume_credits('sched_op', 'sam-after') ->> 'balance_after')::bigint, 90::bigint, 'the started grant is spendable');
select is((public.get_credit_balance() ->> 'scheduled')::bigint, 0::bigint, 'nothing scheduled any more');
select tests.authenticate_as_service_role();
select is(public.grant_credits(:'sam_org', 100, 'promotion', 'next-month', p_effective_at => now() - interval '1 second') ->> 'replayed', 'true',
  'a replay after the start is still a replay');

-- A grant whose expiry passed before the job reached it: credited and expired at once.
select public.grant_credits(:'tia_org', 20, 'promotion', 'late', p_effective_at => now() + interval '1 hour', p_expires_at => now() + interval '2 hours') as t2 \gset
select tests.clear_authentication();
update public.credit_grants set effective_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute'
where id = (:'t2'::jsonb ->> 'grant_id')::uuid;
select tests.authenticate_as_service_role();
select public.activate_scheduled_grants() as ignored \gset
select results_eq(
  format('select status, remaining, expired_amount from public.credit_grants where id = %L', :'t2'::jsonb ->> 'grant_id'),
  $$values ('expired', 0::bigint, 20::bigint)$$,
  'a grant past its expiry at activation is expired at once'
);
select results_eq(
  format('select kind, amount from public.credit_ledger where grant_id = %L order by id', :'t2'::jsonb ->> 'grant_id'),
  $$values ('grant', 20::bigint), ('expire', -20::bigint)$$,
  'its ledger shows the grant and the expiry'
);
select is((select available from public.credit_balances where org_id = :'tia_org'), 14::bigint, 'tia''s balance is unchanged by it');

-- A bounded batch, soonest start first, several orgs.
select public.grant_credits(:'sam_org', 1, 'promotion', 'b1', p_effective_at => now() + interval '1 hour') ->> 'grant_id' as b1 \gset
select public.grant_credits(:'tia_org', 2, 'promotion', 'b2', p_effective_at => now() + interval '1 hour') ->> 'grant_id' as b2 \gset
select public.grant_credits(:'sam_org', 4, 'promotion', 'b3', p_effective_at => now() + interval '1 hour') ->> 'grant_id' as b3 \gset
select tests.clear_authentication();
update public.credit_grants set effective_at = '2000-01-01T00:00:01Z' where id = :'b1';
update public.credit_grants set effective_at = '2000-01-01T00:00:02Z' where id = :'b2';
update public.credit_grants set effective_at = '2000-01-01T00:00:03Z' where id = :'b3';
select tests.authenticate_as_service_role();
select is(public.activate_scheduled_grants(2), 2, 'a batch of 2 activates 2');
select results_eq(
  format('select status from public.credit_grants where id in (%L, %L, %L) order by effective_at', :'b1', :'b2', :'b3'),
  $$values ('active'), ('active'), ('scheduled')$$,
  'the two soonest starts first'
);
select throws_ok($$select public.activate_scheduled_grants(0)$$, '22023', 'invalid_batch_size', 'the batch size is bounded');

-- Voiding -----------------------------------------------------------------------------------------

select public.grant_credits(:'tia_org', 30, 'promotion', 'cancel-me', p_effective_at => now() + interval '1 day') as t3 \gset
select is(public.void_credit_grant(:'tia_org', 'promotion', 'cancel-me') ->> 'status', 'voided', 'a scheduled grant can be voided');
select is((public.void_credit_grant(:'tia_org', 'promotion', 'cancel-me') ->> 'replayed')::boolean, true, 'voiding again is a replay');
select is((select count(*)::int from public.credit_ledger where grant_id = (:'t3'::jsonb ->> 'grant_id')::uuid), 0,
  'a voided scheduled grant never touched the ledger');
select tests.clear_authentication();
update public.credit_grants set effective_at = now() - interval '1 second' where id = (:'t3'::jsonb ->> 'grant_id')::uuid;
select tests.authenticate_as_service_role();
select public.activate_scheduled_grants() as ignored \gset
select is((select status from public.credit_grants where id = (:'t3'::jsonb ->> 'grant_id')::uuid), 'voided', 'the job never activates a voided grant');
select throws_ok(format($$select public.void_credit_grant(%L, 'promotion', 'next-month')$$, :'sam_org'), 'PT409', 'grant_not_pending',
  'a started grant cannot be voided');
select throws_ok(format($$select public.activate_credit_grant(%L, 'promotion', 'b3')$$, :'sam_org'), 'PT409', 'grant_not_pending',
  'activate_credit_grant (payment confirmed) does not start a scheduled grant early');

-- Reconciliation ----------------------------------------------------------------------------------

select public.grant_credits(:'sam_org', 9, 'promotion', 'c1', p_effective_at => now() + interval '1 day') ->> 'grant_id' as c1 \gset
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: no discrepancy with scheduled, started, expired and voided grants');
-- A corrupt book: a ledger entry naming a grant that has not started, and a grant credited before its start.
insert into public.credit_ledger (org_id, kind, amount, held_delta, balance_after, held_after, grant_id, actor_role)
select :'sam_org', 'adjustment', 0, 0, b.available, b.held, :'c1', 'postgres' from public.credit_balances b where b.org_id = :'sam_org';
update public.credit_grants set effective_at = now() + interval '1 day' where id = :'b1';
select is(public.reconcile_credits(), 2, 'reconcile_credits counts both');
select results_eq(
  $$select check_name from public.credit_reconciliation_issues where run_id = (select max(id) from public.credit_reconciliation_runs) order by check_name$$,
  $$values ('grant_credited_before_start'), ('scheduled_grant_in_ledger')$$,
  'and names them'
);

-- The cron job --------------------------------------------------------------------------------------

select is((select schedule from cron.job where jobname = 'tollgate-activate-scheduled-grants'), '* * * * *', 'activation runs every minute');

select * from finish();
rollback;
