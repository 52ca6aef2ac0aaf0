-- consume_credits: who is charged, burn-down order, idempotency, insufficient credits,
-- validation, zero prices, the replicated flag (written only on a flip) and expiry on charge.
begin;
\ir helpers/setup.psql
select plan(65);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.create_user('dave@example.test') as dave \gset
select tests.create_user('erin@example.test') as erin \gset
select tests.create_user('frank@example.test') as frank \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset
select tests.personal_org(:'carol') as carol_org \gset
select tests.personal_org(:'dave') as dave_org \gset
select tests.personal_org(:'erin') as erin_org \gset
select tests.personal_org(:'frank') as frank_org \gset
\set team_org '00000000-0000-4000-8000-0000000004aa'
insert into public.orgs (id, name) values (:'team_org', 'Team');
insert into public.org_members (org_id, user_id, role) values (:'team_org', :'bob', 'owner'), (:'team_org', :'alice', 'member');

insert into public.credit_prices (operation, credits) values ('test_op', 2), ('free_op', 0);
insert into public.credit_prices (operation, credits, active) values ('retired_op', 1, false);

select public.grant_credits(:'alice_org', 100, 'purchase', 'alice-100');
select public.grant_credits(:'bob_org', 100, 'purchase', 'bob-100');
select public.grant_credits(:'team_org', 50, 'purchase', 'team-50');
select public.grant_credits(:'carol_org', 5, 'purchase', 'carol-5');
select public.grant_credits(:'dave_org', 4, 'purchase', 'dave-4');

-- The caller's personal org by default --------------------------------------------------------

select tests.authenticate_as(:'alice');
select public.consume_credits('test_op', 'c-1', 3, p_metadata => '{"tool": "search"}') as c1 \gset
select tests.clear_authentication();
select is(
  :'c1'::jsonb - 'org_id',
  '{"request_id": "c-1", "operation": "test_op", "quantity": 3, "status": "charged", "charged": 6, "balance_before": 100, "balance_after": 94, "replayed": false}'::jsonb,
  'consume_credits charges price x quantity and answers the contract fields'
);
select is(:'c1'::jsonb ->> 'org_id', :'alice_org', 'the personal org is charged by default');
select is((select available from public.credit_balances where org_id = :'alice_org'), 94::bigint, 'the balance is debited');
select results_eq(
  format('select kind, operation, quantity, unit_price, charged, status, user_id, success, metadata from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'c-1'),
  format($$values ('consume', 'test_op', 3, 2::bigint, 6::bigint, 'charged', %L::uuid, true, '{"tool": "search"}'::jsonb)$$, :'alice'),
  'the request is recorded'
);
select results_eq(
  format('select kind, amount, balance_after, request_id, actor_user_id, actor_role from public.credit_ledger where org_id = %L and kind = %L', :'alice_org', 'charge'),
  format($$values ('charge', -6::bigint, 94::bigint, 'c-1', %L::uuid, 'authenticated')$$, :'alice'),
  'one charge ledger entry, attributed to the user'
);

-- Another org only when a member ------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select is((public.consume_credits('test_op', 'c-team', 1, :'team_org') ->> 'org_id'), :'team_org', 'a member can charge a shared org');
select throws_ok(format($$select public.consume_credits('test_op', 'c-bob', 1, %L)$$, :'bob_org'), '42501', 'not_a_member',
  'a non-member cannot charge another org');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'team_org'), 48::bigint, 'the shared org was charged');
select is((select available from public.credit_balances where org_id = :'alice_org'), 94::bigint, 'the personal org was not charged for the shared one');
select is((select available from public.credit_balances where org_id = :'bob_org'), 100::bigint, 'not_a_member charged nothing');
select is_empty($$select 1 from public.credit_requests where request_id = 'c-bob'$$, 'not_a_member recorded no request');
select is((select count(*)::int from public.credit_ledger where org_id = :'bob_org'), 1, 'not_a_member wrote no ledger entry');

-- Idempotency -------------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select public.consume_credits('test_op', 'c-1', 3) as c1r \gset
select is(:'c1r'::jsonb - 'replayed', :'c1'::jsonb - 'replayed', 'a replay returns the first result');
select is((:'c1r'::jsonb ->> 'replayed')::boolean, true, 'a replay says replayed = true');
select throws_ok($$select public.consume_credits('test_op', 'c-1', 4)$$, 'PT409', 'idempotency_conflict', 'same request id, other quantity');
select throws_ok($$select public.consume_credits('free_op', 'c-1', 3)$$, 'PT409', 'idempotency_conflict', 'same request id, other operation');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'alice_org'), 94::bigint, 'replays and conflicts charge nothing');
select is((select count(*)::int from public.credit_ledger where org_id = :'alice_org' and request_id = 'c-1'), 1, 'still one ledger entry for c-1');
select is((select count(*)::int from public.credit_requests where org_id = :'alice_org' and request_id = 'c-1'), 1, 'still one request row for c-1');

-- Insufficient credits: PT402 with the numbers, nothing written ------------------------------------

