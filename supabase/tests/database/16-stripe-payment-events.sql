-- Stripe payment events in the database: who may call the entry points and read the records,
-- order-independence of checkout and charge events, dispute merging, exceptions once per event,
-- and how reconcile_credits() lists open exceptions without counting them as discrepancies.
begin;
\ir helpers/setup.psql
select plan(48);

select tests.create_user('alice@example.test') as alice \gset
select tests.personal_org(:'alice') as org \gset
set local client_min_messages = error;  -- reconcile_credits warns about open exceptions

-- Who may call and read ------------------------------------------------------------------------------

select tests.authenticate_as(:'alice');
select throws_ok(format($$select public.apply_checkout_event('evt_1', 'checkout.session.completed', 'cs_1', %L, 10, 'paid')$$, :'org'), '42501', null,
  'a user cannot apply checkout events');
select throws_ok($$select public.apply_charge_event('evt_1', 'charge.refunded', 'pi_1', 100, 100)$$, '42501', null, 'a user cannot apply charge events');
select throws_ok($$select public.record_payment_exception('evt_1', 'x', null, 'bad')$$, '42501', null, 'a user cannot record exceptions');
select throws_ok($$select public.resolve_payment_exception(1, 'done')$$, '42501', null, 'a user cannot resolve exceptions');
select throws_ok('select * from public.payment_exceptions', '42501', null, 'a user cannot read payment exceptions');
select throws_ok('select * from public.stripe_payments', '42501', null, 'a user cannot read Stripe payments');
select tests.authenticate_as_anon();
select throws_ok(format($$select public.apply_checkout_event('evt_1', 'checkout.session.completed', 'cs_1', %L, 10, 'paid')$$, :'org'), '42501', null,
  'anon cannot apply checkout events');
select throws_ok($$select public.apply_charge_event('evt_1', 'charge.refunded', 'pi_1', 100, 100)$$, '42501', null, 'anon cannot apply charge events');
select throws_ok('select * from public.payment_exceptions', '42501', null, 'anon cannot read payment exceptions');
select throws_ok('select * from public.stripe_payments', '42501', null, 'anon cannot read Stripe payments');
select tests.authenticate_as_service_role();
select throws_ok($$insert into public.payment_exceptions (event_id, event_type, reason) values ('x', 'x', 'x')$$, '42501', null,
  'service_role writes exceptions through the RPCs only');
select throws_ok($$insert into public.stripe_payments (payment_intent_id) values ('pi_x')$$, '42501', null, 'service_role writes payments through the RPCs only');

-- Validation ---------------------------------------------------------------------------------------------

select throws_ok(format($$select public.apply_checkout_event('evt_v', 'checkout.session.completed', 'cs_v', %L, 10, 'maybe')$$, :'org'), '22023', 'invalid_outcome',
  'the outcome is paid, unpaid or failed');
select throws_ok(format($$select public.apply_checkout_event('evt_v', 'checkout.session.completed', 'cs_v', %L, 0, 'paid')$$, :'org'), '22023', 'invalid_amount',
  'credits must be positive');
select throws_ok(format($$select public.apply_checkout_event('', 'checkout.session.completed', 'cs_v', %L, 10, 'paid')$$, :'org'), '22023', 'invalid_event',
  'an event id is required');
select throws_ok(format($$select public.apply_checkout_event('evt_v', 'checkout.session.completed', 'cs_v', %L, 10, 'paid', 'ch_not_an_intent')$$, :'org'), '22023',
  'invalid_payment_intent', 'a payment intent id starts with pi_');
select throws_ok($$select public.apply_charge_event('evt_v', 'charge.dispute.created', 'pi_v', p_dispute_id => 'dp_1')$$, '22023', 'invalid_dispute',
  'a dispute needs its id, status and amount');
select throws_ok($$select public.record_payment_exception('evt_v', 'x', null, 'Not A Key')$$, '22023', 'invalid_reason', 'an exception reason is a snake_case key');
select throws_ok($$select public.resolve_payment_exception(-1, 'done')$$, 'PT404', 'unknown_exception', 'an unknown exception is PT404');
select is((select count(*)::int from public.payment_exceptions where event_id = 'evt_v'), 0, 'refused calls record nothing');

