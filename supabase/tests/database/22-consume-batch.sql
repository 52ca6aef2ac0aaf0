-- consume_credits_batch: grants, shape validation, atomic and per-item modes, replays (across
-- calls and inside one batch), conflicts, insufficient credits for the whole batch, and books
-- that still reconcile.
begin;
\ir helpers/setup.psql
select plan(52);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset
select tests.personal_org(:'carol') as carol_org \gset
\set team_org '00000000-0000-4000-8000-0000000005aa'
insert into public.orgs (id, name) values (:'team_org', 'Team');
insert into public.org_members (org_id, user_id, role) values (:'team_org', :'bob', 'owner'), (:'team_org', :'alice', 'member');

insert into public.credit_prices (operation, credits) values ('batch_op', 2), ('batch_free', 0);

select public.grant_credits(:'alice_org', 100, 'purchase', 'alice-100');
select public.grant_credits(:'bob_org', 10, 'purchase', 'bob-10');
select public.grant_credits(:'team_org', 50, 'purchase', 'team-50');
select public.grant_credits(:'carol_org', 20, 'purchase', 'carol-20');

-- Who may call it -------------------------------------------------------------------------------

select ok(has_function_privilege('authenticated', 'public.consume_credits_batch(jsonb, uuid, boolean)', 'execute'), 'authenticated may call it');
select ok(not has_function_privilege('anon', 'public.consume_credits_batch(jsonb, uuid, boolean)', 'execute'), 'anon may not');
select tests.authenticate_as_service_role();
select throws_ok($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "s-1"}]')$$, '42501', null,
  'service_role may not call it (a user RPC)');
select tests.authenticate_as(:'carol');
select throws_ok(format($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "x-1"}]', %L)$$, :'team_org'), '42501', 'not_a_member',
  'a non-member cannot charge another org');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'team_org'), 50::bigint, 'refused callers charged nothing');

-- Atomic mode (the default) ---------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select public.consume_credits_batch('[
  {"operation": "batch_op", "request_id": "a-1"},
  {"operation": "batch_op", "request_id": "a-2", "quantity": 3, "metadata": {"event": "upload"}},
  {"operation": "batch_free", "request_id": "a-3"}
]') as b1 \gset
select tests.clear_authentication();
select is(:'b1'::jsonb - 'results', jsonb_build_object('org_id', :'alice_org', 'charged_total', 8, 'balance_after', 92),
  'the answer: org, charged_total and balance_after');
select is(jsonb_array_length(:'b1'::jsonb -> 'results'), 3, 'one result per item');
select is((:'b1'::jsonb -> 'results' -> 1) - 'org_id',
  '{"request_id": "a-2", "operation": "batch_op", "quantity": 3, "status": "charged", "charged": 6, "balance_before": 98, "balance_after": 92, "replayed": false}'::jsonb,
  'an item''s result is what consume_credits answers, charged in array order');
select is((select available from public.credit_balances where org_id = :'alice_org'), 92::bigint, 'the balance is debited once per item');
select results_eq(
  format($$select request_id, charged, metadata, user_id from public.credit_requests where org_id = %L order by request_id$$, :'alice_org'),
  format($$values ('a-1', 2::bigint, '{}'::jsonb, %1$L::uuid), ('a-2', 6::bigint, '{"event": "upload"}'::jsonb, %1$L::uuid), ('a-3', 0::bigint, '{}'::jsonb, %1$L::uuid)$$, :'alice'),
  'each item is its own request, with its metadata and the caller'
);
select is((select count(*)::int from public.credit_ledger where org_id = :'alice_org' and kind = 'charge'), 3, 'one ledger entry per item');

-- Replays: a later batch, a single call, and the same id twice in one batch
select tests.authenticate_as(:'alice');
select public.consume_credits_batch('[
  {"operation": "batch_op", "request_id": "a-1"},
  {"operation": "batch_op", "request_id": "a-4"},
  {"operation": "batch_op", "request_id": "a-4"}
]') as b2 \gset
select tests.clear_authentication();
select is(:'b2'::jsonb ->> 'charged_total', '2', 'replayed items are not charged again');
select is(array(select (r ->> 'replayed')::boolean from jsonb_array_elements(:'b2'::jsonb -> 'results') r), array[true, false, true],
  'an item charged earlier replays; a request id twice in one batch: the second occurrence replays the first');
