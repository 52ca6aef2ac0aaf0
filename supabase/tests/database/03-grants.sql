-- Grants: grant_credits (idempotent on org, source, external_ref), pending grants activated or
-- voided, onboarding credits once per user, and every validation error.
begin;
\ir helpers/setup.psql
select plan(83);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.create_user('dave@example.test') as dave \gset
select tests.create_user('erin@example.test') as erin \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'carol') as carol_org \gset
select tests.personal_org(:'dave') as dave_org \gset
insert into public.credit_prices (operation, credits) values ('test_op', 2);

select tests.authenticate_as_service_role();

-- Happy path ----------------------------------------------------------------------------------

select is((select has_usage_credits from public.orgs where id = :'alice_org'), false, 'setup: a new org has no credits');

select public.grant_credits(:'alice_org', 100, 'purchase', 'pay-1', '2030-01-01T00:00:00Z', '{"invoice": "in_1"}') as g1 \gset
select is((:'g1'::jsonb ->> 'replayed')::boolean, false, 'grant_credits: first call is not a replay');
select is((:'g1'::jsonb ->> 'amount')::bigint, 100::bigint, 'grant_credits answers the amount');
select is((:'g1'::jsonb ->> 'balance_after')::bigint, 100::bigint, 'grant_credits answers the new balance');
select results_eq(
  format('select amount, remaining, status, source, external_ref, priority, expires_at, metadata from public.credit_grants where id = %L', :'g1'::jsonb ->> 'grant_id'),
  $$values (100::bigint, 100::bigint, 'active', 'purchase', 'pay-1', 100, '2030-01-01T00:00:00Z'::timestamptz, '{"invoice": "in_1"}'::jsonb)$$,
  'the grant row is active with everything it was given'
);
select results_eq(
  format('select available, held from public.credit_balances where org_id = %L', :'alice_org'),
  $$values (100::bigint, 0::bigint)$$,
  'the balance is credited'
);
select results_eq(
  format('select kind, amount, held_delta, balance_after, grant_id::text, actor_role from public.credit_ledger where org_id = %L', :'alice_org'),
  format('values (%L, 100::bigint, 0::bigint, 100::bigint, %L, %L)', 'grant', :'g1'::jsonb ->> 'grant_id', 'service_role'),
  'one ledger entry of kind grant'
);
select is((select has_usage_credits from public.orgs where id = :'alice_org'), true, 'the credits flag flips to true');

-- Idempotent replay on (org, source, external_ref)
select public.grant_credits(:'alice_org', 100, 'purchase', 'pay-1', '2030-01-01T00:00:00Z') as g1b \gset
select is((:'g1b'::jsonb ->> 'replayed')::boolean, true, 'the same external_ref replays');
select is(:'g1b'::jsonb ->> 'grant_id', :'g1'::jsonb ->> 'grant_id', 'the replay returns the first grant');
select is((select available from public.credit_balances where org_id = :'alice_org'), 100::bigint, 'a replay credits nothing');
select is((select count(*)::int from public.credit_ledger where org_id = :'alice_org'), 1, 'a replay writes no ledger entry');
select is((select count(*)::int from public.credit_grants where org_id = :'alice_org'), 1, 'a replay inserts no grant');
select throws_ok(
  format($$select public.grant_credits(%L, 200, 'purchase', 'pay-1', '2030-01-01T00:00:00Z')$$, :'alice_org'),
  'PT409', 'idempotency_conflict', 'the same external_ref with another amount is a conflict'
);
select is(
  (public.grant_credits(:'alice_org', 100, 'purchase', 'pay-1', '2031-01-01T00:00:00Z') ->> 'replayed')::boolean, true,
  'a retried payment with a recomputed expiry replays the first grant (the amount decides)'
);
select lives_ok(
  format($$select public.grant_credits(%L, 100, 'promotion', 'pay-1', '2030-01-01T00:00:00Z')$$, :'alice_org'),
  'the same external_ref under another source is another grant'
);
select is((select available from public.credit_balances where org_id = :'alice_org'), 200::bigint, 'the second source was credited');
select lives_ok(format($$select public.grant_credits(%L, 5, 'promotion', p_priority => 0)$$, :'alice_org'), 'a grant without external_ref');
select lives_ok(format($$select public.grant_credits(%L, 5, 'promotion', p_priority => 0)$$, :'alice_org'), 'without external_ref nothing is deduplicated');
select is((select count(*)::int from public.credit_grants where org_id = :'alice_org' and external_ref is null and priority = 0), 2,
  'two grants without external_ref, with the priority given');
