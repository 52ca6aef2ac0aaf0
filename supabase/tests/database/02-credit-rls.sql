-- Credit tables: row-level security and privileges for anon, members, non-members and
-- service_role; the append-only ledger; CHECK invariants; one balance row per org.
begin;
\ir helpers/setup.psql
select plan(99);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset

-- Fixtures (as postgres): prices, credits, then rows in every org-scoped table for both orgs.
insert into public.credit_prices (operation, credits) values ('test_op', 2);
insert into public.credit_prices (operation, credits, active) values ('retired_op', 1, false);
select public.grant_credits(:'alice_org', 100, 'purchase', 'rls-alice');
select public.grant_credits(:'bob_org', 100, 'purchase', 'rls-bob');

select tests.authenticate_as(:'alice');
select public.consume_credits('test_op', 'rls-alice-1');
select (public.create_workflow('alice flow', p_request_id => 'rls-alice-wf') ->> 'workflow_id') as alice_wf \gset
select public.execute_workflow(:'alice_wf', '{}', 'rls-alice-run');
select tests.clear_authentication();

select tests.authenticate_as(:'bob');
select public.consume_credits('test_op', 'rls-bob-1');
select (public.create_workflow('bob flow', p_request_id => 'rls-bob-wf') ->> 'workflow_id') as bob_wf \gset
select public.execute_workflow(:'bob_wf', '{}', 'rls-bob-run');
select tests.clear_authentication();

select public.reconcile_credits();
-- One issue row (of our own making) so the issues table has something to hide.
insert into public.credit_reconciliation_issues (run_id, org_id, check_name)
select max(id), :'alice_org'::uuid, 'rls_probe' from public.credit_reconciliation_runs;

create temporary table org_tables (name text primary key) on commit drop;
insert into org_tables values
  ('credit_grants'), ('credit_balances'), ('credit_requests'), ('credit_ledger'), ('workflows'), ('workflow_executions');
create temporary table all_tables (name text primary key) on commit drop;
insert into all_tables select name from org_tables;
insert into all_tables values ('credit_prices'), ('credit_reconciliation_runs'), ('credit_reconciliation_issues');
grant select on org_tables, all_tables to anon, authenticated, service_role;

-- The fixtures took effect: both orgs have rows in every org-scoped table.
select is(
  (select count(*)::int from (
     select distinct 'credit_grants', org_id from public.credit_grants
     union select distinct 'credit_balances', org_id from public.credit_balances
     union select distinct 'credit_requests', org_id from public.credit_requests
     union select distinct 'credit_ledger', org_id from public.credit_ledger
     union select distinct 'workflows', org_id from public.workflows
     union select distinct 'workflow_executions', org_id from public.workflow_executions
   ) t(name, org_id) where org_id in (:'alice_org', :'bob_org')),
  12, 'setup: alice''s and bob''s orgs have rows in every org-scoped table'
);

-- Member ------------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select results_eq(format('select distinct org_id from public.%I', name), array[:'alice_org'::uuid],
  format('a member sees only their orgs'' rows in %s', name))
from org_tables order by name;
select results_eq('select operation from public.credit_prices where operation in (''test_op'', ''retired_op'')', array['test_op'],
  'a member sees active prices only');
select throws_ok('select * from public.credit_reconciliation_runs', '42501', null, 'a member cannot read reconciliation runs');
select throws_ok('select * from public.credit_reconciliation_issues', '42501', null, 'a member cannot read reconciliation issues');

select throws_ok(format('insert into public.%I default values', name), '42501', null, format('a member cannot insert into %s', name))
from all_tables order by name;
select throws_ok(format('update public.%I set created_at = created_at', name), '42501', null, format('a member cannot update %s', name))
from all_tables where name not in ('credit_balances', 'credit_reconciliation_runs', 'credit_reconciliation_issues') order by name;
select throws_ok('update public.credit_balances set available = available + 1000', '42501', null, 'a member cannot update credit_balances');
select throws_ok('update public.credit_reconciliation_runs set issues_found = 0', '42501', null, 'a member cannot update credit_reconciliation_runs');
select throws_ok('update public.credit_reconciliation_issues set check_name = ''x''', '42501', null, 'a member cannot update credit_reconciliation_issues');
select throws_ok(format('delete from public.%I', name), '42501', null, format('a member cannot delete from %s', name))
from all_tables order by name;
select tests.clear_authentication();

-- Non-member --------------------------------------------------------------------------------

select tests.authenticate_as(:'bob');
select is_empty(format('select 1 from public.%I where org_id = %L', name, :'alice_org'),
  format('a non-member sees none of another org''s rows in %s', name))
from org_tables order by name;
select tests.clear_authentication();

-- Anon ----------------------------------------------------------------------------------------

select tests.authenticate_as_anon();
select throws_ok(format('select * from public.%I', name), '42501', null, format('anon cannot read %s', name))
from all_tables order by name;
select throws_ok('insert into public.credit_prices (operation, credits) values (''anon_op'', 0)', '42501', null, 'anon cannot insert prices');
select tests.clear_authentication();

