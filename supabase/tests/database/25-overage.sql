-- Overage with a spend cap: set_overage_limit (who may call it, validation, answer, idempotency),
-- charges that burn covering grants and take the shortfall as debt up to the limit, refusals
-- with the overage figures, the debt in balances, answers, allocations and the ledger, new
-- unscoped grants paying the debt (insert, pending and scheduled activation, auto top-up) and
-- scoped ones not, holds / captures / releases / refunds giving the debt back first (or to the
-- grant that repaid it), revocations into overage, the flag in every case, alerts, batches on
-- scoped credits running into overage, and reconcile_credits() (clean, and catching corruption).
begin;
\ir helpers/setup.psql
select plan(146);

select tests.create_user('eve@example.test') as eve \gset
select tests.create_user('fay@example.test') as fay \gset
select tests.create_user('gus@example.test') as gus \gset
select tests.create_user('hal@example.test') as hal \gset
select tests.create_user('ivy@example.test') as ivy \gset
select tests.create_user('jo@example.test') as jo \gset
select tests.create_user('kay@example.test') as kay \gset
select tests.create_user('lu@example.test') as lu \gset
select tests.create_user('mo@example.test') as mo \gset
select tests.personal_org(:'eve') as eve_org \gset
select tests.personal_org(:'fay') as fay_org \gset
select tests.personal_org(:'gus') as gus_org \gset
select tests.personal_org(:'hal') as hal_org \gset
select tests.personal_org(:'ivy') as ivy_org \gset
select tests.personal_org(:'jo') as jo_org \gset
select tests.personal_org(:'kay') as kay_org \gset
select tests.personal_org(:'lu') as lu_org \gset
select tests.personal_org(:'mo') as mo_org \gset
insert into public.credit_prices (operation, credits) values ('ov_a', 10), ('ov_b', 1);

-- An org's figures in one value, whatever role the test acts as.
create function tests.books(p_org_id uuid)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object('available', b.available, 'overage', b.overage, 'held', b.held, 'limit', b.overage_limit, 'flag', o.has_usage_credits)
  from public.credit_balances b join public.orgs o on o.id = b.org_id where b.org_id = p_org_id
$$;
create function tests.grant_state(p_grant_id uuid)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$ select jsonb_build_object('remaining', g.remaining, 'overage_repaid', g.overage_repaid) from public.credit_grants g where g.id = p_grant_id $$;
-- The org's ledger entries after p_after (an id), in order.
create function tests.entries(p_org_id uuid, p_after bigint default 0)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object('kind', l.kind, 'amount', l.amount, 'held_delta', l.held_delta, 'overage_delta', l.overage_delta,
                                               'balance_after', l.balance_after, 'overage_after', l.overage_after) order by l.id), '[]')
  from public.credit_ledger l where l.org_id = p_org_id and l.id > p_after
$$;
create function tests.last_entry(p_org_id uuid)
returns bigint
language sql
stable
security definer
set search_path = ''
as $$ select coalesce(max(l.id), 0) from public.credit_ledger l where l.org_id = p_org_id $$;
create function tests.allocations(p_org_id uuid, p_request_id text)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$ select r.allocations from public.credit_requests r where r.org_id = p_org_id and r.request_id = p_request_id $$;
grant execute on all functions in schema tests to anon, authenticated, service_role;

-- The schema ------------------------------------------------------------------------------------------

select col_type_is('public', 'credit_balances', 'overage', 'bigint', 'credit_balances.overage');
select col_type_is('public', 'credit_balances', 'overage_limit', 'bigint', 'credit_balances.overage_limit');
select col_type_is('public', 'credit_ledger', 'overage_delta', 'bigint', 'credit_ledger.overage_delta');
select col_type_is('public', 'credit_ledger', 'overage_after', 'bigint', 'credit_ledger.overage_after');
select col_type_is('public', 'credit_grants', 'overage_repaid', 'bigint', 'credit_grants.overage_repaid');
select col_type_is('public', 'credit_revocations', 'overage', 'bigint', 'credit_revocations.overage');
select is(tests.books(:'eve_org'), '{"available": 0, "overage": 0, "held": 0, "limit": 0, "flag": false}'::jsonb, 'a new org: no debt, limit 0');

-- set_overage_limit: who, what, idempotency ---------------------------------------------------------------

select ok(has_function_privilege('service_role', 'public.set_overage_limit(uuid, bigint)', 'execute'), 'service_role may set the limit');
select ok(not has_function_privilege('authenticated', 'public.set_overage_limit(uuid, bigint)', 'execute'), 'authenticated may not');
select ok(not has_function_privilege('anon', 'public.set_overage_limit(uuid, bigint)', 'execute'), 'anon may not');
select tests.authenticate_as(:'eve');
select throws_ok(format($$select public.set_overage_limit(%L, 100)$$, :'eve_org'), '42501', null, 'a user cannot set their own org''s limit');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.set_overage_limit(%L, 100)$$, :'eve_org'), '42501', null, 'anon cannot set a limit');
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.set_overage_limit(%L, -1)$$, :'eve_org'), '22023', 'invalid_limit', 'a negative limit is invalid_limit');
select throws_ok(format($$select public.set_overage_limit(%L, null)$$, :'eve_org'), '22023', 'invalid_limit', 'a null limit is invalid_limit');
select throws_ok(format($$select public.set_overage_limit(%L, 1000000000001)$$, :'eve_org'), '22023', 'invalid_limit', 'the limit has a ceiling');
select throws_ok($$select public.set_overage_limit('00000000-0000-4000-8000-00000000dead', 5)$$, 'PT404', 'unknown_org', 'an unknown org is PT404');
select is(tests.books(:'eve_org'), '{"available": 0, "overage": 0, "held": 0, "limit": 0, "flag": false}'::jsonb, 'refused calls changed nothing');
select is((public.set_overage_limit(:'eve_org', 1000000000000) ->> 'overage_limit')::bigint, 1000000000000::bigint, 'the ceiling itself is allowed');
select is(public.set_overage_limit(:'eve_org', 100),
  jsonb_build_object('org_id', :'eve_org'::uuid, 'overage_limit', 100, 'overage', 0, 'available', 0, 'has_usage_credits', true),
  'the answer: {org_id, overage_limit, overage, available, has_usage_credits}');
