-- Scoped credits: grant_credits(..., p_operations) makes a grant spendable only on some
-- operations (null: any). Validation and normalisation of the operation set, idempotency,
-- burn-down that skips grants not covering the operation (order among the rest unchanged),
-- insufficient_credits per operation, get_credit_balance's scopes, holds, captures, releases and
-- refunds giving credits back to the grants they came from, workflows, revocations (any scope),
-- pending / scheduled / onboarding grants, the flag, and reconcile_credits() after each scenario.
-- Time cannot pass inside a test transaction (now() is fixed, so created_at ties): grants whose
-- relative order matters differ by priority or expiry.
begin;
\ir helpers/setup.psql
select plan(89);

select tests.create_user('ann@example.test') as ann \gset
select tests.create_user('bo@example.test') as bo \gset
select tests.create_user('cy@example.test') as cy \gset
select tests.create_user('di@example.test') as di \gset
select tests.create_user('ed@example.test') as ed \gset
select tests.personal_org(:'ann') as ann_org \gset
select tests.personal_org(:'bo') as bo_org \gset
select tests.personal_org(:'cy') as cy_org \gset
select tests.personal_org(:'di') as di_org \gset
select tests.personal_org(:'ed') as ed_org \gset
insert into public.credit_prices (operation, credits) values ('sc_img', 10), ('sc_txt', 1), ('sc_vid', 5), ('sc_other', 2);
-- 101 more operations, all priced: a set of 101 names is refused for its size, not for a name.
insert into public.credit_prices (operation, credits)
select 'sc_many_' || lpad(i::text, 3, '0'), 1 from generate_series(1, 101) i;

-- Ann's books in one row, readable whatever role the test acts as.
create temporary view ann_books as
  select
    (select count(*)::int from public.credit_grants where org_id = :'ann_org') as grants,
    (select available from public.credit_balances where org_id = :'ann_org') as available,
    (select count(*)::int from public.credit_ledger where org_id = :'ann_org') as ledger_entries,
    (select count(*)::int from public.credit_requests where org_id = :'ann_org') as requests;
grant select on ann_books to authenticated, service_role;

-- The signature -----------------------------------------------------------------------------------

select is((select count(*)::int from pg_catalog.pg_proc where proname = 'grant_credits' and pronamespace = 'public'::regnamespace), 1,
  'one grant_credits');
select isnt(to_regprocedure('public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz, text[])'), null,
  'grant_credits takes p_operations text[] last');
select col_type_is('public', 'credit_grants', 'operations', 'text[]', 'credit_grants.operations is text[]');
select ok(not has_function_privilege('authenticated', 'public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz, text[])', 'execute'),
  'users still cannot grant credits');

select tests.authenticate_as_service_role();
select public.grant_credits(:'di_org', 5, 'purchase', 'di-positional', null, '{}', 100, false, null) as d1 \gset
select is(jsonb_build_object('status', :'d1'::jsonb -> 'status', 'operations', :'d1'::jsonb -> 'operations'), '{"status": "active", "operations": null}'::jsonb,
  'a nine-argument positional call still works and makes an unscoped grant (operations null in the answer)');
select is((select operations from public.credit_grants where id = (:'d1'::jsonb ->> 'grant_id')::uuid), null::text[], 'stored operations: null');

-- Validation: every refusal, and that a refused call writes nothing ---------------------------------

select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-1', p_operations => '{}'::text[])$$, :'ann_org'),
  '22023', 'invalid_operations', 'an empty set is invalid_operations');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-2', p_operations => array[null]::text[])$$, :'ann_org'),
  '22023', 'invalid_operations', 'a null name is invalid_operations');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-3', p_operations => array['sc_img', null])$$, :'ann_org'),
  '22023', 'invalid_operations', 'a null among names is invalid_operations');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-4', p_operations => array['Sc Img'])$$, :'ann_org'),
  '22023', 'invalid_operations', 'a name not in the operation format is invalid_operations');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-5', p_operations => array['sc_img', ''])$$, :'ann_org'),
  '22023', 'invalid_operations', 'an empty name is invalid_operations');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-6', p_operations => array[%L])$$, :'ann_org', 'a' || repeat('b', 64)),
  '22023', 'invalid_operations', 'a name longer than an operation can be is invalid_operations');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-7', p_operations => (select array_agg(p.operation) from public.credit_prices p where p.operation like 'sc\_many\_%%'))$$, :'ann_org'),
  '22023', 'invalid_operations', 'more than 100 names (all priced) is invalid_operations');