select is((:'b2'::jsonb -> 'results' -> 0) - 'replayed', (:'b1'::jsonb -> 'results' -> 0) - 'replayed', 'a replayed item answers its first result');
select is((select available from public.credit_balances where org_id = :'alice_org'), 90::bigint, 'only the new item was charged');
select tests.authenticate_as(:'alice');
select is((public.consume_credits('batch_op', 'a-4') ->> 'replayed')::boolean, true, 'consume_credits replays an item a batch charged (one idempotency record)');
select is((public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-4"}]') -> 'results' -> 0 ->> 'replayed')::boolean, true,
  'and a batch replays what any path charged');

-- An item's error fails the whole batch, naming the item; nothing is charged
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-5"}, {"operation": "batch_op", "request_id": "a-1", "quantity": 2}]')$$)
            - 'detail',
  '{"sqlstate": "PT409", "message": "idempotency_conflict"}'::jsonb, 'a request id reused with another quantity: idempotency_conflict for the batch');
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-5"}, {"operation": "batch_op", "request_id": "a-1", "quantity": 2}]')$$)
            -> 'detail' -> 'item',
  '1'::jsonb, 'the error names the failing item (0-based)');
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-5"}, {"operation": "batch_op", "request_id": "a-5", "quantity": 2}]')$$)
            ->> 'message',
  'idempotency_conflict', 'a request id twice in one batch with other parameters conflicts with the first occurrence');
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-5"}, {"operation": "no_such_op", "request_id": "a-6"}]')$$)
            - 'detail' || jsonb_build_object('item', tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-5"}, {"operation": "no_such_op", "request_id": "a-6"}]')$$) -> 'detail' -> 'item'),
  '{"sqlstate": "PT404", "message": "unknown_operation", "item": 1}'::jsonb, 'an unknown operation fails the batch, naming the item');
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-5", "quantity": 0}]')$$) ->> 'message',
  'invalid_quantity', 'a quantity out of range is the charge''s own invalid_quantity');

-- Insufficient credits: PT402 for the batch, with the batch's figures
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "a-7", "quantity": 20}, {"operation": "batch_op", "request_id": "a-8", "quantity": 20}, {"operation": "batch_op", "request_id": "a-9", "quantity": 10}]')$$),
  '{"sqlstate": "PT402", "message": "insufficient_credits", "detail": {"required": 100, "available": 90, "item": 2, "request_id": "a-9", "operation": "batch_op", "item_required": 20}}'::jsonb,
  'insufficient_credits for the whole batch: required up to the failing item, available before the batch, the item named');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'alice_org'), 90::bigint, 'a failed atomic batch charges nothing');
select is_empty($$select 1 from public.credit_requests where request_id in ('a-5', 'a-6', 'a-7', 'a-8', 'a-9')$$, 'and records no request');

-- A member charges a shared org
select tests.authenticate_as(:'alice');
select is(public.consume_credits_batch('[{"operation": "batch_op", "request_id": "t-1"}]', :'team_org') - 'results',
  jsonb_build_object('org_id', :'team_org', 'charged_total', 2, 'balance_after', 48), 'a member can charge a shared org');
select tests.clear_authentication();

-- Per-item mode -----------------------------------------------------------------------------------

select tests.authenticate_as(:'bob');
select public.consume_credits_batch('[
  {"operation": "batch_op", "request_id": "p-1"},
  {"operation": "batch_op", "request_id": "p-2", "quantity": 100},
  {"operation": "no_such_op", "request_id": "p-3"},
  {"operation": "batch_op", "request_id": "p-1", "quantity": 2},
  {"operation": "batch_op", "request_id": "p-4", "quantity": 0},
  {"operation": "batch_op", "request_id": "p-5", "quantity": 2},
  {"operation": "batch_op", "request_id": "p-1"}
]', p_atomic => false) as p1 \gset
select tests.clear_authentication();
select is(:'p1'::jsonb - 'results', jsonb_build_object('org_id', :'bob_org', 'charged_total', 6, 'balance_after', 4),
  'per-item mode charges the items that can be charged');
select is(array(select coalesce(r ->> 'error', r ->> 'status') from jsonb_array_elements(:'p1'::jsonb -> 'results') r),
  array['charged', 'insufficient_credits', 'unknown_operation', 'idempotency_conflict', 'invalid_quantity', 'charged', 'charged'],
  'each item answers its result or its error key, in array order');
select is(:'p1'::jsonb -> 'results' -> 1,
  '{"request_id": "p-2", "operation": "batch_op", "error": "insufficient_credits", "sqlstate": "PT402", "details": {"required": 200, "available": 8, "operation": "batch_op", "quantity": 100}}'::jsonb,
  'a failed item: request id, operation, error key, SQLSTATE and the error''s details');
select is((:'p1'::jsonb -> 'results' -> 6 ->> 'replayed')::boolean, true, 'the same id again in the batch replays the first occurrence');
select is((select available from public.credit_balances where org_id = :'bob_org'), 4::bigint, 'failed items did not undo the others');
select is(array(select request_id from public.credit_requests where org_id = :'bob_org' order by request_id), array['p-1', 'p-5'],
  'failed items recorded nothing');
select is((select count(*)::int from public.credit_ledger where org_id = :'bob_org' and kind = 'charge'), 2, 'one ledger entry per charged item');