select is(public.set_overage_limit(:'eve_org', 100),
  jsonb_build_object('org_id', :'eve_org'::uuid, 'overage_limit', 100, 'overage', 0, 'available', 0, 'has_usage_credits', true),
  'setting the same limit again answers the same');
select is(tests.books(:'eve_org'), '{"available": 0, "overage": 0, "held": 0, "limit": 100, "flag": true}'::jsonb,
  'limit 100 and no credits: the org can spend, flag true');
select is(tests.entries(:'eve_org'), '[]'::jsonb, 'a limit is no ledger entry');
select public.refresh_orgs_has_usage_credits() as ignored \gset
select is((tests.books(:'eve_org') ->> 'flag')::boolean, true, 'refresh_orgs_has_usage_credits keeps it true');
select is(public.set_overage_limit(:'fay_org', 0) ->> 'has_usage_credits', 'false', 'limit 0 and no credits: has_usage_credits false');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: an org with a limit and no credits is consistent');

-- Charging into overage ------------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.grant_credits(:'eve_org', 30, 'purchase', 'eve-30') ->> 'grant_id' as e1 \gset
select tests.last_entry(:'eve_org') as mark \gset
select tests.authenticate_as(:'eve');
select public.consume_credits('ov_a', 'e-1', 5) as ec1 \gset
select is(:'ec1'::jsonb - 'org_id',
  '{"request_id": "e-1", "operation": "ov_a", "quantity": 5, "status": "charged", "charged": 50, "balance_before": 30, "balance_after": -20, "overage": 20, "replayed": false}'::jsonb,
  'a charge beyond the grants: balance_after negative, overage = the part taken as debt');
select is(tests.allocations(:'eve_org', 'e-1'),
  jsonb_build_array(jsonb_build_object('grant_id', :'e1'::uuid, 'amount', 30), jsonb_build_object('grant_id', null, 'amount', 20)),
  'allocations: the grant first, the debt last as {grant_id: null}');
select is(tests.books(:'eve_org'), '{"available": -20, "overage": 20, "held": 0, "limit": 100, "flag": true}'::jsonb,
  'available below zero by the debt; overage is the debt; 80 of room left: flag true');
select is(tests.entries(:'eve_org', :mark),
  '[{"kind": "charge", "amount": -50, "held_delta": 0, "overage_delta": 20, "balance_after": -20, "overage_after": 20}]'::jsonb,
  'one charge entry: -50, overage_delta +20');
select public.get_credit_balance() as eb \gset
select is(jsonb_build_object('available', :'eb'::jsonb -> 'available', 'overage', :'eb'::jsonb -> 'overage', 'overage_limit', :'eb'::jsonb -> 'overage_limit',
                             'scopes', jsonb_path_query_array(:'eb'::jsonb -> 'scopes', '$[*] ? (@.available != 0)')),
  '{"available": -20, "overage": 20, "overage_limit": 100, "scopes": []}'::jsonb, 'get_credit_balance: available -20, overage 20, limit 100');
select is(tests.error_of($$select public.consume_credits('ov_a', 'e-2', 9)$$),
  '{"sqlstate": "PT402", "message": "insufficient_credits", "detail": {"required": 90, "available": -20, "operation": "ov_a", "quantity": 9, "overage": 20, "overage_limit": 100}}'::jsonb,
  'beyond the limit (20 + 90 > 100): insufficient_credits with the overage figures');
select is(tests.books(:'eve_org'), '{"available": -20, "overage": 20, "held": 0, "limit": 100, "flag": true}'::jsonb, 'the refused charge changed nothing');
select is(public.consume_credits('ov_a', 'e-1', 5), :'ec1'::jsonb || '{"replayed": true}', 'a replay answers the first result, overage included');
select public.consume_credits('ov_a', 'e-3', 8) as ec3 \gset
select is(jsonb_build_object('overage', :'ec3'::jsonb -> 'overage', 'balance_after', :'ec3'::jsonb -> 'balance_after'), '{"overage": 80, "balance_after": -100}'::jsonb,
  'exactly up to the limit: allowed');
select is(tests.books(:'eve_org'), '{"available": -100, "overage": 100, "held": 0, "limit": 100, "flag": false}'::jsonb, 'the debt reached the limit: flag false');
select is(tests.error_of($$select public.consume_credits('ov_b', 'e-4', 1)$$) -> 'detail',
  '{"required": 1, "available": -100, "operation": "ov_b", "quantity": 1, "overage": 100, "overage_limit": 100}'::jsonb, 'not one credit more');
select tests.authenticate_as_service_role();
select is(tests.error_of(format($$select public.reserve_credits(%L, null, 'ov_b', 'e-5', 1)$$, :'eve_org')) -> 'detail',
  '{"required": 1, "available": -100, "operation": "ov_b", "quantity": 1, "overage": 100, "overage_limit": 100}'::jsonb, 'reserve_credits: the same');
select is((select count(*)::int from public.credit_requests where org_id = :'eve_org'), 2, 'refused charges recorded nothing');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent at the limit');

-- New grants pay the debt ---------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select tests.last_entry(:'eve_org') as mark \gset
select public.grant_credits(:'eve_org', 60, 'purchase', 'eve-60') as e2 \gset
select is(jsonb_build_object('remaining', :'e2'::jsonb -> 'remaining', 'balance_after', :'e2'::jsonb -> 'balance_after'),
  '{"remaining": 0, "balance_after": -40}'::jsonb, 'an unscoped grant pays the debt first: nothing remains of 60, balance -40');