select is(tests.error_of(format($$select public.grant_credits(%L, 10, 'promotion', 'v-8', p_operations => array['sc_img', 'sc_nope_b', 'sc_nope_a'])$$, :'ann_org')) - 'detail',
  '{"sqlstate": "PT404", "message": "unknown_operation"}'::jsonb, 'a name without a price is unknown_operation (PT404)');
select is((select jsonb_agg(x order by x) from jsonb_array_elements_text(
    tests.error_of(format($$select public.grant_credits(%L, 10, 'promotion', 'v-8', p_operations => array['sc_img', 'sc_nope_b', 'sc_nope_a'])$$, :'ann_org')) -> 'detail' -> 'operations') x),
  '["sc_nope_a", "sc_nope_b"]'::jsonb, 'unknown_operation details name the unknown operations, and only them');
select throws_ok(format($$select public.grant_credits(%L, 10, 'purchase', 'v-9', p_pending => true, p_operations => '{}'::text[])$$, :'ann_org'),
  '22023', 'invalid_operations', 'a pending grant''s set is validated too');
select throws_ok(format($$select public.grant_credits(%L, 10, 'promotion', 'v-10', p_effective_at => now() + interval '1 day', p_operations => array['sc_nope'])$$, :'ann_org'),
  'PT404', 'unknown_operation', 'a scheduled grant''s set is validated too');
select results_eq('select grants, available, ledger_entries from ann_books', $$values (0, 0::bigint, 0)$$,
  'refused grants wrote no grant, no credit, no ledger entry');
select lives_ok(format($$select public.grant_credits(%L, 1, 'promotion', 'di-100', p_operations => (select array_agg(p.operation) from public.credit_prices p where p.operation between 'sc_many_001' and 'sc_many_100'))$$, :'di_org'),
  '100 names is allowed');
select is((select cardinality(operations) from public.credit_grants where org_id = :'di_org' and external_ref = 'di-100'), 100, 'all 100 are stored');

-- Ann's grants: normalisation and the answer ------------------------------------------------------

select public.grant_credits(:'ann_org', 100, 'purchase', 'buy-1') as g_u1 \gset
select public.grant_credits(:'ann_org', 30, 'promotion', 'promo-img', p_priority => 50, p_operations => array['sc_img', 'sc_img']) as g_img \gset
select public.grant_credits(:'ann_org', 20, 'promotion', 'promo-tv', now() + interval '10 days', p_priority => 50, p_operations => array['sc_vid', 'sc_txt']) as g_tv \gset
select public.grant_credits(:'ann_org', 40, 'promotion', 'promo-img2', now() + interval '5 days', p_operations => array['sc_img']) as g_img2 \gset
select is(:'g_u1'::jsonb -> 'operations', 'null'::jsonb, 'an unscoped grant answers operations null');
select is(:'g_img'::jsonb -> 'operations', '["sc_img"]'::jsonb, 'a repeated name is stored once');
select is(:'g_tv'::jsonb -> 'operations', '["sc_txt", "sc_vid"]'::jsonb, 'names are sorted in the answer');
select results_eq(
  format('select operations from public.credit_grants where id in (%L, %L, %L) order by amount',
    :'g_tv'::jsonb ->> 'grant_id', :'g_img'::jsonb ->> 'grant_id', :'g_img2'::jsonb ->> 'grant_id'),
  $$values ('{sc_txt,sc_vid}'::text[]), ('{sc_img}'::text[]), ('{sc_img}'::text[])$$,
  'stored sorted and de-duplicated'
);
select is((select available from public.credit_balances where org_id = :'ann_org'), 190::bigint, 'every grant is in available, scoped or not');
select :'g_u1'::jsonb ->> 'grant_id' as u1, :'g_img'::jsonb ->> 'grant_id' as img, :'g_tv'::jsonb ->> 'grant_id' as tv,
       :'g_img2'::jsonb ->> 'grant_id' as img2 \gset

-- Replays: the same set (in any order, with repeats) replays; another set conflicts.
select is((public.grant_credits(:'ann_org', 20, 'promotion', 'promo-tv', now() + interval '10 days', p_priority => 50, p_operations => array['sc_txt', 'sc_vid', 'sc_txt'])
  ->> 'replayed')::boolean, true, 'the same set in another order is a replay');
