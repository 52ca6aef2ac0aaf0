-- Time-driven maintenance: expire_credit_grants(), refresh_orgs_has_usage_credits() and the
-- pg_cron jobs that run them.
begin;
\ir helpers/setup.psql
select plan(41);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset
select tests.personal_org(:'carol') as carol_org \gset
insert into public.credit_prices (operation, credits) values ('test_op', 2);

select (public.grant_credits(:'alice_org', 10, 'promotion', 'a-10', '2030-01-01T00:00:00Z') ->> 'grant_id') as a10 \gset
select (public.grant_credits(:'bob_org', 10, 'promotion', 'b-10', '2030-01-01T00:00:00Z') ->> 'grant_id') as b10 \gset
select (public.grant_credits(:'bob_org', 5, 'purchase', 'b-5') ->> 'grant_id') as b5 \gset
select (public.grant_credits(:'carol_org', 2, 'promotion', 'c-2', '2030-01-01T00:00:00Z') ->> 'grant_id') as c2 \gset
select tests.authenticate_as(:'carol');
select public.consume_credits('test_op', 'carol-1');
select tests.clear_authentication();

-- Nothing is due yet
select tests.authenticate_as_service_role();
select is(public.expire_credit_grants(), 0, 'expire_credit_grants: nothing due, nothing expired');
select tests.clear_authentication();

