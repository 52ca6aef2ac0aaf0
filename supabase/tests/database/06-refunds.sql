-- refund_credits: a charge comes back exactly once, to the grants it came from; credits whose
-- grant expired meanwhile come back as a new 7-day 'refund' grant.
begin;
\ir helpers/setup.psql
select plan(36);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('carol@example.test') as carol \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'carol') as carol_org \gset
insert into public.credit_prices (operation, credits) values ('test_op', 2), ('free_op', 0);

select (public.grant_credits(:'alice_org', 50, 'purchase', 'alice-50') ->> 'grant_id') as g50 \gset
select (public.grant_credits(:'alice_org', 30, 'promotion', 'alice-30', '2030-01-01T00:00:00Z', p_priority => 50) ->> 'grant_id') as g30 \gset

create temporary view alice_state as
  select b.available, b.held,
    (select remaining from public.credit_grants where id = :'g50') as g50,
    (select remaining from public.credit_grants where id = :'g30') as g30
  from public.credit_balances b where b.org_id = :'alice_org';
grant select on alice_state to service_role;

select tests.authenticate_as(:'alice');
select public.consume_credits('test_op', 'c-1', 20);
select public.consume_credits('free_op', 'c-free');
select tests.clear_authentication();
select results_eq('select available, held, g50, g30 from alice_state', $$values (40::bigint, 0::bigint, 40::bigint, 0::bigint)$$,
  'setup: the charge burned the promotion, then the purchase');

-- A charge is refunded once ------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select public.refund_credits(:'alice_org', 'c-1', 'backend failed') as r1 \gset
select is(:'r1'::jsonb ->> 'status', 'refunded', 'refund_credits answers status refunded');
select is((:'r1'::jsonb ->> 'refunded')::bigint, 40::bigint, 'it refunds the whole charge');
select is((:'r1'::jsonb ->> 'replayed')::boolean, false, 'the first refund is not a replay');
select results_eq('select available, held, g50, g30 from alice_state', $$values (80::bigint, 0::bigint, 50::bigint, 30::bigint)$$,
  'the balance is restored and the credits are back in the same grants');
select results_eq(
  format('select kind, amount, balance_after, grant_id from public.credit_ledger where org_id = %L and request_id = %L and kind = %L', :'alice_org', 'c-1', 'refund'),
  $$values ('refund', 40::bigint, 80::bigint, null::uuid)$$,
  'one refund ledger entry'
);
select results_eq(
  format('select status, charged, refunded, refund_reason, refunded_at is not null, allocations from public.credit_requests where org_id = %L and request_id = %L', :'alice_org', 'c-1'),
  $$values ('refunded', 40::bigint, 40::bigint, 'backend failed', true, '[]'::jsonb)$$,
  'the request records the refund'
);
select is(
  (select count(*)::int from public.credit_grants where org_id = :'alice_org'), 2, 'a refund to live grants creates no grant'
);

select public.refund_credits(:'alice_org', 'c-1', 'backend failed') as r1b \gset
select is((:'r1b'::jsonb ->> 'replayed')::boolean, true, 'a second refund replays');
select is((:'r1b'::jsonb ->> 'refunded')::bigint, 40::bigint, 'the replay answers the first refund');
select results_eq('select available, held, g50, g30 from alice_state', $$values (80::bigint, 0::bigint, 50::bigint, 30::bigint)$$,
  'a replayed refund credits nothing');
select is((select count(*)::int from public.credit_ledger where org_id = :'alice_org' and kind = 'refund'), 1, 'still one refund entry');
select is(public.refund_credits(:'alice_org', 'c-1', 'another reason') ->> 'replayed', 'true', 'a refund with another reason still replays, once');
select is((select available from public.credit_balances where org_id = :'alice_org'), 80::bigint, 'and still credits nothing');

-- What cannot be refunded ----------------------------------------------------------------------------