select is(public.grant_credits(:'ann_org', 20, 'promotion', 'promo-tv', p_priority => 50, p_operations => array['sc_vid', 'sc_txt']) -> 'operations',
  '["sc_txt", "sc_vid"]'::jsonb, 'a replay answers the stored set');
select is(tests.error_of(format($$select public.grant_credits(%L, 30, 'promotion', 'promo-img', p_priority => 50, p_operations => array['sc_vid'])$$, :'ann_org')) - 'detail',
  '{"sqlstate": "PT409", "message": "idempotency_conflict"}'::jsonb, 'a replay with another set is idempotency_conflict');
select throws_ok(format($$select public.grant_credits(%L, 30, 'promotion', 'promo-img', p_priority => 50)$$, :'ann_org'),
  'PT409', 'idempotency_conflict', 'a replay without the set conflicts with a scoped grant');
select throws_ok(format($$select public.grant_credits(%L, 100, 'purchase', 'buy-1', p_operations => array['sc_img'])$$, :'ann_org'),
  'PT409', 'idempotency_conflict', 'a replay with a set conflicts with an unscoped grant');
select throws_ok(format($$select public.grant_credits(%L, 30, 'promotion', 'promo-img', p_priority => 50, p_operations => array['sc_img', 'sc_txt'])$$, :'ann_org'),
  'PT409', 'idempotency_conflict', 'a superset is another set');
select results_eq('select grants, available, ledger_entries from ann_books', $$values (4, 190::bigint, 4)$$,
  'replays and conflicts added nothing');

-- get_credit_balance: scopes, overage figures ---------------------------------------------------------

select tests.authenticate_as(:'ann');
select public.get_credit_balance() as b0 \gset
select is((:'b0'::jsonb ->> 'available')::bigint, 190::bigint, 'get_credit_balance: the total');
select is(:'b0'::jsonb -> 'scopes',
  '[{"operations": null, "available": 100}, {"operations": ["sc_img"], "available": 70}, {"operations": ["sc_txt", "sc_vid"], "available": 20}]'::jsonb,
  'get_credit_balance: one scope per operation set, the unscoped first, then by operations');
select is(jsonb_build_object('overage', :'b0'::jsonb -> 'overage', 'overage_limit', :'b0'::jsonb -> 'overage_limit'), '{"overage": 0, "overage_limit": 0}'::jsonb,
  'get_credit_balance: overage 0, limit 0 by default');

-- Burn-down: covering grants only, in the usual order -------------------------------------------------
-- Overall order: tv (50, 10 days), img (50, no expiry), img2 (100, 5 days), u1 (100, no expiry).

select public.consume_credits('sc_img', 'c-1', 2) as c1 \gset
select tests.clear_authentication();
select is((select allocations from public.credit_requests where org_id = :'ann_org' and request_id = 'c-1'),
  jsonb_build_array(jsonb_build_object('grant_id', :'img'::uuid, 'amount', 20)),
  'sc_img skips the first grant in burn order (tv: not covering) and takes img');
select tests.authenticate_as(:'ann');
select public.consume_credits('sc_img', 'c-2', 3) as c2 \gset
select is((:'c2'::jsonb ->> 'balance_after')::bigint, 140::bigint, 'the charge answers the total balance');
select ok(not (:'c2'::jsonb ? 'overage'), 'no overage in the answer of a charge covered by grants');
select tests.clear_authentication();
select is((select allocations from public.credit_requests where org_id = :'ann_org' and request_id = 'c-2'),
  jsonb_build_array(jsonb_build_object('grant_id', :'img'::uuid, 'amount', 10), jsonb_build_object('grant_id', :'img2'::uuid, 'amount', 20)),
  'then the next covering grant (img2 before u1: same priority, sooner expiry)');

-- insufficient_credits: what this operation may use --------------------------------------------------
-- Left: img 0, img2 20, tv 20, u1 100 (140). sc_img may use 120, sc_vid 120, sc_txt 120, sc_other 100.
select tests.authenticate_as(:'ann');
select is(tests.error_of($$select public.consume_credits('sc_img', 'x-1', 13)$$),
  '{"sqlstate": "PT402", "message": "insufficient_credits", "detail": {"required": 130, "available": 120, "operation": "sc_img", "quantity": 13}}'::jsonb,
  'sc_img: available counts img2 and u1, not tv');
