-- reconcile_credits(): after every kind of money movement the books balance; a corruption is
-- reported, naming the org and the check. reconcile scans every org in the database, so the
-- assertions look only at this file's orgs.
begin;
\ir helpers/setup.psql
select plan(21);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.create_user('dave@example.test') as dave \gset
select tests.create_user('erin@example.test') as erin \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset
select tests.personal_org(:'carol') as carol_org \gset
select tests.personal_org(:'dave') as dave_org \gset
select tests.personal_org(:'erin') as erin_org \gset
\set team_org '00000000-0000-4000-8000-0000000008aa'
insert into public.orgs (id, name) values (:'team_org', 'Team');
insert into public.org_members (org_id, user_id, role) values (:'team_org', :'alice', 'owner');
insert into public.credit_prices (operation, credits) values ('test_op', 2);

create temporary table my_orgs (org_id uuid primary key) on commit drop;
insert into my_orgs values (:'alice_org'), (:'bob_org'), (:'carol_org'), (:'dave_org'), (:'erin_org'), (:'team_org');
-- Issues of the latest run, for this file's orgs.
create temporary view my_issues as
  select i.org_id, i.check_name, i.expected, i.actual, i.detail
  from public.credit_reconciliation_issues i
  join my_orgs using (org_id)
  where i.run_id = (select max(id) from public.credit_reconciliation_runs);
set local client_min_messages = error;  -- reconcile_credits warns on every discrepancy

-- A month of activity -------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.grant_credits(:'alice_org', 100, 'purchase', 'p-100');
select (public.grant_credits(:'alice_org', 20, 'promotion', 'promo-20', '2030-01-01T00:00:00Z', p_priority => 50) ->> 'grant_id') as promo \gset
select public.grant_credits(:'alice_org', 30, 'purchase', 'pend-30', p_pending => true);
select public.activate_credit_grant(:'alice_org', 'purchase', 'pend-30');
select public.grant_credits(:'alice_org', 10, 'purchase', 'void-10', p_pending => true);
select public.void_credit_grant(:'alice_org', 'purchase', 'void-10');
select (public.grant_onboarding_credits(:'alice', 50, '2030-01-01T00:00:00Z') ->> 'grant_id') as onboarding \gset
select public.grant_credits(:'team_org', 50, 'purchase', 'team-50');
select public.grant_credits(:'bob_org', 10, 'purchase', 'bob-10');
select public.grant_credits(:'carol_org', 10, 'purchase', 'carol-10');
select public.grant_credits(:'dave_org', 10, 'purchase', 'dave-10');
select public.grant_credits(:'erin_org', 10, 'purchase', 'erin-10');

select tests.authenticate_as(:'alice');
select public.consume_credits('test_op', 'c-1', 10);
select public.consume_credits('test_op', 'c-2', 5);
select public.consume_credits('test_op', 'c-3', 1);
select (public.create_workflow('nightly', p_request_id => 'wf-1', p_org_id => :'team_org') ->> 'workflow_id') as wf \gset
select public.execute_workflow(:'wf', '{}', 'wf-run-1');
select tests.authenticate_as(:'bob');
select public.consume_credits('test_op', 'b-1');
select tests.authenticate_as(:'dave');
select public.consume_credits('test_op', 'd-1');

select tests.authenticate_as_service_role();
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-1', 5);
select public.capture_credits(:'alice_org', 'h-1', 2, '{"latency_ms": 80}');
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-2', 3);
select public.release_credits(:'alice_org', 'h-2');
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-3', 2);
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-4', 1);
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-5', 2);
select public.reserve_credits(:'dave_org', :'dave', 'test_op', 'dh-1', 1);
select public.refund_credits(:'alice_org', 'h-1', 'wrong answer');
select public.refund_credits(:'alice_org', 'c-3', 'timeout');
select tests.clear_authentication();

-- Time passes: the promotion and the onboarding grant expire, h-3 goes stale.
update public.credit_grants set expires_at = now() - interval '1 minute' where id in (:'promo', :'onboarding');
update public.credit_requests set hold_expires_at = now() - interval '1 second' where org_id = :'alice_org' and request_id = 'h-3';
select tests.authenticate_as_service_role();
select public.refund_credits(:'alice_org', 'c-1', 'backend failed');  -- its promotion credits come back as a refund grant
select public.expire_stale_holds();
select public.release_credits(:'alice_org', 'h-5');  -- its grant expired while it was held
select public.expire_credit_grants();
select tests.clear_authentication();

-- The activity took effect
select is(
  (select string_agg(kind, ',' order by kind) from (select distinct kind from public.credit_ledger where org_id = :'alice_org') k),
  'capture,charge,expire,grant,hold,refund,release',
  'setup: alice''s ledger has every kind of movement'
);
select is(
  (select string_agg(status || ':' || n, ',' order by status) from (
     select status, count(*) as n from public.credit_requests where org_id = :'alice_org' group by status) s),
  'charged:1,expired:1,held:1,refunded:3,released:2',
  'setup: alice''s requests are charged, held, released, expired and refunded'
);
select is(
  (select string_agg(source || ':' || status, ',' order by source, status) from public.credit_grants where org_id = :'alice_org'),
  'onboarding:expired,promotion:expired,purchase:active,purchase:active,purchase:voided,refund:active',
  'setup: alice''s grants are active, expired, voided and regranted'
);
select ok(
  exists (select from public.credit_ledger where org_id = :'alice_org' and request_id = 'h-5' and kind = 'expire'
          and metadata ->> 'reason' = 'grant_expired_while_held'),
  'setup: a hold on a grant that expired meanwhile was released and its credits expired'
);