select lives_ok(format($$select public.grant_credits(%L, 1000000000000, 'adjustment')$$, :'dave_org'), 'the largest amount (1e12) is accepted');

-- Validation ------------------------------------------------------------------------------------

select throws_ok(format($$select public.grant_credits(%L, %s, 'purchase')$$, :'alice_org', a), '22023', 'invalid_amount',
  format('invalid_amount: %s', a))
from unnest(array['0', '-5', 'null', '1000000000001']) a;
select throws_ok(format($$select public.grant_credits(%L, 10, %s)$$, :'alice_org', s), '22023', 'invalid_source',
  format('invalid_source: %s', s))
from unnest(array['''Purchase''', '''1purchase''', '''top-up''', '''''', 'null', '''onboarding''', '''refund''']) s;
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase', p_expires_at => %s)$$, :'alice_org', e), '22023', 'invalid_expiry',
  format('invalid_expiry: %s', e))
from unnest(array['now() - interval ''1 second''', 'now()', '''2000-01-01''']) e;
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase', p_priority => %s)$$, :'alice_org', p), '22023', 'invalid_priority',
  format('invalid_priority: %s', p))
from unnest(array['-1', '1001', 'null']) p;
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase', p_metadata => %L)$$, :'alice_org', m), '22023', 'invalid_metadata',
  format('invalid_metadata: %s', left(m, 20)))
from unnest(array['[]', '"x"', '1', json_build_object('pad', repeat('x', 9000))::text]) m;
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase', '')$$, :'alice_org'), '22023', 'invalid_external_ref',
  'invalid_external_ref: empty');
select throws_ok($$select public.grant_credits('00000000-0000-4000-8000-00000000dead', 10, 'purchase')$$, 'PT404', 'unknown_org',
  'unknown org');
select is((select count(*)::int from public.credit_grants where org_id = :'alice_org'), 4, 'no failed call inserted a grant');

-- Pending grants: not spendable until activated ------------------------------------------------

select public.grant_credits(:'carol_org', 50, 'purchase', 'pay-pending', p_pending => true) as gp \gset
select is(:'gp'::jsonb ->> 'status', 'pending', 'a pending grant is created pending');
select results_eq(
  format('select available, held from public.credit_balances where org_id = %L', :'carol_org'),
  $$values (0::bigint, 0::bigint)$$,
  'a pending grant credits nothing'
);
select is_empty(format('select 1 from public.credit_ledger where org_id = %L', :'carol_org'), 'a pending grant writes no ledger entry');
select is((select has_usage_credits from public.orgs where id = :'carol_org'), false, 'a pending grant leaves the flag false');
select tests.authenticate_as(:'carol');
select throws_ok($$select public.consume_credits('test_op', 'carol-1')$$, 'PT402', 'insufficient_credits', 'a pending grant is not spendable');
select tests.authenticate_as_service_role();

select public.activate_credit_grant(:'carol_org', 'purchase', 'pay-pending') as ga \gset
select is((:'ga'::jsonb ->> 'replayed')::boolean, false, 'activation is not a replay');
select results_eq(
  format('select status, remaining, activated_at is not null from public.credit_grants where id = %L', :'gp'::jsonb ->> 'grant_id'),
  $$values ('active', 50::bigint, true)$$,
  'the activated grant is active and full'
);
select is((select available from public.credit_balances where org_id = :'carol_org'), 50::bigint, 'activation credits the balance');
select results_eq(
  format('select kind, amount, grant_id::text from public.credit_ledger where org_id = %L', :'carol_org'),
  format('values (%L, 50::bigint, %L)', 'grant', :'gp'::jsonb ->> 'grant_id'),
  'activation writes one grant ledger entry'
);
select is((select has_usage_credits from public.orgs where id = :'carol_org'), true, 'activation flips the flag');
select is((public.activate_credit_grant(:'carol_org', 'purchase', 'pay-pending') ->> 'replayed')::boolean, true, 'activating twice replays');
select is((select available from public.credit_balances where org_id = :'carol_org'), 50::bigint, 'the second activation credits nothing');
select is((select count(*)::int from public.credit_ledger where org_id = :'carol_org'), 1, 'the second activation writes nothing');
select tests.authenticate_as(:'carol');
select is((public.consume_credits('test_op', 'carol-2') ->> 'charged')::bigint, 2::bigint, 'the activated grant is spendable');
select tests.authenticate_as_service_role();