select is(tests.error_of($$select public.consume_credits('sc_other', 'x-2', 51)$$) -> 'detail',
  '{"required": 102, "available": 100, "operation": "sc_other", "quantity": 51}'::jsonb,
  'sc_other: only the unscoped grant');
select is(tests.error_of($$select public.consume_credits('sc_vid', 'x-3', 25)$$) -> 'detail',
  '{"required": 125, "available": 120, "operation": "sc_vid", "quantity": 25}'::jsonb,
  'sc_vid: tv and u1, not the sc_img grants');
select tests.authenticate_as_service_role();
select is(tests.error_of(format($$select public.reserve_credits(%L, %L, 'sc_img', 'x-5', 13)$$, :'ann_org', :'ann')) -> 'detail',
  '{"required": 130, "available": 120, "operation": "sc_img", "quantity": 13}'::jsonb,
  'reserve_credits: the same details');
select tests.authenticate_as(:'ann');
select is(public.consume_credits_batch('[{"operation": "sc_other", "request_id": "x-7", "quantity": 51}, {"operation": "sc_txt", "request_id": "x-8", "quantity": 121}]', p_atomic => false) -> 'results',
  '[{"request_id": "x-7", "operation": "sc_other", "error": "insufficient_credits", "sqlstate": "PT402", "details": {"required": 102, "available": 100, "operation": "sc_other", "quantity": 51}},
    {"request_id": "x-8", "operation": "sc_txt", "error": "insufficient_credits", "sqlstate": "PT402", "details": {"required": 121, "available": 120, "operation": "sc_txt", "quantity": 121}}]'::jsonb,
  'per-item batch: each item''s details say what its operation may use');
select tests.clear_authentication();
select results_eq(
  format('select id::text, remaining from public.credit_grants where org_id = %L order by priority, expires_at, amount', :'ann_org'),
  format($$values (%L, 20::bigint), (%L, 0::bigint), (%L, 20::bigint), (%L, 100::bigint)$$, :'tv', :'img', :'img2', :'u1'),
  'refused charges took nothing'
);
select is((select count(*)::int from public.credit_requests where org_id = :'ann_org' and request_id like 'x-%'), 0, 'and recorded no request');
-- Exactly what the operation may use is enough: di's unscoped 5, not its sc_many grant.
select tests.authenticate_as(:'di');
select is(tests.error_of($$select public.consume_credits('sc_txt', 'di-1', 6)$$) -> 'detail' ->> 'available', '5', 'di: sc_txt may use 5');
select is((public.consume_credits('sc_txt', 'di-1', 5) ->> 'balance_after')::bigint, 1::bigint, 'and 5 is enough: the sc_many grant is left');
select tests.clear_authentication();

select tests.authenticate_as(:'ann');
select public.consume_credits('sc_txt', 'c-3', 25) as c3 \gset
select tests.clear_authentication();
select is((select allocations from public.credit_requests where org_id = :'ann_org' and request_id = 'c-3'),
  jsonb_build_array(jsonb_build_object('grant_id', :'tv'::uuid, 'amount', 20), jsonb_build_object('grant_id', :'u1'::uuid, 'amount', 5)),
  'sc_txt takes tv, then skips img2 (sc_img only) for u1');
select tests.authenticate_as(:'ann');
select is((public.consume_credits('sc_txt', 'c-3', 25) ->> 'replayed')::boolean, true, 'a replay of a scoped charge replays');
select is((select count(*)::int from public.credit_ledger where org_id = :'ann_org' and request_id = 'c-3'), 1, 'and charges once');
-- Left: tv 0, img2 20, u1 95 (115).
select tests.authenticate_as(:'ann');
select is(jsonb_path_query_array(public.get_credit_balance() -> 'scopes', '$[*] ? (@.available != 0)'),
  '[{"operations": null, "available": 95}, {"operations": ["sc_img"], "available": 20}]'::jsonb,
  'the scopes follow the burn-down');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: no discrepancy after scoped charges');

-- Holds, captures, releases, refunds: back to the grants the credits came from ----------------------

select tests.authenticate_as_service_role();
select public.reserve_credits(:'ann_org', :'ann', 'sc_img', 'h-1', 3) as h1 \gset
select is((select allocations from public.credit_requests where org_id = :'ann_org' and request_id = 'h-1'),
  jsonb_build_array(jsonb_build_object('grant_id', :'img2'::uuid, 'amount', 20), jsonb_build_object('grant_id', :'u1'::uuid, 'amount', 10)),
  'a hold burns covering grants in order');
