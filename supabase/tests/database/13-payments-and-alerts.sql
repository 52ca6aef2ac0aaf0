-- Payments, auto top-up and alerts: who may read what, who may change settings, and the
-- database halves of the flows (one open top-up per org, alert thresholds).
begin;
\ir helpers/setup.psql
select plan(22);

select tests.create_user('owner@example.test') as owner \gset
select tests.create_user('member@example.test') as member \gset
select tests.create_user('stranger@example.test') as stranger \gset
select tests.personal_org(:'owner') as org \gset
insert into public.org_members (org_id, user_id, role) values (:'org', :'member', 'member');
insert into public.credit_prices (operation, credits) values ('test_op', 1);

-- Settings: owners and admins write, members read, strangers neither
select tests.authenticate_as(:'member');
select throws_ok(format($$select public.set_auto_topup(true, 10, 100, 100, %L)$$, :'org'), '42501', 'forbidden', 'a member cannot change auto top-up');
select is((public.get_auto_topup(:'org') ->> 'enabled')::boolean, false, 'a member reads the settings');
select throws_ok(format($$select public.set_alert_webhook('https://example.com/h', %L)$$, :'org'), '42501', 'forbidden', 'a member cannot set the alert webhook');
select tests.authenticate_as(:'stranger');
select throws_ok(format($$select public.get_auto_topup(%L)$$, :'org'), '42501', 'not_a_member', 'a stranger cannot read the settings');
select tests.authenticate_as(:'owner');
select throws_ok('select public.set_auto_topup(true, 0, 100, 100)', '22023', 'invalid_threshold', 'threshold must be positive');
select throws_ok('select public.set_auto_topup(true, 10, 100, 99)', '22023', 'invalid_monthly_cap', 'the cap must allow one top-up');
select throws_ok('select public.set_auto_topup(null, 10, 100, 100)', '22023', 'invalid_enabled', 'enabled is required');
select throws_ok($$select public.set_alert_webhook('ftp://example.com')$$, '22023', 'invalid_url', 'alert webhooks are http(s)');
select lives_ok('select public.set_auto_topup(true, 50, 100, 300)', 'the owner sets auto top-up');
select is((select auto_topup_threshold from public.credit_balances where org_id = :'org'), 50::bigint, 'the balance row carries the threshold');
select tests.clear_authentication();

-- Service-only tables and RPCs
select tests.authenticate_as(:'owner');
select throws_ok('select * from public.org_billing', '42501', null, 'users cannot read billing details');
select throws_ok('select * from public.org_alert_webhooks', '42501', null, 'users cannot read webhook secrets');
select throws_ok(format($$select public.set_org_billing(%L, 'cus_x')$$, :'org'), '42501', null, 'users cannot set billing details');
select throws_ok('select * from public.claim_topup_requests()', '42501', null, 'users cannot claim top-ups');
select throws_ok('select * from public.claim_credit_alerts()', '42501', null, 'users cannot claim alerts');
select tests.clear_authentication();

-- One open top-up per org, queued by the crossing itself
select public.grant_credits(:'org', 100, 'purchase', 'p-1');
select tests.authenticate_as(:'owner');
select public.consume_credits('test_op', 'c-1', 50);
select is((select count(*)::int from public.credit_topup_requests where org_id = :'org'), 0, 'no top-up at exactly the threshold');
select public.consume_credits('test_op', 'c-2', 1);
select public.consume_credits('test_op', 'c-3', 1);
select results_eq(format('select amount, status from public.credit_topup_requests where org_id = %L', :'org'), $$values (100::bigint, 'pending')$$,
  'crossing below the threshold queues one top-up, and further charges do not add another');
select results_eq('select org_id, status from public.credit_topup_requests', format('values (%L::uuid, %L)', :'org', 'pending'),
  'members read their org''s top-up requests');
select tests.clear_authentication();
select throws_ok(format($$insert into public.credit_topup_requests (org_id, amount) values (%L, 1)$$, :'org'), '23505', null,
  'the database refuses a second open top-up for the org');

-- Alerts: thresholds of the last grant, each once
select results_eq(format('select threshold from public.credit_alert_outbox where org_id = %L order by threshold', :'org'), array[50::smallint],
  '52 of 100 used: the 50 %% alert');
select tests.authenticate_as(:'owner');
select public.consume_credits('test_op', 'c-4', 48);
select tests.clear_authentication();
select results_eq(format('select threshold from public.credit_alert_outbox where org_id = %L order by threshold', :'org'), array[50, 75, 90, 100]::smallint[],
  'all used: 75, 90 and 100 %% in one charge, 50 %% not again');
select tests.authenticate_as(:'stranger');
select is_empty('select 1 from public.credit_alert_outbox', 'strangers see no alerts');
select tests.clear_authentication();

select * from finish();
rollback;