select is(tests.grant_state((:'e2'::jsonb ->> 'grant_id')::uuid), '{"remaining": 0, "overage_repaid": 60}'::jsonb, 'the grant records what it repaid');
select is(tests.entries(:'eve_org', :mark),
  '[{"kind": "grant", "amount": 60, "held_delta": 0, "overage_delta": -60, "balance_after": -40, "overage_after": 40}]'::jsonb,
  'ONE grant entry: +60, overage_delta -60');
select is(tests.books(:'eve_org'), '{"available": -40, "overage": 40, "held": 0, "limit": 100, "flag": true}'::jsonb,
  'the debt is 40: room again, flag true');
select public.grant_credits(:'eve_org', 100, 'purchase', 'eve-100') as e3 \gset
select is(tests.grant_state((:'e3'::jsonb ->> 'grant_id')::uuid), '{"remaining": 60, "overage_repaid": 40}'::jsonb, 'a grant larger than the debt: repays 40, keeps 60');
select is(tests.books(:'eve_org'), '{"available": 60, "overage": 0, "held": 0, "limit": 100, "flag": true}'::jsonb, 'no debt left');
select is((public.grant_credits(:'eve_org', 100, 'purchase', 'eve-100') ->> 'replayed')::boolean, true, 'a grant replay is a replay');
select is(jsonb_array_length(tests.entries(:'eve_org', :mark)), 2, 'and repays nothing twice: two grant entries');
select is(tests.grant_state((:'e3'::jsonb ->> 'grant_id')::uuid), '{"remaining": 60, "overage_repaid": 40}'::jsonb, 'the grant is unchanged by the replay');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent after repayments');

-- A scoped grant pays no debt; pending and scheduled activations do --------------------------------------

select tests.authenticate_as_service_role();
select public.set_overage_limit(:'fay_org', 50) as ignored \gset
select tests.authenticate_as(:'fay');
select public.consume_credits('ov_a', 'f-1', 3) as fc1 \gset
select is(jsonb_build_object('balance_before', :'fc1'::jsonb -> 'balance_before', 'balance_after', :'fc1'::jsonb -> 'balance_after', 'overage', :'fc1'::jsonb -> 'overage'),
  '{"balance_before": 0, "balance_after": -30, "overage": 30}'::jsonb, 'no grants at all: the whole charge is debt');
select is(tests.allocations(:'fay_org', 'f-1'), '[{"grant_id": null, "amount": 30}]'::jsonb, 'one debt piece');
select tests.authenticate_as_service_role();
select tests.last_entry(:'fay_org') as mark \gset
select public.grant_credits(:'fay_org', 20, 'promotion', 'fay-a', p_operations => array['ov_a']) as f2 \gset
select is(tests.grant_state((:'f2'::jsonb ->> 'grant_id')::uuid), '{"remaining": 20, "overage_repaid": 0}'::jsonb, 'a scoped grant pays no debt');
select is(tests.entries(:'fay_org', :mark),
  '[{"kind": "grant", "amount": 20, "held_delta": 0, "overage_delta": 0, "balance_after": -10, "overage_after": 30}]'::jsonb, 'its entry: +20, overage_delta 0');
select tests.authenticate_as(:'fay');
select public.get_credit_balance() as fb \gset
select is(jsonb_build_object('available', :'fb'::jsonb -> 'available', 'overage', :'fb'::jsonb -> 'overage', 'overage_limit', :'fb'::jsonb -> 'overage_limit',
                             'scopes', jsonb_path_query_array(:'fb'::jsonb -> 'scopes', '$[*] ? (@.available != 0)')),
  '{"available": -10, "overage": 30, "overage_limit": 50, "scopes": [{"operations": ["ov_a"], "available": 20}]}'::jsonb,
  'get_credit_balance: available = scopes (20) - overage (30)');
select is(tests.error_of($$select public.consume_credits('ov_a', 'f-2', 5)$$) -> 'detail',
  '{"required": 50, "available": -10, "operation": "ov_a", "quantity": 5, "overage": 30, "overage_limit": 50}'::jsonb,
  'ov_a may use 20 - 30 = -10, plus 50 of limit: 50 is too much');
select is(tests.error_of($$select public.consume_credits('ov_b', 'f-3', 21)$$) -> 'detail',
  '{"required": 21, "available": -30, "operation": "ov_b", "quantity": 21, "overage": 30, "overage_limit": 50}'::jsonb,
  'ov_b may not use the ov_a grant: -30 + 50 leaves 20');
select public.consume_credits('ov_a', 'f-4', 4) as fc4 \gset
select is(tests.allocations(:'fay_org', 'f-4'),
  jsonb_build_array(jsonb_build_object('grant_id', (:'f2'::jsonb ->> 'grant_id')::uuid, 'amount', 20), jsonb_build_object('grant_id', null, 'amount', 20)),
  '40 for ov_a: the scoped grant first, then 20 of debt');
select is(tests.books(:'fay_org'), '{"available": -50, "overage": 50, "held": 0, "limit": 50, "flag": false}'::jsonb, 'at the limit: flag false');
-- Pending activation pays the debt.
select tests.authenticate_as_service_role();
select public.grant_credits(:'fay_org', 30, 'purchase', 'cs_fay', p_pending => true) ->> 'grant_id' as f3 \gset
select is(tests.books(:'fay_org'), '{"available": -50, "overage": 50, "held": 0, "limit": 50, "flag": false}'::jsonb, 'a pending grant pays nothing yet');
select tests.last_entry(:'fay_org') as mark \gset
select public.activate_credit_grant(:'fay_org', 'purchase', 'cs_fay') as ignored \gset
select is(tests.grant_state(:'f3'), '{"remaining": 0, "overage_repaid": 30}'::jsonb, 'its activation pays the debt');
select is(tests.entries(:'fay_org', :mark),
  '[{"kind": "grant", "amount": 30, "held_delta": 0, "overage_delta": -30, "balance_after": -20, "overage_after": 20}]'::jsonb, 'one grant entry at activation');