select public.capture_credits(:'ann_org', 'h-1', 1) as h1c \gset
select results_eq(
  format('select id::text, remaining from public.credit_grants where id in (%L, %L) order by priority, expires_at', :'img2', :'u1'),
  format($$values (%L, 10::bigint), (%L, 95::bigint)$$, :'img2', :'u1'),
  'a partial capture gives the rest back newest first: 10 to u1, then 10 to img2'
);
select is((select allocations from public.credit_requests where org_id = :'ann_org' and request_id = 'h-1'),
  jsonb_build_array(jsonb_build_object('grant_id', :'img2'::uuid, 'amount', 10)), 'what stays charged is what burned first');
select public.reserve_credits(:'ann_org', :'ann', 'sc_txt', 'h-2', 30) as h2 \gset
select is((select allocations from public.credit_requests where org_id = :'ann_org' and request_id = 'h-2'),
  jsonb_build_array(jsonb_build_object('grant_id', :'u1'::uuid, 'amount', 30)), 'a sc_txt hold skips img2');
select public.release_credits(:'ann_org', 'h-2') as h2r \gset
select is((select remaining from public.credit_grants where id = :'u1'), 95::bigint, 'a release gives it back to u1');
select public.refund_credits(:'ann_org', 'c-3', 'backend failed') as c3r \gset
select results_eq(
  format('select id::text, remaining from public.credit_grants where id in (%L, %L) order by priority', :'tv', :'u1'),
  format($$values (%L, 20::bigint), (%L, 100::bigint)$$, :'tv', :'u1'),
  'a refund gives 20 back to tv (scoped) and 5 to u1'
);
select is((select available from public.credit_balances where org_id = :'ann_org'), 130::bigint, 'available: tv 20 + img2 10 + u1 100');
select tests.authenticate_as(:'ann');
select is(jsonb_path_query_array(public.get_credit_balance() -> 'scopes', '$[*] ? (@.available != 0)'),
  '[{"operations": null, "available": 100}, {"operations": ["sc_img"], "available": 10}, {"operations": ["sc_txt", "sc_vid"], "available": 20}]'::jsonb,
  'the refunded credits are back in their scope');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: no discrepancy after holds, captures, releases and refunds');

-- A refund of credits whose scoped grant expired meanwhile comes back as a refund grant (the
-- existing rule); it stays scoped to what the credits could buy, never wider.
select tests.authenticate_as_service_role();
select public.grant_credits(:'ed_org', 30, 'promotion', 'ed-img', now() + interval '1 day', p_operations => array['sc_img']) as ignored \gset
select tests.authenticate_as(:'ed');
select public.consume_credits('sc_img', 'ed-1', 2) as ignored \gset
select tests.clear_authentication();
update public.credit_grants set expires_at = now() - interval '1 second' where org_id = :'ed_org' and external_ref = 'ed-img';
select tests.authenticate_as_service_role();
select public.expire_credit_grants() as ignored \gset
select public.refund_credits(:'ed_org', 'ed-1', 'backend failed') as ignored \gset
select results_eq(format($$select source, amount, operations from public.credit_grants where org_id = %L and source = 'refund'$$, :'ed_org'),
  $$values ('refund', 20::bigint, '{sc_img}'::text[])$$, 'the refund grant of expired scoped credits keeps their scope');
select tests.authenticate_as(:'ed');
select is(tests.error_of($$select public.consume_credits('sc_txt', 'ed-2', 1)$$) ->> 'message', 'insufficient_credits',
  'so the refunded image credits do not pay for text');
select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: no discrepancy after a regranted refund');

-- Scopes: grouping, order, what is left out ---------------------------------------------------------

