-- revoke_credits: an audited debit, idempotent on (org, external_ref), never below zero, from
-- the named grant or in burn-down order; who may call it; the revocation record and the ledger;
-- reconcile_credits() still balances.
begin;
\ir helpers/setup.psql
select plan(48);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset
insert into public.credit_prices (operation, credits) values ('test_op', 1);

-- Burn-down order: priority, then soonest expiry, then oldest.
select (public.grant_credits(:'alice_org', 100, 'purchase', 'buy-100') ->> 'grant_id') as g_buy \gset
select (public.grant_credits(:'alice_org', 40, 'promotion', 'promo-40', now() + interval '30 days', p_priority => 50) ->> 'grant_id') as g_promo \gset
select (public.grant_credits(:'alice_org', 20, 'promotion', 'promo-20', now() + interval '10 days', p_priority => 50) ->> 'grant_id') as g_soon \gset
select (public.grant_credits(:'bob_org', 10, 'purchase', 'bob-10') ->> 'grant_id') as g_bob \gset

create temporary view alice_grants as
  select
    (select remaining from public.credit_grants where id = :'g_soon') as soon,
    (select remaining from public.credit_grants where id = :'g_promo') as promo,
    (select remaining from public.credit_grants where id = :'g_buy') as buy,
    (select available from public.credit_balances where org_id = :'alice_org') as available;
grant select on alice_grants to service_role;

-- Who may call it -------------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok(format($$select public.revoke_credits(%L, 1, 'x', 'r')$$, :'alice_org'), '42501', null,
  'an authenticated user cannot revoke credits, not even from their own org');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.revoke_credits(%L, 1, 'x', 'r')$$, :'alice_org'), '42501', null, 'anon cannot revoke credits');
select throws_ok('select * from public.credit_revocations', '42501', null, 'anon cannot read revocations');
select tests.clear_authentication();
select ok(has_function_privilege('service_role', 'public.revoke_credits(uuid, bigint, text, text, uuid)', 'execute'), 'service_role may revoke credits');
select ok(not has_function_privilege('authenticated', 'private.revoke_credits(uuid, bigint, text, text, uuid, jsonb)', 'execute'),
  'the internal revoke is not callable by users');

-- Validation ---------------------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select throws_ok(format($$select public.revoke_credits(%L, 0, 'x', 'r')$$, :'alice_org'), '22023', 'invalid_amount', 'amount must be positive');
select throws_ok(format($$select public.revoke_credits(%L, null, 'x', 'r')$$, :'alice_org'), '22023', 'invalid_amount', 'amount is required');
select throws_ok(format($$select public.revoke_credits(%L, 1000000000001, 'x', 'r')$$, :'alice_org'), '22023', 'invalid_amount', 'amount has a ceiling');
select throws_ok(format($$select public.revoke_credits(%L, 1, '  ', 'r')$$, :'alice_org'), '22023', 'invalid_reason', 'a blank reason is refused');
select throws_ok(format($$select public.revoke_credits(%L, 1, repeat('x', 501), 'r')$$, :'alice_org'), '22023', 'invalid_reason', 'a reason has at most 500 characters');
select throws_ok(format($$select public.revoke_credits(%L, 1, 'x', null)$$, :'alice_org'), '22023', 'invalid_external_ref', 'an external reference is required');
select throws_ok(format($$select public.revoke_credits(%L, 1, 'x', repeat('r', 201))$$, :'alice_org'), '22023', 'invalid_external_ref', 'a reference has at most 200 characters');
select throws_ok($$select public.revoke_credits('00000000-0000-4000-8000-00000000dead', 1, 'x', 'r')$$, 'PT404', 'unknown_org', 'an unknown org is PT404');
select throws_ok(format($$select public.revoke_credits(%L, 1, 'x', 'r', %L)$$, :'alice_org', :'g_bob'), 'PT404', 'unknown_grant',
  'a grant of another org is unknown here');
select results_eq('select soon, promo, buy, available from alice_grants', $$values (20::bigint, 40::bigint, 100::bigint, 160::bigint)$$,
  'refused calls change nothing');

-- Burn-down order, and the answer ----------------------------------------------------------------------

select public.revoke_credits(:'alice_org', 30, 'chargeback', 'case-1') as r1 \gset
select is(:'r1'::jsonb - 'allocations', jsonb_build_object('org_id', :'alice_org'::uuid, 'external_ref', 'case-1', 'amount', 30, 'grant_id', null,
  'revoked', 30, 'shortfall', 0, 'balance_after', 130, 'replayed', false), 'revoke_credits answers {revoked, shortfall, balance_after, replayed}');
select is(:'r1'::jsonb -> 'allocations', jsonb_build_array(jsonb_build_object('grant_id', :'g_soon'::uuid, 'amount', 20), jsonb_build_object('grant_id', :'g_promo'::uuid, 'amount', 10)),
  'credits come in burn-down order: priority, then soonest expiry');