select is(tests.books(:'fay_org'), '{"available": -20, "overage": 20, "held": 0, "limit": 50, "flag": true}'::jsonb, 'room again: flag true');
-- Scheduled activation pays the debt.
select public.grant_credits(:'fay_org', 25, 'promotion', 'fay-later', p_effective_at => now() + interval '1 hour') ->> 'grant_id' as f4 \gset
select tests.clear_authentication();
update public.credit_grants set effective_at = now() - interval '1 second' where id = :'f4';
select tests.authenticate_as_service_role();
select tests.last_entry(:'fay_org') as mark \gset
select public.activate_scheduled_grants() as ignored \gset
select is(tests.grant_state(:'f4'), '{"remaining": 5, "overage_repaid": 20}'::jsonb, 'a scheduled grant pays the debt when it starts');
select is(tests.entries(:'fay_org', :mark),
  '[{"kind": "grant", "amount": 25, "held_delta": 0, "overage_delta": -20, "balance_after": 5, "overage_after": 0}]'::jsonb, 'one grant entry at the start');
select is(tests.books(:'fay_org'), '{"available": 5, "overage": 0, "held": 0, "limit": 50, "flag": true}'::jsonb, 'debt repaid');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent after scoped, pending and scheduled grants');

-- Onboarding and checkout grants are unscoped: they pay the debt too.
select public.set_overage_limit(:'mo_org', 100) as ignored \gset
select tests.authenticate_as(:'mo');
select public.consume_credits('ov_a', 'm-1', 5) as ignored \gset
select tests.authenticate_as_service_role();
select public.grant_onboarding_credits(:'mo', 5) ->> 'grant_id' as m_onb \gset
select is(tests.grant_state(:'m_onb'), '{"remaining": 0, "overage_repaid": 5}'::jsonb, 'an onboarding grant pays the debt');
select is(public.apply_checkout_event('evt_mo_1', 'checkout.session.completed', 'cs_mo_1', :'mo_org', 30, 'paid', 'pi_mo_1', 3000, 'EUR') ->> 'outcome', 'granted',
  'a paid checkout grants');
select is((select jsonb_build_object('remaining', remaining, 'overage_repaid', overage_repaid) from public.credit_grants where org_id = :'mo_org' and external_ref = 'cs_mo_1'),
  '{"remaining": 0, "overage_repaid": 30}'::jsonb, 'and its grant pays the debt');
select public.apply_checkout_event('evt_mo_2', 'checkout.session.completed', 'cs_mo_2', :'mo_org', 40, 'unpaid', 'pi_mo_2', 4000, 'EUR') as ignored \gset
select is(tests.books(:'mo_org'), '{"available": -15, "overage": 15, "held": 0, "limit": 100, "flag": true}'::jsonb, 'an unpaid checkout pays nothing yet');
select public.apply_checkout_event('evt_mo_3', 'checkout.session.async_payment_succeeded', 'cs_mo_2', :'mo_org', 40, 'paid', 'pi_mo_2', 4000, 'EUR') as ignored \gset
select is((select jsonb_build_object('remaining', remaining, 'overage_repaid', overage_repaid) from public.credit_grants where org_id = :'mo_org' and external_ref = 'cs_mo_2'),
  '{"remaining": 25, "overage_repaid": 15}'::jsonb, 'its payment succeeding pays the rest of the debt');
select is(tests.books(:'mo_org'), '{"available": 25, "overage": 0, "held": 0, "limit": 100, "flag": true}'::jsonb, 'mo: 25, no debt');
select is((select count(*)::int from public.credit_ledger where org_id = :'mo_org' and kind = 'grant'), 3, 'one grant entry per grant');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent after onboarding and checkout repayments');

-- Holds, captures, releases, refunds: the debt goes back first ---------------------------------------------
-- Gus's grants have distinct priorities, so the burn order is fixed.

select tests.authenticate_as_service_role();
select public.set_overage_limit(:'gus_org', 100) as ignored \gset
select public.grant_credits(:'gus_org', 20, 'purchase', 'gus-a', p_priority => 10) ->> 'grant_id' as ga \gset
select tests.last_entry(:'gus_org') as mark \gset
select public.reserve_credits(:'gus_org', :'gus', 'ov_a', 'h-1', 5) as h1 \gset
select is(jsonb_build_object('reserved', :'h1'::jsonb -> 'reserved', 'balance_after', :'h1'::jsonb -> 'balance_after', 'overage', :'h1'::jsonb -> 'overage'),
  '{"reserved": 50, "balance_after": -30, "overage": 30}'::jsonb, 'a hold into overage: 30 of it is debt');
select is(tests.allocations(:'gus_org', 'h-1'), jsonb_build_array(jsonb_build_object('grant_id', :'ga'::uuid, 'amount', 20), jsonb_build_object('grant_id', null, 'amount', 30)),
  'the hold''s allocations end with the debt piece');
select is(tests.books(:'gus_org'), '{"available": -30, "overage": 30, "held": 50, "limit": 100, "flag": true}'::jsonb, 'held 50, debt 30');
select public.release_credits(:'gus_org', 'h-1') as ignored \gset
select is(tests.books(:'gus_org'), '{"available": 20, "overage": 0, "held": 0, "limit": 100, "flag": true}'::jsonb, 'a release gives the debt back: no debt, the grant whole');
select is(tests.entries(:'gus_org', :mark),
  '[{"kind": "hold", "amount": -50, "held_delta": 50, "overage_delta": 30, "balance_after": -30, "overage_after": 30},
    {"kind": "release", "amount": 50, "held_delta": -50, "overage_delta": -30, "balance_after": 20, "overage_after": 0}]'::jsonb,
  'the ledger: hold with overage_delta +30, release with -30');