-- Service role --------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select set_eq(
  format('select distinct org_id from public.credit_ledger where org_id in (%L, %L)', :'alice_org', :'bob_org'),
  array[:'alice_org'::uuid, :'bob_org'::uuid],
  'service_role reads every org''s rows'
);
select ok((select count(*) from public.credit_reconciliation_issues where check_name = 'rls_probe') = 1, 'service_role reads reconciliation issues');
select ok((select count(*) from public.credit_prices where operation = 'retired_op') = 1, 'service_role reads retired prices too');
select lives_ok('insert into public.credit_prices (operation, credits) values (''service_op'', 7)', 'service_role may insert a price');
select lives_ok('update public.credit_prices set credits = 8, active = false where operation = ''service_op''', 'service_role may update a price');
select is((select credits from public.credit_prices where operation = 'service_op'), 8::bigint, 'the price update took effect');
select throws_ok('delete from public.credit_prices where operation = ''service_op''', '42501', null, 'service_role cannot delete prices');
select throws_ok(format('insert into public.%I default values', name), '42501', null, format('service_role cannot insert into %s', name))
from all_tables where name <> 'credit_prices' order by name;
select throws_ok(format('update public.%I set org_id = org_id', name), '42501', null, format('service_role cannot update %s', name))
from org_tables order by name;
select throws_ok('update public.credit_reconciliation_runs set issues_found = 0', '42501', null, 'service_role cannot update credit_reconciliation_runs');
select throws_ok('update public.credit_reconciliation_issues set check_name = check_name', '42501', null, 'service_role cannot update credit_reconciliation_issues');
select throws_ok(format('delete from public.%I', name), '42501', null, format('service_role cannot delete from %s', name))
from all_tables where name <> 'credit_prices' order by name;
select tests.clear_authentication();

-- The ledger is append-only, even for the table owner -------------------------------------------

select ok((select count(*) from public.credit_ledger where org_id = :'alice_org') > 0, 'setup: alice has ledger rows to protect');
select throws_ok(format('update public.credit_ledger set amount = amount + 1 where org_id = %L', :'alice_org'),
  '42501', 'ledger_append_only', 'postgres cannot update the ledger');
select throws_ok(format('delete from public.credit_ledger where org_id = %L', :'alice_org'),
  '42501', 'ledger_append_only', 'postgres cannot delete from the ledger');
select throws_ok('truncate public.credit_ledger', '42501', 'ledger_append_only', 'postgres cannot truncate the ledger');
select lives_ok(
  format('insert into public.credit_ledger (org_id, kind, amount, balance_after, held_after, actor_role) values (%L, %L, 0, 0, 0, %L)', :'bob_org', 'adjustment', 'system'),
  'the owner may append to the ledger'
);

-- CHECK invariants --------------------------------------------------------------------------

select throws_ok(format('update public.credit_balances set available = -1 where org_id = %L', :'alice_org'), '23514', null, 'available >= 0');
select throws_ok(format('update public.credit_balances set held = -1 where org_id = %L', :'alice_org'), '23514', null, 'held >= 0');
select throws_ok(format('update public.credit_grants set remaining = -1 where org_id = %L', :'alice_org'), '23514', null, 'remaining >= 0');
select throws_ok(format('update public.credit_grants set remaining = amount + 1 where org_id = %L', :'alice_org'), '23514', null, 'remaining <= amount');
select throws_ok(format('update public.credit_grants set status = %L where org_id = %L', 'expired', :'alice_org'), '23514', null,
  'an expired grant has nothing remaining');
select throws_ok(format('update public.credit_requests set refunded = charged + 1 where org_id = %L', :'alice_org'), '23514', null,
  'refunded <= charged');
select throws_ok(
  format('insert into public.credit_ledger (org_id, kind, amount, balance_after, held_after, actor_role) values (%L, %L, 0, -1, 0, %L)', :'bob_org', 'adjustment', 'system'),
  '23514', null, 'the ledger never records a negative balance'
);

-- One balance row per org -----------------------------------------------------------------------

select tests.create_user('carol@example.test') as carol \gset
select results_eq(
  format('select available, held from public.credit_balances where org_id = %L', tests.personal_org(:'carol')),
  $$values (0::bigint, 0::bigint)$$,
  'a new user''s personal org has a zero balance row'
);
insert into public.orgs (id, name) values ('00000000-0000-4000-8000-0000000002aa', 'Team');
select results_eq(
  $$select available, held from public.credit_balances where org_id = '00000000-0000-4000-8000-0000000002aa'$$,
  $$values (0::bigint, 0::bigint)$$,
  'an org created directly gets a zero balance row'
);
select is_empty('select o.id from public.orgs o where not exists (select from public.credit_balances b where b.org_id = o.id)',
  'every org has a balance row');

select * from finish();
rollback;