select results_eq('select soon, promo, buy, available from alice_grants', $$values (0::bigint, 30::bigint, 100::bigint, 130::bigint)$$,
  'the grants and the balance went down together');
select results_eq(
  format('select kind, amount, balance_after, grant_id, metadata ->> %L, metadata ->> %L from public.credit_ledger where org_id = %L and kind = %L order by id',
    'external_ref', 'reason', :'alice_org', 'revoke'),
  format($$values ('revoke', -20::bigint, 140::bigint, %L::uuid, 'case-1', 'chargeback'), ('revoke', -10::bigint, 130::bigint, %L::uuid, 'case-1', 'chargeback')$$, :'g_soon', :'g_promo'),
  'one revoke ledger entry per grant, naming it, with the reference and the reason'
);
select results_eq(format('select revoked_amount from public.credit_grants where id in (%L, %L, %L) order by amount', :'g_soon', :'g_promo', :'g_buy'),
  $$values (20::bigint), (10::bigint), (0::bigint)$$, 'each grant records what was taken back from it');
select results_eq(format('select amount, revoked, shortfall, reason, actor_role from public.credit_revocations where org_id = %L and external_ref = %L', :'alice_org', 'case-1'),
  $$values (30::bigint, 30::bigint, 0::bigint, 'chargeback', 'service_role')$$, 'the revocation is recorded, with its actor');

-- Idempotency -----------------------------------------------------------------------------------------------

select public.revoke_credits(:'alice_org', 30, 'chargeback (retried)', 'case-1') as r1b \gset
select is(:'r1b'::jsonb - 'replayed', :'r1'::jsonb - 'replayed', 'a replay answers the first revocation (another reason is the same revocation)');
select is((:'r1b'::jsonb ->> 'replayed')::boolean, true, 'and says it is a replay');
select results_eq('select soon, promo, buy, available from alice_grants', $$values (0::bigint, 30::bigint, 100::bigint, 130::bigint)$$,
  'a replay takes nothing');
select throws_ok(format($$select public.revoke_credits(%L, 31, 'x', 'case-1')$$, :'alice_org'), 'PT409', 'idempotency_conflict',
  'the same reference with another amount is a conflict');
select throws_ok(format($$select public.revoke_credits(%L, 30, 'x', 'case-1', %L)$$, :'alice_org', :'g_buy'), 'PT409', 'idempotency_conflict',
  'the same reference with another grant is a conflict');
select lives_ok(format($$select public.revoke_credits(%L, 30, 'x', 'case-1')$$, :'bob_org'), 'references are per org');

-- The named grant only, never below zero ---------------------------------------------------------------------

select public.revoke_credits(:'alice_org', 150, 'refund of buy-100', 'refund-buy', :'g_buy') as r2 \gset
select results_eq(format($$select (%L::jsonb ->> 'revoked')::bigint, (%L::jsonb ->> 'shortfall')::bigint, (%L::jsonb ->> 'balance_after')::bigint$$, :'r2', :'r2', :'r2'),
  $$values (100::bigint, 50::bigint, 30::bigint)$$, 'from the named grant: what it has left, the rest is shortfall');
select results_eq('select soon, promo, buy, available from alice_grants', $$values (0::bigint, 30::bigint, 0::bigint, 30::bigint)$$,
  'other grants are untouched');

select tests.authenticate_as(:'alice');
select public.consume_credits('test_op', 'hold-me', 10);
select tests.clear_authentication();
select tests.authenticate_as_service_role();
select public.reserve_credits(:'alice_org', null, 'test_op', 'held-5', 5);
select public.revoke_credits(:'alice_org', 100, 'fraud', 'fraud-1') as r3 \gset
select results_eq(format($$select (%L::jsonb ->> 'revoked')::bigint, (%L::jsonb ->> 'shortfall')::bigint, (%L::jsonb ->> 'balance_after')::bigint$$, :'r3', :'r3', :'r3'),
  $$values (15::bigint, 85::bigint, 0::bigint)$$, 'never below zero: spent and held credits are a shortfall');
select results_eq(format('select available, held from public.credit_balances where org_id = %L', :'alice_org'), $$values (0::bigint, 5::bigint)$$,
  'the hold is untouched');
select public.revoke_credits(:'alice_org', 5, 'again', 'empty-1') as r4 \gset
select results_eq(format($$select (%L::jsonb ->> 'revoked')::bigint, (%L::jsonb ->> 'shortfall')::bigint$$, :'r4', :'r4'), $$values (0::bigint, 5::bigint)$$,
  'nothing left: all shortfall, and recorded');