-- Shape: checked whole, before anything is charged, in either mode ---------------------------------

select tests.authenticate_as(:'carol');
select is(tests.error_of(format($$select public.consume_credits_batch(%L::jsonb, p_atomic => %L)$$, t.items, t.atomic)),
  jsonb_build_object('sqlstate', '22023', 'message', 'invalid_items', 'detail', t.detail), t.what || ': invalid_items (22023) naming the item and field')
from (values
  ('{"operation": "batch_op", "request_id": "v-1"}', true, '{"field": "items", "max_items": 1000}'::jsonb, 'not an array'),
  ('[]', false, '{"field": "items", "count": 0, "max_items": 1000}', 'an empty array'),
  ('[{"operation": "batch_op", "request_id": "v-1"}, 7]', false, '{"item": 1, "field": "item", "max_items": 1000}', 'an item that is not an object'),
  ('[{"request_id": "v-1"}]', true, '{"item": 0, "field": "operation", "max_items": 1000}', 'an item without operation'),
  ('[{"operation": "batch_op", "request_id": 1}]', false, '{"item": 0, "field": "request_id", "max_items": 1000}', 'a request id that is not a string'),
  ('[{"operation": "batch_op", "request_id": "v-1", "quantity": "2"}]', true, '{"item": 0, "field": "quantity", "max_items": 1000}', 'a quantity given as a string'),
  ('[{"operation": "batch_op", "request_id": "v-1", "quantity": 1.5}]', false, '{"item": 0, "field": "quantity", "max_items": 1000}', 'a fractional quantity'),
  ('[{"operation": "batch_op", "request_id": "v-1", "quantity": 1e12}]', true, '{"item": 0, "field": "quantity", "max_items": 1000}', 'a quantity beyond an integer'),
  ('[{"operation": "batch_op", "request_id": "v-1", "quantity": null}]', true, '{"item": 0, "field": "quantity", "max_items": 1000}', 'a null quantity'),
  ('[{"operation": "batch_op", "request_id": "v-1", "metadata": []}]', false, '{"item": 0, "field": "metadata", "max_items": 1000}', 'metadata that is not an object'),
  ('[{"operation": "batch_op", "request_id": "v-1", "price": 0}]', true, '{"item": 0, "field": "keys", "max_items": 1000}', 'an unknown key (a client never sends a price)')
) as t(items, atomic, detail, what);
select is(tests.error_of($$select public.consume_credits_batch('[{"operation": "batch_op", "request_id": "v-1"}, {"operation": "batch_op", "request_id": "v-2", "quantity": "x"}]', p_atomic => false)$$) - 'detail',
  '{"sqlstate": "22023", "message": "invalid_items"}'::jsonb, 'per-item mode: a bad shape fails the whole call too');
select is(tests.error_of(format($$select public.consume_credits_batch(%L::jsonb)$$,
    (select jsonb_agg(jsonb_build_object('operation', 'batch_op', 'request_id', 'big-' || i)) from generate_series(1, 1001) i))) -> 'detail',
  '{"field": "items", "count": 1001, "max_items": 1000}'::jsonb, 'at most 1000 items');
select is(tests.error_of($$select public.consume_credits_batch(null)$$) ->> 'message', 'invalid_items', 'null items');
select tests.clear_authentication();
select is((select available from public.credit_balances where org_id = :'carol_org'), 20::bigint, 'a bad shape charges nothing, in either mode');

-- 1000 items in one call
select tests.authenticate_as(:'carol');
select public.consume_credits_batch(
  (select jsonb_agg(jsonb_build_object('operation', 'batch_free', 'request_id', 'k-' || i)) from generate_series(1, 999) i)
  || '[{"operation": "batch_op", "request_id": "k-1000", "quantity": 10}]'::jsonb) as k \gset
select tests.clear_authentication();
select is((jsonb_array_length(:'k'::jsonb -> 'results'), (:'k'::jsonb ->> 'charged_total')::int, (:'k'::jsonb ->> 'balance_after')::int), (1000, 20, 0),
  '1000 items in one call');
select is((select has_usage_credits from public.orgs where id = :'carol_org'), false, 'the gate flag follows the batch (carol spent everything)');

-- The books -------------------------------------------------------------------------------------

set local client_min_messages = error;
select is(public.reconcile_credits(), 0, 'reconcile_credits finds nothing wrong after batches');
select is_empty($$
  select b.org_id from public.credit_balances b
  where b.org_id in (select tests.personal_org(u) from unnest(array[$$ || quote_literal(:'alice') || $$, $$ || quote_literal(:'bob') || $$, $$ || quote_literal(:'carol') || $$]::uuid[]) u)
    and b.available <> (select coalesce(sum(l.amount), 0) from public.credit_ledger l where l.org_id = b.org_id)$$,
  'ledger sums equal balances');

select * from finish();
rollback;