-- Make them due (alice's first, so a batch of 1 picks it).
update public.credit_grants set expires_at = '2000-01-01T00:00:00Z' where id = :'a10';
update public.credit_grants set expires_at = now() - interval '1 minute' where id in (:'b10', :'c2');
select is((select has_usage_credits from public.orgs where id = :'alice_org'), true, 'setup: a due grant still counts until it is expired');

-- Bounded batches ---------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select throws_ok(format('select public.expire_credit_grants(%s)', b), '22023', 'invalid_batch_size', format('expire_credit_grants: invalid_batch_size %s', b))
from unnest(array['0', '10001', 'null']) b;
select is(public.expire_credit_grants(1), 1, 'a batch of 1 expires the earliest due grant');
select is((select status from public.credit_grants where id = :'a10'), 'expired', 'the earliest due grant was expired');
select is((select status from public.credit_grants where id = :'b10'), 'active', 'the batch stopped there');
select tests.clear_authentication();

select count(*)::int as due from public.credit_grants where status = 'active' and expires_at <= now() \gset
select tests.authenticate_as_service_role();
select is(public.expire_credit_grants(), :'due'::int, 'expire_credit_grants returns how many grants it expired');
select is(public.expire_credit_grants(), 0, 'a second run finds nothing');
select tests.clear_authentication();

-- Alice: her only grant expired
select results_eq(
  format('select status, remaining, expired_amount, expired_at from public.credit_grants where id = %L', :'a10'),
  $$values ('expired', 0::bigint, 10::bigint, now())$$,
  'an expired grant keeps what was left in expired_amount'
);
select results_eq(
  format('select kind, amount, balance_after, grant_id::text from public.credit_ledger where org_id = %L and kind = %L', :'alice_org', 'expire'),
  format('values (%L, -10::bigint, 0::bigint, %L)', 'expire', :'a10'),
  'the ledger records the expiry'
);
select is((select available from public.credit_balances where org_id = :'alice_org'), 0::bigint, 'the balance goes down');
select is((select has_usage_credits from public.orgs where id = :'alice_org'), false, 'the flag goes false when nothing is left');

-- Bob: one of two grants expired
select results_eq(
  format('select status, remaining, expired_amount from public.credit_grants where id = %L', :'b10'),
  $$values ('expired', 0::bigint, 10::bigint)$$,
  'bob''s promotion expired'
);
select is((select remaining from public.credit_grants where id = :'b5'), 5::bigint, 'bob''s grant without expiry is untouched');
select is((select available from public.credit_balances where org_id = :'bob_org'), 5::bigint, 'bob keeps 5');
select is((select has_usage_credits from public.orgs where id = :'bob_org'), true, 'bob''s flag stays true');

-- Carol: a spent grant expires without a ledger entry
select results_eq(
  format('select status, remaining, expired_amount from public.credit_grants where id = %L', :'c2'),
  $$values ('expired', 0::bigint, 0::bigint)$$,
  'a fully spent grant is marked expired with nothing expired'
);
select is_empty(format('select 1 from public.credit_ledger where org_id = %L and kind = %L', :'carol_org', 'expire'),
  'expiring nothing writes no ledger entry');

-- The flag safety net -------------------------------------------------------------------------------

create temporary table org_versions on commit drop as select id, xmin::text as row_xmin, ctid as row_ctid from public.orgs;
select tests.authenticate_as_service_role();
select is(public.refresh_orgs_has_usage_credits(), 0, 'refresh_orgs_has_usage_credits: flags right, returns 0');
select tests.clear_authentication();
select is_empty(
  'select o.id from public.orgs o join org_versions v using (id) where (o.xmin::text, o.ctid) is distinct from (v.row_xmin, v.row_ctid)',
  'and writes no org row'
);

update public.orgs set has_usage_credits = true where id = :'alice_org';
select tests.authenticate_as_service_role();
select is(public.refresh_orgs_has_usage_credits(), 1, 'a flag corrupted to true is repaired (returns 1)');
select tests.clear_authentication();
select is((select has_usage_credits from public.orgs where id = :'alice_org'), false, 'alice''s flag is false again');

update public.orgs set has_usage_credits = false where id = :'bob_org';
update public.orgs set has_usage_credits = true where id = :'carol_org';
select tests.authenticate_as_service_role();
select is(public.refresh_orgs_has_usage_credits(), 2, 'flags corrupted both ways are repaired');
select tests.clear_authentication();
select results_eq(
  format('select has_usage_credits from public.orgs where id in (%L, %L) order by has_usage_credits', :'bob_org', :'carol_org'),
  $$values (false), (true)$$,
  'bob''s flag is true and carol''s false again'
);
select tests.authenticate_as_service_role();
select is(public.refresh_orgs_has_usage_credits(), 0, 'after the repair there is nothing left to do');
select throws_ok('select public.refresh_orgs_has_usage_credits(0)', '22023', 'invalid_batch_size', 'refresh: invalid_batch_size');
select tests.clear_authentication();

-- pg_cron schedules ---------------------------------------------------------------------------------

select is(
  (select string_agg(jobname || ' ' || schedule, ', ' order by jobname) from cron.job
   where jobname in ('tollgate-expire-credit-grants', 'tollgate-expire-stale-holds', 'tollgate-refresh-credit-flags')),
  'tollgate-expire-credit-grants * * * * *, tollgate-expire-stale-holds * * * * *, tollgate-refresh-credit-flags * * * * *',
  'expiry, stale holds and the flag safety net run every minute'
);
select ok(
  exists (select from cron.job where jobname = 'tollgate-reconcile-credits' and command ~ 'public\.reconcile_credits\(\)'),
  'reconciliation is scheduled'
);
select is(
  (select count(*)::int from cron.job where (jobname::text, command) in (
    ('tollgate-expire-credit-grants', 'select public.expire_credit_grants(1000)'),
    ('tollgate-expire-stale-holds', 'select public.expire_stale_holds(2000)'),
    ('tollgate-refresh-credit-flags', 'select public.refresh_orgs_has_usage_credits(10000)')
  )),
  3, 'each job runs one bounded batch of its function'
);
-- (Other concerns schedule jobs of their own, e.g. the usage rollup: 20-usage-rollup.sql.)
select is(
  (select count(*)::int from cron.job
   where jobname in ('tollgate-expire-credit-grants', 'tollgate-expire-stale-holds', 'tollgate-refresh-credit-flags', 'tollgate-reconcile-credits') and active),
  4, 'all four jobs are active'
);

-- A charge's figures never count credits past their expiry that no job has settled yet --------
-- (found by the model-based test: the charge settled only the due grants its burn-down met, so
-- a due grant further down the order was still in balance_before / balance_after, and in the
-- `available` of an insufficient_credits refusal)

select tests.create_user('dave@example.test') as dave \gset
select tests.personal_org(:'dave') as dave_org \gset
select public.grant_credits(:'dave_org', 100, 'purchase', 'd-100', null, '{}', 1);
select (public.grant_credits(:'dave_org', 50, 'promotion', 'd-50', '2030-01-01T00:00:00Z') ->> 'grant_id') as d50 \gset
update public.credit_grants set expires_at = now() - interval '1 minute' where id = :'d50';
select tests.authenticate_as(:'dave');
select public.consume_credits('test_op', 'dave-1', 5) as dave_charge \gset
select tests.clear_authentication();
select is((:'dave_charge'::jsonb ->> 'balance_before')::bigint, 100::bigint, 'a due grant the burn-down never reaches is not in balance_before');
select is((:'dave_charge'::jsonb ->> 'balance_after')::bigint, 90::bigint, '... nor in balance_after');
select is((select status from public.credit_grants where id = :'d50'), 'expired', 'the charge expired it first');

select tests.create_user('erin@example.test') as erin \gset
select tests.personal_org(:'erin') as erin_org \gset
select (public.grant_credits(:'erin_org', 1, 'promotion', 'e-1', '2030-01-01T00:00:00Z') ->> 'grant_id') as e1 \gset
update public.credit_grants set expires_at = now() - interval '1 minute' where id = :'e1';
create function pg_temp.refusal_detail(p_request_id text, p_quantity integer) returns jsonb language plpgsql as $f$
declare v_detail text;
begin
  perform public.consume_credits('test_op', p_request_id, p_quantity);
  return null;
exception when sqlstate 'PT402' then
  get stacked diagnostics v_detail = pg_exception_detail;
  return v_detail::jsonb;
end
$f$;
grant execute on function pg_temp.refusal_detail(text, integer) to authenticated;
select tests.authenticate_as(:'erin');
select is(pg_temp.refusal_detail('erin-1', 3) ->> 'available', '0', 'insufficient_credits does not offer credits past their expiry');
select throws_ok($$select public.consume_credits('test_op', 'erin-2', 3)$$, 'PT402', 'insufficient_credits', 'a due grant cannot pay');
select tests.clear_authentication();
select is(
  (select jsonb_build_object('available', b.available, 'status', (select g.status from public.credit_grants g where g.id = :'e1')) from public.credit_balances b where b.org_id = :'erin_org'),
  jsonb_build_object('available', 1, 'status', 'active'),
  'a refusal rolls back with it the expiry it settled (the cron job settles it)'
);

-- Who may run maintenance ------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok('select public.expire_credit_grants()', '42501', null, 'a user cannot expire grants');
select throws_ok('select public.refresh_orgs_has_usage_credits()', '42501', null, 'a user cannot refresh flags');
select tests.authenticate_as_anon();
select throws_ok('select public.expire_credit_grants()', '42501', null, 'anon cannot expire grants');
select tests.clear_authentication();

select * from finish();
rollback;