select is((select count(*)::int from public.credit_ledger where org_id = :'alice_org' and kind = 'revoke' and metadata ->> 'external_ref' = 'empty-1'), 0,
  'a revocation that takes nothing writes no ledger entry');
select public.release_credits(:'alice_org', 'held-5');
select is((select available from public.credit_balances where org_id = :'alice_org'), 5::bigint, 'a released hold gives its credits back as usual');

-- Expired and pending grants have nothing to take ------------------------------------------------------------

select (public.grant_credits(:'alice_org', 7, 'purchase', 'pending-7', p_pending => true) ->> 'grant_id') as g_pending \gset
select is((public.revoke_credits(:'alice_org', 7, 'x', 'pending-1', :'g_pending') ->> 'shortfall')::bigint, 7::bigint, 'a pending grant was never credited: nothing to take');
select (public.grant_credits(:'alice_org', 9, 'promotion', 'lapsing-9', now() + interval '1 hour') ->> 'grant_id') as g_lapsing \gset
select tests.clear_authentication();
update public.credit_grants set expires_at = now() - interval '1 second' where id = :'g_lapsing';
select tests.authenticate_as_service_role();
select is((public.revoke_credits(:'alice_org', 9, 'x', 'lapsing-1', :'g_lapsing') ->> 'revoked')::bigint, 0::bigint,
  'a grant past its expiry is expired first, not revoked');
select is((select status from public.credit_grants where id = :'g_lapsing'), 'expired', 'and it is expired now');

-- The gate flag and the books -----------------------------------------------------------------------------

select is((select has_usage_credits from public.orgs where id = :'bob_org'), false, 'revoking the last credit turns the gate flag off');
select is((select sum(amount) from public.credit_ledger where org_id = :'alice_org'), (select available from public.credit_balances where org_id = :'alice_org')::numeric,
  'ledger sum = available');
set local client_min_messages = error;
select public.reconcile_credits();
select is_empty(
  format($$select check_name from public.credit_reconciliation_issues where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id in (%L, %L)$$, :'alice_org', :'bob_org'),
  'reconcile_credits finds the books balanced after revocations'
);
select tests.clear_authentication();

-- A corrupted revoked_amount is caught ------------------------------------------------------------------------

update public.credit_grants set revoked_amount = revoked_amount - 1, remaining = remaining + 1 where id = :'g_promo';
update public.credit_balances set available = available + 1 where org_id = :'alice_org';
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select set_eq(
  format($$select check_name from public.credit_reconciliation_issues where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id = %L$$, :'alice_org'),
  array['available_vs_ledger'],
  'a balance raised without a ledger entry is reported'
);
select tests.clear_authentication();
update public.credit_grants set revoked_amount = revoked_amount + 1, remaining = remaining - 1 where id = :'g_promo';
update public.credit_balances set available = available - 1 where org_id = :'alice_org';
insert into public.credit_revocations (org_id, external_ref, amount, reason, revoked, shortfall, balance_after, actor_role)
values (:'alice_org', 'forged', 3, 'forged', 3, 0, 0, 'postgres');
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select results_eq(
  format($$select check_name, expected, actual from public.credit_reconciliation_issues where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id = %L$$, :'alice_org'),
  $$values ('revocations_vs_ledger', 148::numeric, 145::numeric)$$,
  'a revocation without its ledger entries is reported'
);
select tests.clear_authentication();

-- Constraints: a grant never gives away more than it had ------------------------------------------------------------

select throws_ok(format('update public.credit_grants set revoked_amount = amount + 1 - remaining - expired_amount where id = %L', :'g_soon'), '23514', null,
  'remaining + expired + revoked never exceeds the amount');
select throws_ok(format($$insert into public.credit_ledger (org_id, kind, amount, balance_after, held_after, actor_role) values (%L, 'confiscate', -1, 0, 0, 'x')$$, :'alice_org'),
  '23514', null, 'ledger kinds are still checked');

-- Members read their org's revocations, nobody else's; nobody writes them -------------------------------------------

select tests.authenticate_as(:'alice');
select is((select count(*)::int from public.credit_revocations), 7, 'a member reads their org''s revocations');
select throws_ok(format($$insert into public.credit_revocations (org_id, external_ref, amount, reason, revoked, shortfall, balance_after, actor_role) values (%L, 'x', 1, 'x', 1, 0, 0, 'x')$$, :'alice_org'),
  '42501', null, 'a member cannot write revocations');
select tests.authenticate_as(:'bob');
select is((select count(*)::int from public.credit_revocations where org_id = :'alice_org'), 0, 'a non-member sees none');
select tests.authenticate_as_service_role();
select throws_ok(format($$delete from public.credit_revocations where org_id = %L$$, :'alice_org'), '42501', null, 'service_role cannot delete revocations');
select tests.clear_authentication();

select * from finish();
rollback;