select is(tests.grant_state(:'ga'), '{"remaining": 20, "overage_repaid": 0}'::jsonb, 'the grant got its 20 back');

-- A partial capture releases the debt piece first.
select public.reserve_credits(:'gus_org', :'gus', 'ov_a', 'h-2', 5) as ignored \gset
select tests.last_entry(:'gus_org') as mark \gset
select public.capture_credits(:'gus_org', 'h-2', 4) as ignored \gset
select is(tests.allocations(:'gus_org', 'h-2'), jsonb_build_array(jsonb_build_object('grant_id', :'ga'::uuid, 'amount', 20), jsonb_build_object('grant_id', null, 'amount', 20)),
  'capturing 40 of 50: 10 of the debt piece given back');
select is(tests.books(:'gus_org'), '{"available": -20, "overage": 20, "held": 0, "limit": 100, "flag": true}'::jsonb, 'debt 20');
select is(tests.entries(:'gus_org', :mark) -> -1, '{"kind": "release", "amount": 10, "held_delta": -10, "overage_delta": -10, "balance_after": -20, "overage_after": 20}'::jsonb,
  'the released rest lowers the debt');
-- A refund gives the debt back first.
select public.refund_credits(:'gus_org', 'h-2', 'backend failed') as ignored \gset
select is(tests.books(:'gus_org'), '{"available": 20, "overage": 0, "held": 0, "limit": 100, "flag": true}'::jsonb, 'a refund: debt 0, the grant whole');
select is(tests.entries(:'gus_org', :mark) -> -1, '{"kind": "refund", "amount": 40, "held_delta": 0, "overage_delta": -20, "balance_after": 20, "overage_after": 0}'::jsonb,
  'the refund entry lowers the debt by 20');

-- A refund after a later grant repaid the debt: the credits go back to that grant.
select tests.authenticate_as(:'gus');
select public.consume_credits('ov_a', 'c-1', 5) as ignored \gset
select tests.authenticate_as_service_role();
select public.grant_credits(:'gus_org', 100, 'purchase', 'gus-b', p_priority => 20) ->> 'grant_id' as gb \gset
select is(tests.grant_state(:'gb'), '{"remaining": 70, "overage_repaid": 30}'::jsonb, 'gus-b repaid the 30 of c-1''s debt');
select tests.last_entry(:'gus_org') as mark \gset
select public.refund_credits(:'gus_org', 'c-1', 'backend failed') as ignored \gset
select is(tests.grant_state(:'gb'), '{"remaining": 100, "overage_repaid": 0}'::jsonb, 'the refunded debt piece goes back to the grant that repaid it');
select is(tests.grant_state(:'ga'), '{"remaining": 20, "overage_repaid": 0}'::jsonb, 'and the rest to the grant it came from');
select is(tests.entries(:'gus_org', :mark), '[{"kind": "refund", "amount": 50, "held_delta": 0, "overage_delta": 0, "balance_after": 120, "overage_after": 0}]'::jsonb,
  'the refund entry: +50, the debt unchanged (already 0)');
-- Partly repaid: the debt is lowered by what is left of it, the rest goes to the grant that repaid.
select tests.authenticate_as(:'gus');
select public.consume_credits('ov_a', 'c-2', 13) as ignored \gset
select is(tests.books(:'gus_org'), '{"available": -10, "overage": 10, "held": 0, "limit": 100, "flag": true}'::jsonb, 'c-2: 120 from grants, 10 of debt');
select tests.authenticate_as_service_role();
select public.grant_credits(:'gus_org', 4, 'purchase', 'gus-c', p_priority => 30) ->> 'grant_id' as gc \gset
select is(tests.grant_state(:'gc'), '{"remaining": 0, "overage_repaid": 4}'::jsonb, 'gus-c repaid 4 of the 10');
select tests.last_entry(:'gus_org') as mark \gset
select public.refund_credits(:'gus_org', 'c-2', 'backend failed') as ignored \gset
select is(jsonb_build_object('gc', tests.grant_state(:'gc'), 'gb', tests.grant_state(:'gb'), 'ga', tests.grant_state(:'ga')),
  '{"gc": {"remaining": 4, "overage_repaid": 0}, "gb": {"remaining": 100, "overage_repaid": 0}, "ga": {"remaining": 20, "overage_repaid": 0}}'::jsonb,
  'refund of a partly repaid debt: 6 lowers the debt, 4 back to gus-c, the rest to the grants');
select is(tests.entries(:'gus_org', :mark), '[{"kind": "refund", "amount": 130, "held_delta": 0, "overage_delta": -6, "balance_after": 124, "overage_after": 0}]'::jsonb,
  'the refund entry lowers the debt by 6');
-- A hold that expires gives its debt back like a release.
select public.reserve_credits(:'gus_org', :'gus', 'ov_a', 'h-3', 13) as ignored \gset
select is(tests.books(:'gus_org'), '{"available": -6, "overage": 6, "held": 130, "limit": 100, "flag": true}'::jsonb, 'h-3: 124 from grants, 6 of debt');
select tests.clear_authentication();
update public.credit_requests set hold_expires_at = now() - interval '1 second' where org_id = :'gus_org' and request_id = 'h-3';
select tests.authenticate_as_service_role();
select public.expire_stale_holds() as ignored \gset
select is(tests.books(:'gus_org'), '{"available": 124, "overage": 0, "held": 0, "limit": 100, "flag": true}'::jsonb, 'an expired hold gives its debt back');
-- A capture after the debt was repaid: the released rest goes to the repaying grant.
select public.reserve_credits(:'gus_org', :'gus', 'ov_a', 'h-4', 13) as ignored \gset
select public.grant_credits(:'gus_org', 10, 'purchase', 'gus-d', p_priority => 40) ->> 'grant_id' as gd \gset
select is(tests.grant_state(:'gd'), '{"remaining": 4, "overage_repaid": 6}'::jsonb, 'gus-d repaid h-4''s 6 of debt');
select public.capture_credits(:'gus_org', 'h-4', 12) as ignored \gset
select is(jsonb_build_object('gc', tests.grant_state(:'gc'), 'gd', tests.grant_state(:'gd')),
  '{"gc": {"remaining": 4, "overage_repaid": 0}, "gd": {"remaining": 10, "overage_repaid": 0}}'::jsonb,
  'capturing 120 of 130: the debt piece (6) back to gus-d, then 4 back to gus-c');