select tests.authenticate_as_service_role();
select public.grant_credits(:'cy_org', 5, 'purchase', 'cy-any');
select public.grant_credits(:'cy_org', 3, 'promotion', 'cy-txt', p_operations => array['sc_txt']);
select public.grant_credits(:'cy_org', 4, 'promotion', 'cy-img-a', p_operations => array['sc_img']);
select public.grant_credits(:'cy_org', 6, 'promotion', 'cy-img-b', now() + interval '3 days', p_operations => array['sc_img']);
select public.grant_credits(:'cy_org', 8, 'promotion', 'cy-tv', p_operations => array['sc_vid', 'sc_txt']);
select public.grant_credits(:'cy_org', 100, 'purchase', 'cy-pending', p_pending => true, p_operations => array['sc_img']) as cy_pending \gset
select public.grant_credits(:'cy_org', 100, 'promotion', 'cy-later', p_effective_at => now() + interval '1 day', p_operations => array['sc_txt']) as cy_later \gset
select public.grant_credits(:'cy_org', 9, 'promotion', 'cy-vid', now() + interval '1 day', p_operations => array['sc_vid']) ->> 'grant_id' as cy_vid \gset
select is(jsonb_build_object('status', :'cy_pending'::jsonb -> 'status', 'operations', :'cy_pending'::jsonb -> 'operations'),
  '{"status": "pending", "operations": ["sc_img"]}'::jsonb, 'a pending grant may be scoped');
select is(jsonb_build_object('status', :'cy_later'::jsonb -> 'status', 'operations', :'cy_later'::jsonb -> 'operations'),
  '{"status": "scheduled", "operations": ["sc_txt"]}'::jsonb, 'a scheduled grant may be scoped');
-- cy-vid's expiry passes; no job has settled it yet.
select tests.clear_authentication();
update public.credit_grants set expires_at = now() - interval '1 second' where id = :'cy_vid';
select tests.authenticate_as(:'cy');
select public.get_credit_balance() as cyb \gset
select is(jsonb_path_query_array(:'cyb'::jsonb -> 'scopes', '$[*] ? (@.available != 0)'),
  '[{"operations": null, "available": 5}, {"operations": ["sc_img"], "available": 10}, {"operations": ["sc_txt"], "available": 3}, {"operations": ["sc_txt", "sc_vid"], "available": 8}]'::jsonb,
  'scopes: grants with the same set summed; pending, scheduled and past-expiry grants left out; unscoped first, then by operations');
select is((:'cyb'::jsonb ->> 'available')::bigint, 26::bigint, 'available = the scopes'' sum (no overage)');

-- Pending and scheduled activation keep the set.
select tests.authenticate_as_service_role();
select is(public.activate_credit_grant(:'cy_org', 'purchase', 'cy-pending') -> 'operations', '["sc_img"]'::jsonb, 'activation keeps the set');
select tests.clear_authentication();
update public.credit_grants set effective_at = now() - interval '1 second' where org_id = :'cy_org' and external_ref = 'cy-later';
select tests.authenticate_as_service_role();
select public.activate_scheduled_grants() as ignored \gset
select tests.authenticate_as(:'cy');
select is(tests.error_of($$select public.consume_credits('sc_other', 'cy-1', 3)$$) -> 'detail' ->> 'available', '5',
  'sc_other may use the unscoped grant only, not the activated scoped ones');
select is((public.consume_credits('sc_img', 'cy-2', 11) ->> 'charged')::bigint, 110::bigint, 'sc_img may use the activated pending grant');
select tests.clear_authentication();
select is((select remaining from public.credit_grants where org_id = :'cy_org' and external_ref = 'cy-later'), 100::bigint,
  'the started sc_txt grant was not touched by sc_img');
select is((select status from public.credit_grants where id = :'cy_vid'), 'expired', 'the charge settled the past-expiry grant first');

-- Onboarding grants are unscoped.
select tests.authenticate_as_service_role();
select is(public.grant_onboarding_credits(:'cy', 7) -> 'operations', 'null'::jsonb, 'an onboarding grant is unscoped');

-- Workflows charge through the same rule.
select public.grant_credits(:'bo_org', 30, 'promotion', 'bo-img', p_priority => 50, p_operations => array['sc_img']) ->> 'grant_id' as bo_img \gset
select tests.authenticate_as(:'bo');
select is(tests.error_of($$select public.create_workflow('w1', p_request_id => 'wf-1')$$),
  '{"sqlstate": "PT402", "message": "insufficient_credits", "detail": {"required": 5, "available": 0, "operation": "workflow_create", "quantity": 1}}'::jsonb,
  'a workflow cannot spend credits scoped to another operation');
select tests.authenticate_as_service_role();
select public.grant_credits(:'bo_org', 20, 'purchase', 'bo-any') ->> 'grant_id' as bo_any \gset
select tests.authenticate_as(:'bo');
select lives_ok($$select public.create_workflow('w1', p_request_id => 'wf-1')$$, 'with an unscoped grant it can');
select tests.clear_authentication();
select is((select allocations from public.credit_requests where org_id = :'bo_org' and request_id = 'wf-1'),
  jsonb_build_array(jsonb_build_object('grant_id', :'bo_any'::uuid, 'amount', 5)), 'the workflow charge skipped the scoped grant (priority 50) for the unscoped one');