select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-held', 1);
select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-released', 1);
select public.release_credits(:'alice_org', 'h-released');
select throws_ok(format($$select public.refund_credits(%L, 'h-held', 'why')$$, :'alice_org'), 'PT409', 'not_refundable', 'a hold still held is not refundable');
select throws_ok(format($$select public.refund_credits(%L, 'h-released', 'why')$$, :'alice_org'), 'PT409', 'not_refundable', 'a released hold is not refundable');
select throws_ok(format($$select public.refund_credits(%L, 'c-free', 'why')$$, :'alice_org'), 'PT409', 'not_refundable', 'a zero charge is not refundable');
select throws_ok(format($$select public.refund_credits(%L, 'nope', 'why')$$, :'alice_org'), 'PT404', 'unknown_request', 'an unknown request');
select throws_ok(format($$select public.refund_credits(%L, 'c-1', %s)$$, :'alice_org', r), '22023', 'invalid_reason', format('invalid_reason: %s', left(r, 20)))
from unnest(array['null', '''''', '''   ''', quote_literal(repeat('x', 501))]) r;
select results_eq(
  format($$select request_id, status from public.credit_requests where org_id = %L and request_id like 'h-%%' order by request_id$$, :'alice_org'),
  $$values ('h-held', 'held'), ('h-released', 'released')$$,
  'refused refunds changed nothing'
);

-- A captured hold is refundable (what was captured) -----------------------------------------------------

select public.reserve_credits(:'alice_org', :'alice', 'test_op', 'h-cap', 3);
select public.capture_credits(:'alice_org', 'h-cap', 2);
select (select available from public.credit_balances where org_id = :'alice_org') as before_refund \gset
select is((public.refund_credits(:'alice_org', 'h-cap', 'wrong answer') ->> 'refunded')::bigint, 4::bigint, 'a captured hold refunds what was captured');
select is((select available from public.credit_balances where org_id = :'alice_org'), :'before_refund'::bigint + 4, 'the captured credits are back');
select tests.clear_authentication();

-- The source grant expired meanwhile: a new 7-day refund grant ----------------------------------------

select (public.grant_credits(:'carol_org', 10, 'promotion', 'carol-promo', '2030-01-01T00:00:00Z') ->> 'grant_id') as promo \gset
select (public.grant_credits(:'carol_org', 5, 'purchase', 'carol-5', p_priority => 200) ->> 'grant_id') as purchase \gset
select tests.authenticate_as(:'carol');
select public.consume_credits('test_op', 'cx', 6);
select tests.clear_authentication();
select results_eq(
  format('select remaining from public.credit_grants where id in (%L, %L) order by priority', :'promo', :'purchase'),
  $$values (0::bigint), (3::bigint)$$,
  'setup: the charge took 10 from the promotion and 2 from the purchase'
);
update public.credit_grants set expires_at = now() - interval '1 minute' where id = :'promo';

select tests.authenticate_as_service_role();
select public.refund_credits(:'carol_org', 'cx', 'backend failed') as rx \gset
select is((:'rx'::jsonb ->> 'refunded')::bigint, 12::bigint, 'the whole charge is refunded');
select results_eq(
  format('select status, remaining, expired_amount from public.credit_grants where id = %L', :'promo'),
  $$values ('expired', 0::bigint, 10::bigint)$$,
  'the expired grant is not resurrected: its share is recorded as expired'
);
select is((select remaining from public.credit_grants where id = :'purchase'), 5::bigint, 'the live grant gets its share back');
select results_eq(
  format('select amount, remaining, status, priority, external_ref, expires_at from public.credit_grants where org_id = %L and source = %L', :'carol_org', 'refund'),
  $$values (10::bigint, 10::bigint, 'active', 0, 'cx', now() + interval '7 days')$$,
  'the expired share arrives as a new refund grant: priority 0, expiring in 7 days'
);
select is((select available from public.credit_balances where org_id = :'carol_org'), 15::bigint, 'the balance is whole again');
select is(
  (select grant_id from public.credit_ledger where org_id = :'carol_org' and kind = 'refund'),
  (select id from public.credit_grants where org_id = :'carol_org' and source = 'refund'),
  'the refund ledger entry names the new grant'
);
select is((public.refund_credits(:'carol_org', 'cx', 'backend failed') ->> 'replayed')::boolean, true, 'a second refund replays');
select is((select count(*)::int from public.credit_grants where org_id = :'carol_org' and source = 'refund'), 1, 'no second refund grant');
select tests.clear_authentication();

-- Who may refund ---------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok(format($$select public.refund_credits(%L, 'c-1', 'me')$$, :'alice_org'), '42501', null, 'a user cannot refund their own charges');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.refund_credits(%L, 'c-1', 'me')$$, :'alice_org'), '42501', null, 'anon cannot refund');
select tests.clear_authentication();

select * from finish();
rollback;