select is(tests.books(:'gus_org'), '{"available": 14, "overage": 0, "held": 0, "limit": 100, "flag": true}'::jsonb, 'gus: 14 left, no debt');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent after holds, captures, releases, expiries and refunds');

-- Revocations into overage ----------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.set_overage_limit(:'hal_org', 50) as ignored \gset
select public.grant_credits(:'hal_org', 10, 'promotion', 'hal-b', p_priority => 50, p_operations => array['ov_b']) ->> 'grant_id' as hb \gset
select public.grant_credits(:'hal_org', 20, 'purchase', 'hal-u') ->> 'grant_id' as hu \gset
select public.revoke_credits(:'hal_org', 15, 'fraud', 'hal-case-1', :'hb') as hr1 \gset
select is(jsonb_build_object('revoked', :'hr1'::jsonb -> 'revoked', 'shortfall', :'hr1'::jsonb -> 'shortfall', 'balance_after', :'hr1'::jsonb -> 'balance_after'),
  '{"revoked": 10, "shortfall": 5, "balance_after": 20}'::jsonb, 'a revocation naming a grant: that grant only, no debt');
select is((select overage from public.credit_revocations where org_id = :'hal_org' and external_ref = 'hal-case-1'), 0::bigint, 'its overage: 0');
select public.revoke_credits(:'hal_org', 100, 'chargeback', 'hal-case-2') as hr2 \gset
select is(jsonb_build_object('revoked', :'hr2'::jsonb -> 'revoked', 'shortfall', :'hr2'::jsonb -> 'shortfall', 'balance_after', :'hr2'::jsonb -> 'balance_after'),
  '{"revoked": 70, "shortfall": 30, "balance_after": -50}'::jsonb, 'without a grant: 20 from the grants, then 50 of debt (the room), 30 short');
select is((select overage from public.credit_revocations where org_id = :'hal_org' and external_ref = 'hal-case-2'), 50::bigint, 'credit_revocations.overage: 50');
select is(tests.books(:'hal_org'), '{"available": -50, "overage": 50, "held": 0, "limit": 50, "flag": false}'::jsonb, 'the revocation took the org to its limit: flag false');
select is(public.revoke_credits(:'hal_org', 100, 'chargeback', 'hal-case-2'), :'hr2'::jsonb || '{"replayed": true}', 'a replay answers the first revocation');
select is(tests.books(:'hal_org') ->> 'overage', '50', 'and takes nothing more');
select public.grant_credits(:'hal_org', 60, 'purchase', 'hal-2') ->> 'grant_id' as h2 \gset
select is(tests.grant_state(:'h2'), '{"remaining": 10, "overage_repaid": 50}'::jsonb, 'a grant repays a revocation''s debt');
select is(tests.books(:'hal_org'), '{"available": 10, "overage": 0, "held": 0, "limit": 50, "flag": true}'::jsonb, 'hal: 10, no debt');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent after revocations into overage');

-- The flag when the limit is lowered below the debt, with scoped grants ----------------------------------

select tests.authenticate_as_service_role();
select public.set_overage_limit(:'ivy_org', 100) as ignored \gset
select tests.authenticate_as(:'ivy');
select public.consume_credits('ov_b', 'i-1', 80) as ignored \gset
select tests.authenticate_as_service_role();
select is(public.set_overage_limit(:'ivy_org', 50),
  jsonb_build_object('org_id', :'ivy_org'::uuid, 'overage_limit', 50, 'overage', 80, 'available', -80, 'has_usage_credits', false),
  'the limit may be set below the debt: the debt stays, flag false');
select tests.authenticate_as(:'ivy');
select is(tests.error_of($$select public.consume_credits('ov_b', 'i-2', 1)$$) -> 'detail',
  '{"required": 1, "available": -80, "operation": "ov_b", "quantity": 1, "overage": 80, "overage_limit": 50}'::jsonb, 'no new debt while the debt is above the limit');
select tests.authenticate_as_service_role();
select public.grant_credits(:'ivy_org', 40, 'promotion', 'ivy-a', p_operations => array['ov_a']) ->> 'grant_id' as ia \gset
select is(tests.books(:'ivy_org'), '{"available": -40, "overage": 80, "held": 0, "limit": 50, "flag": true}'::jsonb,
  'a scoped grant of 40: ov_a may spend 40 - 80 + 50 = 10, flag true');
select tests.authenticate_as(:'ivy');
select is(tests.error_of($$select public.consume_credits('ov_a', 'i-3', 2)$$) -> 'detail',
  '{"required": 20, "available": -40, "operation": "ov_a", "quantity": 2, "overage": 80, "overage_limit": 50}'::jsonb,
  'ov_a: 20 > -40 + 50, refused');
select public.consume_credits('ov_a', 'i-4', 1) as ic4 \gset
select ok(not (:'ic4'::jsonb ? 'overage'), 'ov_a: 10 <= -40 + 50, charged from the scoped grant, no new debt');
select is(tests.books(:'ivy_org'), '{"available": -50, "overage": 80, "held": 0, "limit": 50, "flag": false}'::jsonb,
  '30 - 80 + 50 = 0: nothing left to spend, flag false');