-- Voided grants: never spendable
select public.grant_credits(:'carol_org', 40, 'purchase', 'pay-void', p_pending => true) as gv \gset
select public.void_credit_grant(:'carol_org', 'purchase', 'pay-void') as gvv \gset
select is(:'gvv'::jsonb ->> 'status', 'voided', 'void_credit_grant voids a pending grant');
select is((:'gvv'::jsonb ->> 'replayed')::boolean, false, 'the first void is not a replay');
select results_eq(
  format('select status, remaining from public.credit_grants where id = %L', :'gv'::jsonb ->> 'grant_id'),
  $$values ('voided', 0::bigint)$$,
  'the voided grant has nothing remaining'
);
select is((public.void_credit_grant(:'carol_org', 'purchase', 'pay-void') ->> 'replayed')::boolean, true, 'voiding twice replays');
select throws_ok($$select public.activate_credit_grant($$ || quote_literal(:'carol_org') || $$, 'purchase', 'pay-void')$$,
  'PT409', 'grant_not_pending', 'a voided grant cannot be activated');
select throws_ok($$select public.void_credit_grant($$ || quote_literal(:'carol_org') || $$, 'purchase', 'pay-pending')$$,
  'PT409', 'grant_not_pending', 'an active grant cannot be voided');
select is((select available from public.credit_balances where org_id = :'carol_org'), 48::bigint, 'the voided grant never reached the balance');
select is_empty(format('select 1 from public.credit_ledger where grant_id = %L', :'gv'::jsonb ->> 'grant_id'), 'the voided grant has no ledger entry');
select tests.authenticate_as(:'carol');
select throws_ok($$select public.consume_credits('test_op', 'carol-3', 25)$$, 'PT402', 'insufficient_credits', 'a voided grant is not spendable');
select tests.authenticate_as_service_role();
select throws_ok($$select public.activate_credit_grant($$ || quote_literal(:'carol_org') || $$, 'purchase', 'pay-nope')$$,
  'PT404', 'unknown_grant', 'activate: unknown external_ref');
select throws_ok($$select public.void_credit_grant($$ || quote_literal(:'carol_org') || $$, 'purchase', 'pay-nope')$$,
  'PT404', 'unknown_grant', 'void: unknown external_ref');
select throws_ok($$select public.activate_credit_grant('00000000-0000-4000-8000-00000000dead', 'purchase', 'pay-pending')$$,
  'PT404', 'unknown_org', 'activate: unknown org');

-- Onboarding credits: once per user -------------------------------------------------------------

select public.grant_onboarding_credits(:'dave', 25, '2030-01-01T00:00:00Z') as go \gset
select is((:'go'::jsonb ->> 'replayed')::boolean, false, 'the first onboarding grant is not a replay');
select results_eq(
  format('select org_id, amount, source, external_ref from public.credit_grants where id = %L', :'go'::jsonb ->> 'grant_id'),
  format('values (%L::uuid, 25::bigint, %L, %L)', :'dave_org', 'onboarding', :'dave'),
  'the onboarding grant goes to the user''s personal org'
);
select is((public.grant_onboarding_credits(:'dave', 25, '2030-01-01T00:00:00Z') ->> 'replayed')::boolean, true, 'a second onboarding call replays');
select is((select count(*)::int from public.credit_grants where org_id = :'dave_org' and source = 'onboarding'), 1, 'one onboarding grant per user');
select is((select available from public.credit_balances where org_id = :'dave_org'), 1000000000025::bigint, 'onboarding credited once');
select throws_ok($$select public.grant_onboarding_credits('00000000-0000-4000-8000-00000000dead', 25)$$, 'PT404', 'unknown_user',
  'onboarding: unknown user');
select throws_ok(format($$select public.grant_onboarding_credits(%L, 0)$$, :'dave'), '22023', 'invalid_amount', 'onboarding: invalid_amount');
select throws_ok(format($$select public.grant_onboarding_credits(%L, 25, '2000-01-01')$$, :'erin'), '22023', 'invalid_expiry', 'onboarding: invalid_expiry');
select tests.clear_authentication();

-- Who may grant -----------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase')$$, :'alice_org'), '42501', null, 'a user cannot grant credits');
select throws_ok(format($$select public.grant_onboarding_credits(%L, 10)$$, :'alice'), '42501', null, 'a user cannot grant onboarding credits');
select throws_ok(format($$select public.activate_credit_grant(%L, 'purchase', 'pay-1')$$, :'alice_org'), '42501', null, 'a user cannot activate grants');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase')$$, :'alice_org'), '42501', null, 'anon cannot grant credits');
select tests.clear_authentication();

select * from finish();
rollback;
