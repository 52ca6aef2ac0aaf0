-- Workflows: create_workflow and execute_workflow charge in the same transaction
-- as the operation; too few credits means no workflow; a retried request id is one workflow.
begin;
\ir helpers/setup.psql
select plan(39);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.create_user('dave@example.test') as dave \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'carol') as carol_org \gset
select tests.personal_org(:'dave') as dave_org \gset
\set team_org '00000000-0000-4000-8000-0000000009aa'
insert into public.orgs (id, name) values (:'team_org', 'Team');
insert into public.org_members (org_id, user_id, role) values (:'team_org', :'bob', 'owner'), (:'team_org', :'alice', 'member');

select public.grant_credits(:'alice_org', 20, 'purchase', 'alice-20');
select public.grant_credits(:'carol_org', 3, 'purchase', 'carol-3');
select public.grant_credits(:'dave_org', 5, 'purchase', 'dave-5');
select public.grant_credits(:'team_org', 30, 'purchase', 'team-30');

select results_eq(
  $$select operation, credits, active from public.credit_prices where operation in ('workflow_create', 'workflow_execute') order by operation$$,
  $$values ('workflow_create', 5::bigint, true), ('workflow_execute', 3::bigint, true)$$,
  'the workflow prices are installed'
);

-- create_workflow ---------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select public.create_workflow('Nightly report', 'sends a report', '{"steps": [1, 2]}', 7, 'wf-1') as w1 \gset
select tests.clear_authentication();
select is((:'w1'::jsonb #>> '{charge,charged}')::bigint, 5::bigint, 'create_workflow charges workflow_create (5)');
select is((:'w1'::jsonb #>> '{charge,replayed}')::boolean, false, 'the first call is not a replay');
select is(:'w1'::jsonb ->> 'org_id', :'alice_org', 'the personal org by default');
select results_eq(
  format('select org_id, created_by, name, description, specification, priority, status, request_id from public.workflows where id = %L', :'w1'::jsonb ->> 'workflow_id'),
  format($$values (%L::uuid, %L::uuid, 'Nightly report', 'sends a report', '{"steps": [1, 2]}'::jsonb, 7, 'active', 'wf-1')$$, :'alice_org', :'alice'),
  'the workflow is inserted'
);
select results_eq(
  format('select operation, charged, status from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'wf-1'),
  $$values ('workflow_create', 5::bigint, 'charged')$$,
  'the charge is recorded under the same request id'
);
select is((select available from public.credit_balances where org_id = :'alice_org'), 15::bigint, 'the balance is debited');
select is((select count(*)::int from public.credit_ledger where org_id = :'alice_org' and request_id = 'wf-1' and kind = 'charge'), 1, 'one charge entry');

-- Retried request id: one workflow
select tests.authenticate_as(:'alice');
select public.create_workflow('Nightly report', 'sends a report', '{"steps": [1, 2]}', 7, 'wf-1') as w1b \gset
select tests.clear_authentication();
select is(:'w1b'::jsonb ->> 'workflow_id', :'w1'::jsonb ->> 'workflow_id', 'a retry returns the first workflow');
select is((:'w1b'::jsonb #>> '{charge,replayed}')::boolean, true, 'the retry''s charge is a replay');
select is((select count(*)::int from public.workflows where org_id = :'alice_org'), 1, 'still one workflow');
select is((select available from public.credit_balances where org_id = :'alice_org'), 15::bigint, 'the retry charges nothing');

-- Too few credits: no workflow, no request, no ledger entry
select tests.authenticate_as(:'carol');
select throws_ok($$select public.create_workflow('Too expensive', p_request_id => 'wf-carol')$$, 'PT402', 'insufficient_credits',
  'create_workflow with too few credits');
select tests.clear_authentication();
select is_empty(format('select 1 from public.workflows where org_id = %L', :'carol_org'), 'no workflow row');
select is_empty(format('select 1 from public.credit_requests where org_id = %L', :'carol_org'), 'no request row');
select is((select count(*)::int from public.credit_ledger where org_id = :'carol_org'), 1, 'no ledger row (only the grant)');
select is((select available from public.credit_balances where org_id = :'carol_org'), 3::bigint, 'the balance is unchanged');

-- Validation
select tests.authenticate_as(:'alice');
select throws_ok(format($$select public.create_workflow(%s, p_request_id => 'wf-bad')$$, n), '22023', 'invalid_name', format('invalid_name: %s', left(n, 20)))
from unnest(array['null', '''''', '''  ''', quote_literal(repeat('n', 201))]) n;
select throws_ok($$select public.create_workflow('x', p_priority => 0, p_request_id => 'wf-bad')$$, '22023', 'invalid_priority', 'invalid_priority');
select throws_ok($$select public.create_workflow('x', p_specification => '[]', p_request_id => 'wf-bad')$$, '22023', 'invalid_specification', 'invalid_specification');
select throws_ok(format($$select public.create_workflow('x', p_org_id => %L)$$, :'carol_org'), '42501', 'not_a_member', 'create_workflow in another org');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'alice_org'), 15::bigint, 'refused creations charged nothing');

-- execute_workflow ----------------------------------------------------------------------------------

select :'w1'::jsonb ->> 'workflow_id' as w1_id \gset
select tests.authenticate_as(:'alice');
select public.execute_workflow(:'w1_id', '{"day": "monday"}', 'run-1') as x1 \gset
select public.execute_workflow(:'w1_id', '{"day": "monday"}', 'run-1') as x1b \gset
select tests.clear_authentication();
select is((:'x1'::jsonb #>> '{charge,charged}')::bigint, 3::bigint, 'execute_workflow charges workflow_execute (3)');
select results_eq(
  format('select workflow_id, org_id, created_by, input, status from public.workflow_executions where id = %L', :'x1'::jsonb ->> 'execution_id'),
  format($$values (%L::uuid, %L::uuid, %L::uuid, '{"day": "monday"}'::jsonb, 'queued')$$, :'w1'::jsonb ->> 'workflow_id', :'alice_org', :'alice'),
  'the execution is queued'
);
select is(:'x1b'::jsonb ->> 'execution_id', :'x1'::jsonb ->> 'execution_id', 'a retried execution returns the first one');
select is((select available from public.credit_balances where org_id = :'alice_org'), 12::bigint, 'one execution charged once');

-- A shared org's workflow is charged to the shared org
select tests.authenticate_as(:'bob');
select (public.create_workflow('Team flow', p_request_id => 'wf-team', p_org_id => :'team_org') ->> 'workflow_id') as team_wf \gset
select tests.authenticate_as(:'alice');
select public.execute_workflow(:'team_wf', '{}', 'team-run-1');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'team_org'), 22::bigint, 'a member''s execution is charged to the workflow''s org');
select is((select available from public.credit_balances where org_id = :'alice_org'), 12::bigint, 'not to the member''s personal org');

-- Non-members, unknown workflows, too few credits
select tests.authenticate_as(:'carol');
select throws_ok(format($$select public.execute_workflow(%L, '{}', 'carol-run')$$, :'w1'::jsonb ->> 'workflow_id'), 'PT404', 'unknown_workflow',
  'a non-member cannot execute another org''s workflow, and cannot tell it exists');
select throws_ok($$select public.execute_workflow('00000000-0000-4000-8000-00000000dead')$$, 'PT404', 'unknown_workflow', 'unknown workflow');
select tests.authenticate_as(:'dave');
select (public.create_workflow('Last credits', p_request_id => 'wf-dave') ->> 'workflow_id') as dave_wf \gset
select throws_ok(format($$select public.execute_workflow(%L, '{}', 'dave-run')$$, :'dave_wf'), 'PT402', 'insufficient_credits',
  'execute_workflow with too few credits');
select tests.clear_authentication();
select is_empty(
  format($$select 1 from public.workflow_executions where request_id in ('carol-run', 'dave-run') or org_id = %L$$, :'dave_org'),
  'refused executions wrote no execution'
);
select is_empty($$select 1 from public.credit_requests where request_id in ('carol-run', 'dave-run')$$, 'refused executions wrote no request');

-- Who may call ---------------------------------------------------------------------------------------

select tests.authenticate_as_anon();
select throws_ok($$select public.create_workflow('anon flow')$$, '42501', null, 'anon cannot create workflows');
select tests.authenticate_as_service_role();
select throws_ok($$select public.create_workflow('service flow')$$, '42501', null, 'service_role cannot call the user RPC create_workflow');
select throws_ok(format('select public.execute_workflow(%L)', :'w1'::jsonb ->> 'workflow_id'), '42501', null, 'service_role cannot call execute_workflow');
select tests.clear_authentication();

select * from finish();
rollback;