select tests.authenticate_as_service_role();
select is(public.set_overage_limit(:'ivy_org', 100) ->> 'has_usage_credits', 'true', 'raising the limit: flag true');
select is(tests.books(:'ivy_org') ->> 'flag', 'true', 'in orgs too');
select public.grant_credits(:'ivy_org', 30, 'purchase', 'ivy-u') ->> 'grant_id' as iu \gset
select is(jsonb_build_object('grant', tests.grant_state(:'iu'), 'scoped', tests.grant_state(:'ia')),
  '{"grant": {"remaining": 0, "overage_repaid": 30}, "scoped": {"remaining": 30, "overage_repaid": 0}}'::jsonb, 'the unscoped grant repays, the scoped one keeps its credits');
select is(public.set_overage_limit(:'ivy_org', 0),
  jsonb_build_object('org_id', :'ivy_org'::uuid, 'overage_limit', 0, 'overage', 50, 'available', -20, 'has_usage_credits', false),
  'limit 0 with debt 50 and 30 scoped credits: 30 - 50 + 0 < 0, flag false');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent with a limit below the debt');

-- Alerts and auto top-up see the debt -----------------------------------------------------------------------

select tests.authenticate_as(:'jo');
select public.set_auto_topup(true, 10, 100, 300) as ignored \gset
select tests.authenticate_as_service_role();
select public.set_overage_limit(:'jo_org', 50) as ignored \gset
select public.grant_credits(:'jo_org', 40, 'purchase', 'jo-40') as ignored \gset
select tests.authenticate_as(:'jo');
select public.consume_credits('ov_a', 'j-1', 6) as ignored \gset
select tests.clear_authentication();
select results_eq(format('select amount, status from public.credit_topup_requests where org_id = %L', :'jo_org'), $$values (100::bigint, 'pending')$$,
  'available went from 40 to -20, below the threshold: one top-up queued');
select results_eq(
  format($$select threshold, (payload ->> 'available')::bigint, (payload ->> 'overage')::bigint, (payload ->> 'overage_limit')::bigint
           from public.credit_alert_outbox where org_id = %L order by threshold$$, :'jo_org'),
  $$values (50::smallint, -20::bigint, 20::bigint, 50::bigint), (75::smallint, -20::bigint, 20::bigint, 50::bigint),
           (90::smallint, -20::bigint, 20::bigint, 50::bigint), (100::smallint, -20::bigint, 20::bigint, 50::bigint)$$,
  'alerts: every threshold crossed, the payload carries available (negative), overage and overage_limit'
);
select id as topup_id from public.credit_topup_requests where org_id = :'jo_org' \gset
select tests.authenticate_as_service_role();
select tests.last_entry(:'jo_org') as mark \gset
select public.complete_topup_request(:'topup_id', 'pi_jo_1', true) as jt \gset
select is(tests.grant_state((:'jt'::jsonb -> 'grant' ->> 'grant_id')::uuid), '{"remaining": 80, "overage_repaid": 20}'::jsonb, 'the top-up''s grant pays the debt first');
select is(tests.entries(:'jo_org', :mark),
  '[{"kind": "grant", "amount": 100, "held_delta": 0, "overage_delta": -20, "balance_after": 80, "overage_after": 0}]'::jsonb, 'one grant entry');
select is(tests.books(:'jo_org'), '{"available": 80, "overage": 0, "held": 0, "limit": 50, "flag": true}'::jsonb, 'jo: 80, no debt');
-- A charge from a positive balance straight to below zero crosses the threshold too.
select tests.authenticate_as(:'jo');
select public.consume_credits('ov_a', 'j-2', 12) as ignored \gset
select tests.clear_authentication();
select is((select count(*)::int from public.credit_topup_requests where org_id = :'jo_org' and status = 'pending'), 1, 'from 80 to -40: a new top-up queued');
select is((select (payload ->> 'available')::bigint from public.credit_alert_outbox
           where org_id = :'jo_org' and threshold = 100 and grant_id = (:'jt'::jsonb -> 'grant' ->> 'grant_id')::uuid), -40::bigint,
  'the top-up grant is the alerts'' reference: its 100 %% alert says -40');
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent after alerts and top-ups');

-- A batch on scoped credits that runs into overage ----------------------------------------------------------
-- kay and lu: limit 40; 50 credits for ov_a only (priority 50), 30 for anything (priority 100).

select tests.authenticate_as_service_role();
select public.set_overage_limit(:'kay_org', 40) as ignored \gset
select public.set_overage_limit(:'lu_org', 40) as ignored \gset
select public.grant_credits(:'kay_org', 50, 'promotion', 'kay-a', p_priority => 50, p_operations => array['ov_a']) ->> 'grant_id' as ks \gset
select public.grant_credits(:'kay_org', 30, 'purchase', 'kay-u') ->> 'grant_id' as ku \gset
select public.grant_credits(:'lu_org', 50, 'promotion', 'lu-a', p_priority => 50, p_operations => array['ov_a']) ->> 'grant_id' as ls \gset
select public.grant_credits(:'lu_org', 30, 'purchase', 'lu-u') ->> 'grant_id' as lu_u \gset
select tests.authenticate_as(:'kay');
-- Atomic, failing at item 1: ov_b needs 75, may use 30 + 40 of limit. Nothing is charged.
select tests.error_of($$select public.consume_credits_batch('[{"operation": "ov_a", "request_id": "k-0", "quantity": 3}, {"operation": "ov_b", "request_id": "k-1", "quantity": 75}]')$$) as kerr \gset
select is(:'kerr'::jsonb - 'detail', '{"sqlstate": "PT402", "message": "insufficient_credits"}'::jsonb, 'atomic batch beyond the limit: PT402 for the batch');
select ok(:'kerr'::jsonb -> 'detail' @> '{"required": 105, "item": 1, "request_id": "k-1", "operation": "ov_b", "item_required": 75, "overage": 0, "overage_limit": 40}'::jsonb,
  'its details name the item and carry the overage figures');