select tests.authenticate_as(:'carol');
select tests.error_of($$select public.consume_credits('test_op', 'carol-1', 3)$$) as e402 \gset
select is(:'e402'::jsonb ->> 'sqlstate', 'PT402', 'insufficient credits: SQLSTATE PT402');
select is(:'e402'::jsonb ->> 'message', 'insufficient_credits', 'insufficient credits: key insufficient_credits');
select is((:'e402'::jsonb -> 'detail') - 'operation' - 'quantity', '{"required": 6, "available": 5}'::jsonb, 'the detail says required and available');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'carol_org'), 5::bigint, 'insufficient credits: balance unchanged');
select is_empty(format('select 1 from public.credit_requests where org_id = %L', :'carol_org'), 'insufficient credits: no request row');
select is((select count(*)::int from public.credit_ledger where org_id = :'carol_org'), 1, 'insufficient credits: no ledger row (only the grant)');
select tests.authenticate_as(:'carol');
select is((public.consume_credits('test_op', 'carol-1', 2) ->> 'balance_after')::bigint, 1::bigint, 'the same request id may succeed later with what fits');
select tests.clear_authentication();

-- Unknown operation and validation -------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok($$select public.consume_credits('nope_op', 'v-1')$$, 'PT404', 'unknown_operation', 'unknown operation');
select throws_ok($$select public.consume_credits('retired_op', 'v-2')$$, 'PT404', 'unknown_operation', 'an inactive price is an unknown operation');
select throws_ok(format($$select public.consume_credits('test_op', 'v-3', %s)$$, q), '22023', 'invalid_quantity', format('invalid_quantity: %s', q))
from unnest(array['0', '-1', 'null', '1000001']) q;
select throws_ok(format($$select public.consume_credits('test_op', %s)$$, r), '22023', 'invalid_request_id', format('invalid_request_id: %s', left(r, 20)))
from unnest(array['null', '''''', quote_literal(repeat('r', 201))]) r;
select throws_ok($$select public.consume_credits('test_op', 'v-4', p_metadata => '[]')$$, '22023', 'invalid_metadata', 'invalid_metadata');
select lives_ok(format($$select public.consume_credits('test_op', %L)$$, repeat('r', 200)), 'a 200-character request id is fine');

-- Zero price
select public.consume_credits('free_op', 'free-1', 5) as free1 \gset
select tests.clear_authentication();
select is((:'free1'::jsonb ->> 'charged')::bigint, 0::bigint, 'a zero-price operation charges 0');
select is((select available from public.credit_balances where org_id = :'alice_org'), 92::bigint, 'a zero-price operation leaves the balance');
select is((select status from public.credit_requests where org_id = :'alice_org' and request_id = 'free-1'), 'charged', 'a zero-price call is still recorded');
select is((select count(*)::int from public.credit_requests where org_id = :'alice_org' and request_id like 'v-%'), 0, 'failed calls recorded nothing');

-- The replicated flag: flips with the balance, written only on a flip -------------------------------

select is((select has_usage_credits from public.orgs where id = :'dave_org'), true, 'setup: dave has credits');
select xmin::text || ctid::text as dave_row from public.orgs where id = :'dave_org' \gset
select tests.authenticate_as(:'dave');
select public.consume_credits('test_op', 'd-1');
select tests.clear_authentication();
-- xmin alone cannot tell within one transaction (the row was written by this transaction);
-- ctid changes with every new row version, so (xmin, ctid) unchanged = not rewritten.
select is((select xmin::text || ctid::text from public.orgs where id = :'dave_org'), :'dave_row', 'a charge that keeps credits > 0 does not rewrite the org row');
select is((select has_usage_credits from public.orgs where id = :'dave_org'), true, 'the flag stays true while credits remain');
select tests.authenticate_as(:'dave');
select public.consume_credits('test_op', 'd-2');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'dave_org'), 0::bigint, 'dave''s balance reached 0');
select is((select has_usage_credits from public.orgs where id = :'dave_org'), false, 'the flag flips to false at 0');
select isnt((select xmin::text || ctid::text from public.orgs where id = :'dave_org'), :'dave_row', 'the flip rewrote the org row (the probe works)');
select tests.authenticate_as(:'dave');
select throws_ok($$select public.consume_credits('test_op', 'd-3')$$, 'PT402', 'insufficient_credits', 'no credits, no charge');
select tests.clear_authentication();
select public.grant_credits(:'dave_org', 10, 'purchase', 'dave-10');
select is((select has_usage_credits from public.orgs where id = :'dave_org'), true, 'a grant flips the flag back to true');
select xmin::text || ctid::text as dave_row from public.orgs where id = :'dave_org' \gset
select public.grant_credits(:'dave_org', 10, 'purchase', 'dave-10b');
select is((select xmin::text || ctid::text from public.orgs where id = :'dave_org'), :'dave_row', 'a grant to an org that has credits does not rewrite the org row');

-- Burn-down order: priority, then soonest expiry, then oldest ---------------------------------------