-- The books balance -----------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.reconcile_credits() as issues \gset
select tests.clear_authentication();
select is_empty('select org_id, check_name, expected, actual, detail from my_issues', 'reconcile_credits finds nothing wrong with this activity');
select results_eq(
  'select issues_found, orgs_checked >= 6, finished_at is not null from public.credit_reconciliation_runs order by id desc limit 1',
  format('values (%s, true, true)', :'issues'),
  'the run records what it checked and found'
);

-- A corrupted balance is reported ------------------------------------------------------------------------

update public.credit_balances set available = available + 1 where org_id = :'bob_org';
select tests.authenticate_as_service_role();
select ok(public.reconcile_credits() > 0, 'a corrupted balance makes reconcile_credits return > 0');
select tests.clear_authentication();
select results_eq(
  format('select check_name, expected, actual from my_issues where org_id = %L order by check_name', :'bob_org'),
  $$values ('available_vs_grants', 8::numeric, 9::numeric), ('available_vs_ledger', 8::numeric, 9::numeric)$$,
  'the issues name the org and the checks, with expected and actual'
);
select is_empty(format('select 1 from my_issues where org_id <> %L', :'bob_org'), 'the other orgs are still fine');
select is((select issues_found from public.credit_reconciliation_runs order by id desc limit 1) >= 2, true, 'the run counts the issues');
update public.credit_balances set available = available - 1 where org_id = :'bob_org';

-- A balance corrupted across zero also flips the flag (the trigger follows the balance)
update public.credit_balances set available = available + 1 where org_id = :'carol_org';
update public.credit_balances set available = 0 where org_id = :'carol_org';
select is((select has_usage_credits from public.orgs where id = :'carol_org'), false, 'setup: the trigger followed the corrupted balance');
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select tests.clear_authentication();
select results_eq(
  format('select check_name from my_issues where org_id = %L order by check_name', :'carol_org'),
  $$values ('available_vs_grants'), ('available_vs_ledger')$$,
  'a zeroed balance is reported against grants and ledger'
);
update public.credit_balances set available = 10 where org_id = :'carol_org';

-- A corrupted flag
update public.orgs set has_usage_credits = false where id = :'carol_org';
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select tests.clear_authentication();
select results_eq(
  format('select check_name, expected, actual from my_issues where org_id = %L', :'carol_org'),
  $$values ('flag_vs_available', 1::numeric, 0::numeric)$$,
  'a corrupted flag is reported'
);
update public.orgs set has_usage_credits = true where id = :'carol_org';

-- A corrupted held amount
update public.credit_balances set held = held + 1 where org_id = :'dave_org';
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select tests.clear_authentication();
select results_eq(
  format('select check_name, expected, actual from my_issues where org_id = %L order by check_name', :'dave_org'),
  $$values ('held_vs_ledger', 2::numeric, 3::numeric), ('held_vs_open_holds', 2::numeric, 3::numeric)$$,
  'a corrupted held amount is reported against ledger and open holds'
);
update public.credit_balances set held = held - 1 where org_id = :'dave_org';

-- A corrupted grant
update public.credit_grants set remaining = remaining - 1 where org_id = :'erin_org';
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select tests.clear_authentication();
select results_eq(
  format('select check_name from my_issues where org_id = %L order by check_name', :'erin_org'),
  $$values ('available_vs_grants'), ('grant_vs_allocations')$$,
  'a corrupted grant is reported against the balance and the allocations'
);
update public.credit_grants set remaining = remaining + 1 where org_id = :'erin_org';

-- A corrupted request
update public.credit_requests set allocations = '[]' where org_id = :'dave_org' and request_id = 'd-1';
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select tests.clear_authentication();
select results_eq(
  format('select check_name, detail ->> %L from my_issues where org_id = %L order by check_name', 'request_id', :'dave_org'),
  $$values ('allocations_vs_request', 'd-1'), ('grant_vs_allocations', null)$$,
  'a request whose allocations do not match its charge is reported'
);
update public.credit_requests r set allocations = (select jsonb_build_array(jsonb_build_object('grant_id', g.id, 'amount', 2)) from public.credit_grants g where g.org_id = :'dave_org')
where org_id = :'dave_org' and request_id = 'd-1';

-- A ledger entry without its request
insert into public.credit_ledger (org_id, kind, amount, balance_after, held_after, request_id, actor_role)
values (:'erin_org', 'charge', 0, 10, 0, 'ghost', 'system');
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select tests.clear_authentication();
select results_eq(
  format('select check_name, detail ->> %L from my_issues where org_id = %L', 'request_id', :'erin_org'),
  $$values ('ledger_without_request', 'ghost')$$,
  'a charge entry without its request is reported'
);

-- Repaired, the books balance again (the ghost entry is append-only: it stays reported)
select tests.authenticate_as_service_role();
select public.reconcile_credits();
select tests.clear_authentication();
select is_empty(format('select 1 from my_issues where org_id <> %L', :'erin_org'), 'every repaired org reconciles again');

-- Who may reconcile ------------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok('select public.reconcile_credits()', '42501', null, 'a user cannot run reconciliation');
select throws_ok('select * from public.credit_reconciliation_issues', '42501', null, 'a user cannot read reconciliation issues');
select tests.authenticate_as_anon();
select throws_ok('select public.reconcile_credits()', '42501', null, 'anon cannot run reconciliation');
select tests.clear_authentication();

select * from finish();
rollback;