-- Checkout: async_payment_succeeded before completed ------------------------------------------------------

select public.apply_checkout_event('evt_s', 'checkout.session.async_payment_succeeded', 'cs_a', :'org', 50, 'paid', 'pi_a', 1000, 'EUR') as s1 \gset
select is(:'s1'::jsonb ->> 'outcome', 'granted', 'a succeeded payment seen first grants at once');
select public.apply_checkout_event('evt_c', 'checkout.session.completed', 'cs_a', :'org', 50, 'unpaid', 'pi_a', 1000, 'EUR') as c1 \gset
select is(:'c1'::jsonb ->> 'outcome', 'replayed', 'the later completed (unpaid) replays');
select results_eq(format($$select status, remaining from public.credit_grants where org_id = %L and external_ref = 'cs_a'$$, :'org'),
  $$values ('active', 50::bigint)$$, 'one active grant');
select results_eq($$select org_id, checkout_session_id, credits, amount, currency from public.stripe_payments where payment_intent_id = 'pi_a'$$,
  format($$values (%L::uuid, 'cs_a', 50::bigint, 1000::bigint, 'eur')$$, :'org'), 'the payment intent is recorded with the purchase');

-- Checkout: failed before completed ---------------------------------------------------------------------

select is(public.apply_checkout_event('evt_f', 'checkout.session.async_payment_failed', 'cs_f', :'org', 30, 'failed', 'pi_f') ->> 'outcome', 'voided',
  'a failure seen first leaves a voided record');
select is(public.apply_checkout_event('evt_cf', 'checkout.session.completed', 'cs_f', :'org', 30, 'unpaid', 'pi_f') ->> 'outcome', 'replayed',
  'the later completed does not create a pending grant');
select results_eq(format($$select status, remaining from public.credit_grants where org_id = %L and external_ref = 'cs_f'$$, :'org'),
  $$values ('voided', 0::bigint)$$, 'the grant stays voided');
select is(public.apply_checkout_event('evt_cx', 'checkout.session.completed', 'cs_a', :'org', 51, 'paid', 'pi_a') ->> 'reason', 'idempotency_conflict',
  'the same session with another credit amount is recorded, not applied');

-- Charges: a refund before its purchase waits --------------------------------------------------------------

select is(public.apply_charge_event('evt_r0', 'charge.refunded', 'pi_b', 2000, 500, p_currency => 'eur') ->> 'outcome', 'waiting',
  'a refund whose purchase is not known yet waits');
select is(public.apply_checkout_event('evt_cb', 'checkout.session.completed', 'cs_b', :'org', 100, 'paid', 'pi_b', 2000, 'eur') #>> '{payment,credits_target}', '25',
  'the purchase applies it when it arrives: floor(100 × 500 / 2000)');
select results_eq(format($$select remaining, revoked_amount from public.credit_grants where org_id = %L and external_ref = 'cs_b'$$, :'org'),
  $$values (75::bigint, 25::bigint)$$, 'the purchase grant lost 25 credits');
select is(public.apply_charge_event('evt_r1', 'charge.refunded', 'pi_b', 2000, 300) ->> 'outcome', 'settled', 'an older, smaller refund total changes nothing');
select is((select credits_revoked from public.stripe_payments where payment_intent_id = 'pi_b'), 25::bigint, 'the cumulative figure wins, not the last one');

-- Disputes merge to their furthest status ------------------------------------------------------------------

select public.apply_charge_event('evt_d1', 'charge.dispute.closed', 'pi_b', p_dispute_id => 'dp_b', p_dispute_status => 'won', p_dispute_amount => 1000);
select public.apply_charge_event('evt_d2', 'charge.dispute.created', 'pi_b', p_dispute_id => 'dp_b', p_dispute_status => 'needs_response', p_dispute_amount => 1000);
select is((select disputes from public.stripe_payments where payment_intent_id = 'pi_b'), '{"dp_b": {"status": "won", "amount": 1000}}'::jsonb,
  'a dispute closed before it was created stays closed');