select public.grant_credits(:'erin_org', 10, 'purchase', 'A', '2031-01-01T00:00:00Z');
select public.grant_credits(:'erin_org', 10, 'purchase', 'B', '2030-01-01T00:00:00Z');
select public.grant_credits(:'erin_org', 10, 'purchase', 'C', p_priority => 50);
select public.grant_credits(:'erin_org', 10, 'purchase', 'D');
select public.grant_credits(:'erin_org', 10, 'purchase', 'E');
-- One transaction: make D and E differ in age (D older).
update public.credit_grants set created_at = now() - interval '2 days' where org_id = :'erin_org' and external_ref = 'D';
update public.credit_grants set created_at = now() - interval '1 day' where org_id = :'erin_org' and external_ref = 'E';
create temporary view erin_grants as
  select string_agg(external_ref || '=' || remaining, ' ' order by external_ref) as remaining
  from public.credit_grants where org_id = :'erin_org';

select tests.authenticate_as(:'erin');
select public.consume_credits('test_op', 'e-1', 3);
select tests.clear_authentication();
select is((select remaining from erin_grants), 'A=10 B=10 C=4 D=10 E=10', 'the lowest priority burns first');
select tests.authenticate_as(:'erin');
select public.consume_credits('test_op', 'e-2', 5);
select tests.clear_authentication();
select is((select remaining from erin_grants), 'A=10 B=4 C=0 D=10 E=10', 'then the soonest expiry');
select tests.authenticate_as(:'erin');
select public.consume_credits('test_op', 'e-3', 10);
select tests.clear_authentication();
select is((select remaining from erin_grants), 'A=0 B=0 C=0 D=4 E=10', 'then later expiries, then grants without expiry');
select is(
  (select allocations from public.credit_requests where org_id = :'erin_org' and request_id = 'e-3'),
  (select jsonb_agg(jsonb_build_object('grant_id', g.id, 'amount', x.amount) order by x.ord)
   from (values ('B', 4, 1), ('A', 10, 2), ('D', 6, 3)) x(ref, amount, ord)
   join public.credit_grants g on g.org_id = :'erin_org' and g.external_ref = x.ref),
  'the request records which grants paid, in burn order'
);
select tests.authenticate_as(:'erin');
select public.consume_credits('test_op', 'e-4', 5);
select tests.clear_authentication();
select is((select remaining from erin_grants), 'A=0 B=0 C=0 D=0 E=4', 'the oldest grant burns before a newer one');

-- An expired grant is not spendable: consume expires it first ----------------------------------------

select (public.grant_credits(:'frank_org', 10, 'promotion', 'frank-promo', '2030-01-01T00:00:00Z') ->> 'grant_id') as frank_promo \gset
select public.grant_credits(:'frank_org', 5, 'purchase', 'frank-5');
update public.credit_grants set expires_at = now() - interval '1 minute' where id = :'frank_promo';
select is((select available from public.credit_balances where org_id = :'frank_org'), 15::bigint, 'setup: the due grant is still in the balance');
select tests.authenticate_as(:'frank');
select public.consume_credits('test_op', 'f-1') as f1 \gset
select tests.clear_authentication();
select is((:'f1'::jsonb ->> 'balance_before')::bigint, 5::bigint, 'the charge saw the balance without the expired grant');
select results_eq(
  format('select status, remaining, expired_amount from public.credit_grants where id = %L', :'frank_promo'),
  $$values ('expired', 0::bigint, 10::bigint)$$,
  'consume expired the due grant first'
);
select results_eq(
  format('select kind, amount from public.credit_ledger where org_id = %L and kind in (%L, %L) order by id', :'frank_org', 'expire', 'charge'),
  $$values ('expire', -10::bigint), ('charge', -2::bigint)$$,
  'the ledger records the expiry, then the charge'
);
select is((select available from public.credit_balances where org_id = :'frank_org'), 3::bigint, 'only the live grant paid');
select tests.authenticate_as(:'frank');
select (tests.error_of($$select public.consume_credits('test_op', 'f-2', 2)$$) -> 'detail') - 'operation'::text - 'quantity'::text as f2 \gset
select tests.clear_authentication();
select is(:'f2'::jsonb, '{"required": 4, "available": 3}'::jsonb, 'expired credits do not count as available');

-- Who may consume ---------------------------------------------------------------------------------

select tests.authenticate_as_anon();
select throws_ok($$select public.consume_credits('test_op', 'anon-1')$$, '42501', null, 'anon cannot call consume_credits');
select tests.authenticate_as_service_role();
select throws_ok($$select public.consume_credits('test_op', 'svc-1')$$, '42501', null, 'service_role cannot call consume_credits (a user RPC)');
-- An authenticated token without a user (no sub claim)
select set_config('request.jwt.claims', '{"role": "authenticated"}', true), set_config('role', 'authenticated', true);
select throws_ok($$select public.consume_credits('test_op', 'nosub-1')$$, '42501', 'forbidden', 'a token without a user is forbidden');
select tests.clear_authentication();
select is_empty($$select 1 from public.credit_requests where request_id in ('anon-1', 'svc-1', 'nosub-1')$$, 'refused callers recorded nothing');

select * from finish();
rollback;