select is(tests.books(:'kay_org'), '{"available": 80, "overage": 0, "held": 0, "limit": 40, "flag": true}'::jsonb, 'and nothing was charged');
-- Atomic, all fitting: the last two items run into overage, exactly to the limit.
select public.consume_credits_batch('[
  {"operation": "ov_a", "request_id": "k-2", "quantity": 3},
  {"operation": "ov_b", "request_id": "k-3", "quantity": 20},
  {"operation": "ov_a", "request_id": "k-4", "quantity": 4},
  {"operation": "ov_b", "request_id": "k-5", "quantity": 30}
]') as kb \gset
select is(:'kb'::jsonb - 'results', jsonb_build_object('org_id', :'kay_org'::uuid, 'charged_total', 120, 'balance_after', -40), 'charged_total 120, balance_after -40');
select is((select jsonb_agg(r - 'org_id' - 'operation' - 'quantity' - 'status') from jsonb_array_elements(:'kb'::jsonb -> 'results') r),
  '[{"request_id": "k-2", "charged": 30, "balance_before": 80, "balance_after": 50, "replayed": false},
    {"request_id": "k-3", "charged": 20, "balance_before": 50, "balance_after": 30, "replayed": false},
    {"request_id": "k-4", "charged": 40, "balance_before": 30, "balance_after": -10, "overage": 10, "replayed": false},
    {"request_id": "k-5", "charged": 30, "balance_before": -10, "balance_after": -40, "overage": 30, "replayed": false}]'::jsonb,
  'each item''s answer, with its own overage');
select is(jsonb_build_array(tests.allocations(:'kay_org', 'k-2'), tests.allocations(:'kay_org', 'k-3'), tests.allocations(:'kay_org', 'k-4'), tests.allocations(:'kay_org', 'k-5')),
  jsonb_build_array(
    jsonb_build_array(jsonb_build_object('grant_id', :'ks'::uuid, 'amount', 30)),
    jsonb_build_array(jsonb_build_object('grant_id', :'ku'::uuid, 'amount', 20)),
    jsonb_build_array(jsonb_build_object('grant_id', :'ks'::uuid, 'amount', 20), jsonb_build_object('grant_id', :'ku'::uuid, 'amount', 10), jsonb_build_object('grant_id', null, 'amount', 10)),
    jsonb_build_array(jsonb_build_object('grant_id', null, 'amount', 30))),
  'allocations: scoped grant for ov_a only, then the unscoped one, then debt');
select is(tests.books(:'kay_org'), '{"available": -40, "overage": 40, "held": 0, "limit": 40, "flag": false}'::jsonb, 'kay at the limit');
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "ov_b", "request_id": "k-6"}]')$$) ->> 'message', 'insufficient_credits',
  'not one more credit');
select is((public.consume_credits_batch('[{"operation": "ov_b", "request_id": "k-5", "quantity": 30}]') -> 'results' -> 0 ->> 'replayed')::boolean, true,
  'a replayed item at the limit is still a replay');
-- Per item: the items beyond the limit fail on their own, with the figures at their turn.
select tests.authenticate_as(:'lu');
select public.consume_credits_batch('[
  {"operation": "ov_a", "request_id": "l-0", "quantity": 3},
  {"operation": "ov_b", "request_id": "l-1", "quantity": 20},
  {"operation": "ov_a", "request_id": "l-2", "quantity": 4},
  {"operation": "ov_b", "request_id": "l-3", "quantity": 31},
  {"operation": "ov_b", "request_id": "l-4", "quantity": 30},
  {"operation": "ov_a", "request_id": "l-5", "quantity": 1}
]', p_atomic => false) as lb \gset
select is(:'lb'::jsonb - 'results', jsonb_build_object('org_id', :'lu_org'::uuid, 'charged_total', 120, 'balance_after', -40), 'per item: 120 charged, -40');
select is(jsonb_build_array(:'lb'::jsonb -> 'results' -> 3, :'lb'::jsonb -> 'results' -> 5),
  '[{"request_id": "l-3", "operation": "ov_b", "error": "insufficient_credits", "sqlstate": "PT402", "details": {"required": 31, "available": -10, "operation": "ov_b", "quantity": 31, "overage": 10, "overage_limit": 40}},
    {"request_id": "l-5", "operation": "ov_a", "error": "insufficient_credits", "sqlstate": "PT402", "details": {"required": 10, "available": -40, "operation": "ov_a", "quantity": 1, "overage": 40, "overage_limit": 40}}]'::jsonb,
  'the items beyond the limit: their details at their turn');
select is((:'lb'::jsonb -> 'results' -> 4 ->> 'overage')::bigint, 30::bigint, 'the item after a failed one still ran into overage, up to the limit');
select is(tests.books(:'lu_org'), '{"available": -40, "overage": 40, "held": 0, "limit": 40, "flag": false}'::jsonb, 'lu at the limit');
select tests.clear_authentication();
select is((select count(*)::int from public.credit_requests where org_id = :'lu_org'), 4, 'four requests recorded');
select is(public.reconcile_credits(), 0, 'reconcile_credits: consistent after batches into overage');

-- reconcile_credits catches a broken debt --------------------------------------------------------------------

update public.credit_balances set overage = overage + 1 where org_id = :'lu_org';
select ok(public.reconcile_credits() > 0, 'a debt out of line is a discrepancy');
select ok(
  array['available_vs_grants', 'overage_vs_ledger', 'overage_vs_allocations'] <@
    (select array_agg(check_name) from public.credit_reconciliation_issues
     where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id = :'lu_org'),
  'named available_vs_grants, overage_vs_ledger and overage_vs_allocations');
update public.credit_balances set overage = overage - 1 where org_id = :'lu_org';
update public.credit_grants set overage_repaid = overage_repaid + 1, remaining = remaining - 1 where id = :'h2';
select public.reconcile_credits() as ignored \gset
select ok(
  array['overage_vs_allocations'] <@
    (select array_agg(check_name) from public.credit_reconciliation_issues
     where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id = :'hal_org'),
  'a grant claiming a repayment that never happened: overage_vs_allocations');

select * from finish();
rollback;