-- revoke_credits without a grant: every grant, whatever its scope, in burn-down order --------------

select tests.authenticate_as_service_role();
select public.revoke_credits(:'bo_org', 40, 'chargeback', 'bo-case-1') as bo_r \gset
select is(:'bo_r'::jsonb -> 'allocations',
  jsonb_build_array(jsonb_build_object('grant_id', :'bo_img'::uuid, 'amount', 30), jsonb_build_object('grant_id', :'bo_any'::uuid, 'amount', 10)),
  'a revocation takes the scoped grant too, in burn-down order');
select is(jsonb_build_object('revoked', :'bo_r'::jsonb -> 'revoked', 'shortfall', :'bo_r'::jsonb -> 'shortfall'), '{"revoked": 40, "shortfall": 0}'::jsonb,
  'revoked 40, no shortfall');
select is((select available from public.credit_balances where org_id = :'bo_org'), 5::bigint, 'bo: 5 left');

-- The flag: the org can spend on something ----------------------------------------------------------

select tests.clear_authentication();
select is((select has_usage_credits from public.orgs where id = :'di_org'), true, 'di: only its scoped grant left, flag true');
select tests.authenticate_as_service_role();
select public.grant_credits(:'bo_org', 10, 'promotion', 'bo-vid', p_operations => array['sc_vid']) ->> 'grant_id' as bo_vid \gset
select tests.authenticate_as(:'bo');
select public.consume_credits('sc_other', 'bo-1', 1) as ignored \gset
select public.consume_credits('sc_txt', 'bo-2', 3) as ignored \gset
select tests.clear_authentication();
select is((select jsonb_build_object('available', b.available, 'flag', o.has_usage_credits) from public.credit_balances b join public.orgs o on o.id = b.org_id where b.org_id = :'bo_org'),
  '{"available": 10, "flag": true}'::jsonb, 'only credits scoped to sc_vid left: the org can spend on something, flag true');
select tests.authenticate_as(:'bo');
select is(tests.error_of($$select public.consume_credits('sc_other', 'bo-3', 1)$$) -> 'detail' ->> 'available', '0',
  'though not on sc_other');
select tests.clear_authentication();
-- The scoped grant expires: nothing left to spend on anything.
update public.credit_grants set expires_at = now() - interval '1 second' where id = :'bo_vid';
select tests.authenticate_as_service_role();
select public.expire_credit_grants() as ignored \gset
select tests.clear_authentication();
select is((select jsonb_build_object('available', b.available, 'flag', o.has_usage_credits) from public.credit_balances b join public.orgs o on o.id = b.org_id where b.org_id = :'bo_org'),
  '{"available": 0, "flag": false}'::jsonb, 'the last scoped grant expired: flag false');
select tests.authenticate_as_service_role();
select public.refresh_orgs_has_usage_credits() as ignored \gset
select tests.clear_authentication();
select is((select array_agg(o.has_usage_credits order by v.label) from (values (:'ann_org'::uuid, 'a'::text), (:'bo_org'::uuid, 'b'), (:'cy_org'::uuid, 'c')) v(id, label) join public.orgs o on o.id = v.id),
  array[true, false, true], 'refresh_orgs_has_usage_credits keeps the flags: ann true, bo false, cy true');
-- Spending the last scoped credits clears the flag in the charge's own transaction.
select tests.authenticate_as_service_role();
select public.grant_credits(:'bo_org', 10, 'promotion', 'bo-img-2', p_operations => array['sc_img']) as ignored \gset
select tests.clear_authentication();
select is((select has_usage_credits from public.orgs where id = :'bo_org'), true, 'a scoped grant sets the flag');
select tests.authenticate_as(:'bo');
select public.consume_credits('sc_img', 'bo-4', 1) as ignored \gset
select tests.clear_authentication();
select is((select has_usage_credits from public.orgs where id = :'bo_org'), false, 'spending the last scoped credits clears it');

select tests.clear_authentication();
select is(public.reconcile_credits(), 0, 'reconcile_credits: no discrepancy at the end');

select * from finish();
rollback;