select is((select credits_revoked from public.stripe_payments where payment_intent_id = 'pi_b'), 25::bigint, 'a won dispute takes nothing');
select public.apply_charge_event('evt_d3', 'charge.dispute.created', 'pi_a', p_dispute_id => 'dp_a', p_dispute_status => 'needs_response', p_dispute_amount => 1000);
select results_eq($$select credits_target, credits_revoked from public.stripe_payments where payment_intent_id = 'pi_a'$$, $$values (50::bigint, 50::bigint)$$,
  'an open dispute for the whole amount takes everything back');
select tests.clear_authentication();
update public.credit_grants set expires_at = now() - interval '1 second' where org_id = :'org' and external_ref = 'cs_a';
select tests.authenticate_as_service_role();
select public.apply_charge_event('evt_d4', 'charge.dispute.closed', 'pi_a', p_dispute_id => 'dp_a', p_dispute_status => 'won', p_dispute_amount => 1000);
select results_eq(format($$select status, remaining, revoked_amount, expired_amount from public.credit_grants where org_id = %L and external_ref = 'cs_a'$$, :'org'),
  $$values ('expired', 0::bigint, 0::bigint, 50::bigint)$$, 'won after the grant expired: the credits come back as expired, not spendable');
select is(public.apply_charge_event('evt_d5', 'charge.dispute.updated', 'pi_a', p_dispute_id => 'dp_a', p_dispute_status => 'arbitration', p_dispute_amount => 1000) ->> 'reason',
  'unknown_dispute_status', 'a dispute status we do not know is recorded, not guessed');

-- Exceptions: once per event, listed by reconcile until resolved --------------------------------------------

select public.record_payment_exception('evt_bad', 'checkout.session.completed', 'cs_bad', 'invalid_credits', p_detail => '{"credits": "ten"}') as e1 \gset
select public.record_payment_exception('evt_bad', 'checkout.session.completed', 'cs_bad', 'invalid_credits') as e2 \gset
select results_eq(format($$select (%L::jsonb ->> 'exception_id') = (%L::jsonb ->> 'exception_id'), (%L::jsonb ->> 'replayed')::boolean$$, :'e1', :'e2', :'e2'),
  $$values (true, true)$$, 'a duplicate delivery records nothing new');
select is(public.apply_checkout_event('evt_ghost', 'checkout.session.completed', 'cs_g', '00000000-0000-4000-8000-00000000dead', 10, 'paid') ->> 'reason', 'unknown_org',
  'a paid session for an unknown org is recorded');
select is((select count(*)::int from public.credit_grants where external_ref = 'cs_g'), 0, 'and grants nothing');

select public.reconcile_credits() as issues \gset
select is(:'issues'::int, (select issues_found from public.credit_reconciliation_runs order by id desc limit 1), 'reconcile_credits returns the discrepancies only');
select ok(
  (select count(*) from public.credit_reconciliation_issues i where i.run_id = (select max(id) from public.credit_reconciliation_runs)
     and i.check_name = 'payment_exception' and i.detail ->> 'event_id' in ('evt_bad', 'evt_ghost', 'evt_cx', 'evt_d5')) = 4,
  'open exceptions are listed in the run as payment_exception');
select is((select payment_exceptions from public.credit_reconciliation_runs order by id desc limit 1),
  (select count(*)::int from public.payment_exceptions where resolved_at is null), 'and counted in the run''s payment_exceptions');
select is(public.resolve_payment_exception((:'e1'::jsonb ->> 'exception_id')::bigint, 'granted by hand') ->> 'replayed', 'false', 'an operator resolves an exception');
select is(public.resolve_payment_exception((:'e1'::jsonb ->> 'exception_id')::bigint, 'again') ->> 'resolution', 'granted by hand', 'resolving twice keeps the first resolution');
select public.reconcile_credits();
select is((select count(*)::int from public.credit_reconciliation_issues i where i.run_id = (select max(id) from public.credit_reconciliation_runs)
  and i.detail ->> 'event_id' = 'evt_bad'), 0, 'a resolved exception is no longer listed');
select is_empty(
  format($$select check_name from public.credit_reconciliation_issues where run_id = (select max(id) from public.credit_reconciliation_runs) and org_id = %L and check_name <> 'payment_exception'$$, :'org'),
  'the books balance after purchases, refunds, disputes and reinstatements'
);
select tests.clear_authentication();

select * from finish();
rollback;
