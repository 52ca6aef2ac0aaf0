-- Outboxes (auto top-ups and low-balance alerts): who may claim and mark, what members read,
-- and the one state machine both follow — lease, reclaim of lapsed leases, the attempts bound,
-- retries with backoff, marks in any order relative to the webhook, the re-check that cancels
-- a row no longer needed, and the monthly cap.
begin;
\ir helpers/setup.psql
select plan(82);

-- Rows other tests left due would be claimed too: this transaction (rolled back) closes them.
update public.credit_topup_requests set status = 'failed', lease_expires_at = null where status in ('pending', 'processing', 'submitted');
update public.credit_alert_outbox set status = 'failed', lease_expires_at = null where status in ('pending', 'processing');

insert into public.credit_prices (operation, credits) values ('outbox_op', 1);

-- An org with auto top-up (threshold 50, amount 100, cap 300) and 100 credits; p_cross holds 60
-- of them, which crosses the threshold and queues a top-up.
create function tests.topup_org(p_email text, p_cross boolean default true, p_hold_open boolean default false)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_user uuid := tests.create_user(p_email);
  v_org uuid := tests.personal_org(v_user);
begin
  perform public.set_org_billing(v_org, 'cus_outbox', 'pm_outbox');
  insert into public.credit_auto_topup_settings (org_id, enabled, threshold, amount, monthly_cap) values (v_org, true, 50, 100, 300);
  update public.credit_balances set auto_topup_threshold = 50 where org_id = v_org;
  perform public.grant_credits(v_org, 100, 'promotion');
  if p_cross then
    perform public.reserve_credits(v_org, v_user, 'outbox_op', 'cross', 60);
    if not p_hold_open then
      perform public.capture_credits(v_org, 'cross');
    end if;
  end if;
  return v_org;
end
$$;

create function tests.topup_of(p_org uuid)
returns uuid
language sql
set search_path = ''
as $$ select r.id from public.credit_topup_requests r where r.org_id = p_org order by r.created_at desc, r.id limit 1 $$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

select tests.create_user('outbox-member@example.test') as member \gset
select tests.create_user('outbox-stranger@example.test') as stranger \gset

-- Who may call what ------------------------------------------------------------------------------

select tests.authenticate_as_anon();
select throws_ok('select * from public.claim_topup_requests(1)', '42501', null, 'anon cannot claim top-ups');
select throws_ok($$select public.mark_topup_request(gen_random_uuid(), 'failed')$$, '42501', null, 'anon cannot mark top-ups');
select throws_ok($$select public.complete_topup_request(gen_random_uuid(), 'pi_x', true)$$, '42501', null, 'anon cannot complete top-ups');
select throws_ok('select * from public.claim_credit_alerts(1)', '42501', null, 'anon cannot claim alerts');
select throws_ok('select public.record_credit_alert_delivery(gen_random_uuid(), true)', '42501', null, 'anon cannot record deliveries');
select tests.authenticate_as(:'member');
select throws_ok('select * from public.claim_topup_requests(1)', '42501', null, 'users cannot claim top-ups');
select throws_ok($$select public.mark_topup_request(gen_random_uuid(), 'failed')$$, '42501', null, 'users cannot mark top-ups');
select throws_ok($$select public.complete_topup_request(gen_random_uuid(), 'pi_x', true)$$, '42501', null, 'users cannot complete top-ups');
select throws_ok('select * from public.claim_credit_alerts(1)', '42501', null, 'users cannot claim alerts');
select throws_ok('select public.record_credit_alert_delivery(gen_random_uuid(), true)', '42501', null, 'users cannot record deliveries');
select throws_ok($$select * from private.outbox_claim('public.credit_topup_requests', 1)$$, '42501', null, 'users cannot reach the outbox internals');
select tests.authenticate_as_service_role();
select throws_ok('select * from public.claim_topup_requests(0)', '22023', 'invalid_limit', 'a claim takes at least one row');
select throws_ok('select * from public.claim_credit_alerts(501)', '22023', 'invalid_limit', 'an alert claim takes at most 500 rows');
select throws_ok($$select public.mark_topup_request(gen_random_uuid(), 'succeeded')$$, '22023', 'invalid_status', 'the processor reports submitted, failed or retry');
select throws_ok($$select public.mark_topup_request(gen_random_uuid(), 'submitted')$$, '22023', 'invalid_payment_intent', 'a submitted top-up names its payment intent');
select throws_ok($$select public.mark_topup_request(gen_random_uuid(), 'failed')$$, 'PT404', 'unknown_request', 'marking an unknown top-up');
select throws_ok($$select public.complete_topup_request(gen_random_uuid(), null, true)$$, '22023', 'invalid_payment_intent', 'a succeeded top-up names its payment intent');
select throws_ok('select public.record_credit_alert_delivery(gen_random_uuid(), true)', 'PT404', 'unknown_alert', 'recording an unknown alert');
select tests.clear_authentication();
select throws_ok($$select * from private.outbox_claim('public.credit_grants', 1)$$, '22023', 'unknown_outbox', 'only whitelisted tables are outboxes');

-- Lease, reclaim and the attempts bound ----------------------------------------------------------

select tests.topup_org('lease@example.test') as lease_org \gset
select tests.topup_of(:'lease_org') as lease_req \gset
insert into public.org_members (org_id, user_id, role) values (:'lease_org', :'member', 'member');
select results_eq(format('select status, attempts, lease_expires_at, next_attempt_at <= now() from public.credit_topup_requests where org_id = %L', :'lease_org'),
  $$values ('pending', 0, null::timestamptz, true)$$, 'the crossing queues a due, unleased request');

select tests.authenticate_as_service_role();
select results_eq('select id, org_id, amount, stripe_customer_id, stripe_payment_method_id from public.claim_topup_requests(10)',
  format('values (%L::uuid, %L::uuid, 100::bigint, %L, %L)', :'lease_req', :'lease_org', 'cus_outbox', 'pm_outbox'),
  'the processor claims it with what it needs to charge it');
select tests.clear_authentication();
select results_eq(format('select status, attempts, lease_expires_at from public.credit_topup_requests where id = %L', :'lease_req'),
  $$values ('processing', 1, now() + interval '10 minutes')$$, 'the claim leases it for 10 minutes and counts the attempt');
select tests.authenticate_as_service_role();
select is_empty('select * from public.claim_topup_requests(10)', 'a leased request is not claimed again while its lease holds');
select tests.clear_authentication();
select throws_ok(format($$update public.credit_topup_requests set status = 'pending' where id = %L$$, :'lease_req'), '23514', null,
  'a request has a lease exactly while it is processing');

update public.credit_topup_requests set lease_expires_at = now() - interval '1 second' where id = :'lease_req';
select tests.authenticate_as_service_role();
select results_eq('select id from public.claim_topup_requests(10)', format('values (%L::uuid)', :'lease_req'),
  'a lapsed lease is reclaimed (its processor died)');
select tests.clear_authentication();
select results_eq(format('select status, attempts from public.credit_topup_requests where id = %L', :'lease_req'),
  $$values ('processing', 2)$$, 'the reclaim counts as another attempt');

update public.credit_topup_requests set lease_expires_at = now() - interval '1 second', attempts = 5 where id = :'lease_req';
select tests.authenticate_as_service_role();
select is_empty('select * from public.claim_topup_requests(10)', 'a lapsed lease with its 5 attempts used up is not claimed again');
select tests.clear_authentication();
select results_eq(format('select status, error, lease_expires_at from public.credit_topup_requests where id = %L', :'lease_req'),
  $$values ('failed', 'lease_expired', null::timestamptz)$$, '...it fails visibly');

-- Members read the outbox columns of their org, nobody else does
select tests.authenticate_as(:'member');
select results_eq('select status, attempts, error, cancel_reason, lease_expires_at from public.credit_topup_requests',
  $$values ('failed', 5, 'lease_expired', null::text, null::timestamptz)$$, 'members read their org''s requests with their outbox state');
select tests.authenticate_as(:'stranger');
select is_empty('select 1 from public.credit_topup_requests', 'strangers read no requests');
select tests.authenticate_as_anon();
select throws_ok('select 1 from public.credit_topup_requests', '42501', null, 'anon reads no requests');
select throws_ok('select 1 from public.credit_alert_outbox', '42501', null, 'anon reads no alerts');
select tests.clear_authentication();

-- The webhook before the processor's marks ---------------------------------------------------------

select tests.topup_org('webhook-first@example.test') as wf_org \gset
select tests.topup_of(:'wf_org') as wf_req \gset
select tests.authenticate_as_service_role();
select * from public.claim_topup_requests(10);
select is(public.complete_topup_request(:'wf_req', 'pi_webhookfirst', true) - 'grant',
  format('{"id": "%s", "status": "succeeded", "replayed": false}', :'wf_req')::jsonb, 'the webhook completes a request that is still processing');
select is(public.mark_topup_request(:'wf_req', 'submitted', 'pi_webhookfirst'),
  format('{"id": "%s", "status": "succeeded", "replayed": true}', :'wf_req')::jsonb, 'the processor''s submitted mark afterwards is a replay, not an error');
select is(public.mark_topup_request(:'wf_req', 'failed', null, 'late error') ->> 'status', 'succeeded', 'a late failed mark changes nothing');
select is(public.complete_topup_request(:'wf_req', 'pi_webhookfirst', false, 'declined') ->> 'status', 'succeeded', 'a failure event never undoes a success');
select is((public.complete_topup_request(:'wf_req', 'pi_webhookfirst', true) ->> 'replayed')::boolean, true, 'a duplicate success event replays');
select tests.clear_authentication();
select results_eq(format('select amount, external_ref from public.credit_grants where org_id = %L and source = %L', :'wf_org', 'auto_top_up'),
  $$values (100::bigint, 'pi_webhookfirst')$$, 'the credits are granted once');
select results_eq(format('select available, held from public.credit_balances where org_id = %L', :'wf_org'),
  $$values (140::bigint, 0::bigint)$$, '40 available + 100 topped up (the 60 that crossed were charged)');
select results_eq(format('select status, error, lease_expires_at from public.credit_topup_requests where id = %L', :'wf_req'),
  $$values ('succeeded', null::text, null::timestamptz)$$, 'the request is settled and unleased');

-- Completion before the request was ever claimed (a payment the webhook reports first)
select tests.topup_org('pending-complete@example.test') as pc_org \gset
select tests.topup_of(:'pc_org') as pc_req \gset
select tests.authenticate_as_service_role();
select is(public.complete_topup_request(:'pc_req', 'pi_pendingcomplete', true) ->> 'status', 'succeeded', 'a pending request can be completed');
select is_empty(format('select 1 from public.claim_topup_requests(10) where org_id = %L', :'pc_org'), 'and is not claimed afterwards');
select tests.clear_authentication();

-- Succeeded after failed: Stripe retried the payment
select tests.topup_org('retried-payment@example.test') as rp_org \gset
select tests.topup_of(:'rp_org') as rp_req \gset
select tests.authenticate_as_service_role();
select * from public.claim_topup_requests(10);
select is(public.mark_topup_request(:'rp_req', 'failed', null, 'Your card was declined.') ->> 'status', 'failed', 'a refused payment is failed');
select is((public.complete_topup_request(:'rp_req', 'pi_retried', false, 'declined') ->> 'replayed')::boolean, true, 'its failure event replays');
select is(public.complete_topup_request(:'rp_req', 'pi_retried', true) ->> 'status', 'succeeded', 'a later success wins over the failure');
select tests.clear_authentication();
select results_eq(format('select available from public.credit_balances where org_id = %L', :'rp_org'), $$values (140::bigint)$$,
  'the retried payment is credited');

-- Retry with backoff, failed when the attempts are used up -----------------------------------------

select tests.topup_org('retry@example.test') as rt_org \gset
select tests.topup_of(:'rt_org') as rt_req \gset
select tests.authenticate_as_service_role();
select * from public.claim_topup_requests(10);
select is(public.mark_topup_request(:'rt_req', 'retry', null, 'Stripe is unavailable'),
  format('{"id": "%s", "status": "pending", "replayed": false}', :'rt_req')::jsonb, 'a retry puts the request back');
select tests.clear_authentication();
select results_eq(format('select status, attempts, error, next_attempt_at, lease_expires_at from public.credit_topup_requests where id = %L', :'rt_req'),
  $$values ('pending', 1, 'Stripe is unavailable', now() + interval '1 minute', null::timestamptz)$$, '...due again after a minute');
select tests.authenticate_as_service_role();
select is_empty('select * from public.claim_topup_requests(10)', 'not before');
select tests.clear_authentication();
update public.credit_topup_requests set next_attempt_at = now(), attempts = 2 where id = :'rt_req';
select tests.authenticate_as_service_role();
select * from public.claim_topup_requests(10);
select public.mark_topup_request(:'rt_req', 'retry', null, 'Stripe is unavailable');
select tests.clear_authentication();
select is((select next_attempt_at from public.credit_topup_requests where id = :'rt_req'), now() + interval '4 minutes', 'the backoff doubles per attempt');
update public.credit_topup_requests set next_attempt_at = now(), attempts = 4 where id = :'rt_req';
select tests.authenticate_as_service_role();
select * from public.claim_topup_requests(10);
select is(public.mark_topup_request(:'rt_req', 'retry', null, 'Stripe is unavailable') ->> 'status', 'failed', 'the fifth failed attempt fails the request');
select tests.clear_authentication();

-- An open hold decides: the request waits ---------------------------------------------------------

select tests.topup_org('open-hold@example.test', true, true) as oh_org \gset
select tests.authenticate_as_service_role();
select is_empty('select * from public.claim_topup_requests(10)', 'a request whose crossing hold is still open is not claimed');
select tests.clear_authentication();
select results_eq(format('select status, attempts, next_attempt_at > now() + interval ''20 seconds'' from public.credit_topup_requests where org_id = %L', :'oh_org'),
  $$values ('pending', 0, true)$$, '...it waits 30 s, unleased, for the hold to settle');
select public.capture_credits(:'oh_org', 'cross');
update public.credit_topup_requests set next_attempt_at = now() where org_id = :'oh_org';
select tests.authenticate_as_service_role();
select results_eq('select org_id from public.claim_topup_requests(10)', format('values (%L::uuid)', :'oh_org'),
  'once the hold is captured the balance really is below the threshold: the request is claimed');
select tests.clear_authentication();
update public.credit_topup_requests set status = 'failed', lease_expires_at = null where org_id = :'oh_org';

-- The re-check: requests no longer needed are cancelled, never charged -----------------------------

select tests.topup_org('released@example.test', true, true) as rel_org \gset
select tests.topup_of(:'rel_org') as rel_req \gset
select public.release_credits(:'rel_org', 'cross');
select tests.topup_org('disabled@example.test') as dis_org \gset
update public.credit_auto_topup_settings set enabled = false where org_id = :'dis_org';
select tests.topup_org('no-method@example.test') as nm_org \gset
select public.set_org_billing(:'nm_org', 'cus_outbox');
select tests.topup_org('stale@example.test') as st_org \gset
update public.credit_topup_requests set status = 'processing', attempts = 1, created_at = now() - interval '1 day', lease_expires_at = now() - interval '1 second'
where org_id = :'st_org';
select tests.topup_org('still-needed@example.test') as sn_org \gset

select tests.authenticate_as_service_role();
select results_eq('select org_id from public.claim_topup_requests(2)', format('values (%L::uuid)', :'sn_org'),
  'the claim leases only the request that is still needed (the four it closes do not use up its batch of 2)');
select tests.clear_authentication();
select results_eq(
  format('select org_id, status, cancel_reason, error from public.credit_topup_requests where org_id in (%L, %L, %L, %L) order by status, cancel_reason',
    :'rel_org', :'dis_org', :'nm_org', :'st_org'),
  format($$values (%L::uuid, 'cancelled', 'auto_top_up_disabled', null::text), (%L::uuid, 'cancelled', 'balance_recovered', null), (%L::uuid, 'cancelled', 'no_payment_method', null), (%L::uuid, 'failed', null, 'idempotency_window_passed')$$,
    :'dis_org', :'rel_org', :'nm_org', :'st_org'),
  'the rest are closed with the reason: balance back above the threshold, auto top-up off, no payment method, too old to retry safely');

-- A cancelled request does not block the next crossing, nor count towards the cap
select public.reserve_credits(:'rel_org', (select personal_user_id from public.orgs where id = :'rel_org'), 'outbox_op', 'cross-again', 60);
select results_eq(format('select status from public.credit_topup_requests where org_id = %L order by created_at, status', :'rel_org'),
  $$values ('cancelled'), ('pending')$$, 'a real crossing after the cancellation queues the top-up again');

-- The monthly cap counts in-flight and succeeded requests, never failed or cancelled ones ----------

select tests.topup_org('cap-open@example.test', false) as co_org \gset
insert into public.credit_topup_requests (org_id, amount, status, error, cancel_reason) values
  (:'co_org', 100, 'succeeded', null, null), (:'co_org', 100, 'succeeded', null, null),
  (:'co_org', 100, 'failed', 'declined', null), (:'co_org', 100, 'cancelled', null, 'balance_recovered');
select public.reserve_credits(:'co_org', (select personal_user_id from public.orgs where id = :'co_org'), 'outbox_op', 'cross', 60);
select is((select count(*)::int from public.credit_topup_requests where org_id = :'co_org' and status = 'pending'), 1,
  '200 succeeded + 100 queued fits a 300 cap: failed and cancelled requests do not count');
select tests.topup_org('cap-full@example.test', false) as cf_org \gset
insert into public.credit_topup_requests (org_id, amount, status) values (:'cf_org', 100, 'succeeded'), (:'cf_org', 100, 'succeeded'), (:'cf_org', 100, 'succeeded');
select public.reserve_credits(:'cf_org', (select personal_user_id from public.orgs where id = :'cf_org'), 'outbox_op', 'cross', 60);
select is((select count(*)::int from public.credit_topup_requests where org_id = :'cf_org' and status = 'pending'), 0,
  '300 succeeded this month: the cap is reached, nothing is queued');
select tests.topup_org('cap-inflight@example.test', false) as ci_org \gset
insert into public.credit_topup_requests (org_id, amount, status) values (:'ci_org', 100, 'succeeded'), (:'ci_org', 100, 'succeeded');
insert into public.credit_topup_requests (org_id, amount, status, lease_expires_at) values (:'ci_org', 100, 'processing', now() + interval '10 minutes');
update public.credit_topup_requests set status = 'submitted', lease_expires_at = null where org_id = :'ci_org' and status = 'processing';
select tests.authenticate_as_service_role();
select public.complete_topup_request((select id from public.credit_topup_requests where org_id = :'ci_org' and status = 'submitted'), 'pi_inflight', false, 'declined');
select tests.clear_authentication();
select public.reserve_credits(:'ci_org', (select personal_user_id from public.orgs where id = :'ci_org'), 'outbox_op', 'cross', 60);
select is((select count(*)::int from public.credit_topup_requests where org_id = :'ci_org' and status = 'pending'), 1,
  'an in-flight request that then failed frees its share of the cap');

-- Alerts: the same lease, retry and re-check ------------------------------------------------------

select tests.create_user('alerts-owner@example.test') as al_user \gset
select tests.personal_org(:'al_user') as al_org \gset
insert into public.org_alert_webhooks (org_id, url, secret) values (:'al_org', 'https://hooks.example.test/credits', 'whsec_test');
select public.grant_credits(:'al_org', 200, 'purchase', 'alerts-200');
select public.reserve_credits(:'al_org', :'al_user', 'outbox_op', 'al-hold', 120);
select results_eq(format('select threshold, status from public.credit_alert_outbox where org_id = %L', :'al_org'),
  $$values (50::smallint, 'pending')$$, 'a hold that uses 60 %% of the grant queues the 50 %% alert');
select public.release_credits(:'al_org', 'al-hold');

select tests.authenticate_as_service_role();
select is_empty('select * from public.claim_credit_alerts(50)', 'the alert is not delivered once the hold is released');
select tests.clear_authentication();
select results_eq(format('select threshold, status, cancel_reason, lease_expires_at from public.credit_alert_outbox where org_id = %L', :'al_org'),
  $$values (50::smallint, 'cancelled', 'balance_recovered', null::timestamptz)$$, 'it is cancelled, with the reason');
select is((select alert_threshold_next from public.credit_balances where org_id = :'al_org'), 50::smallint, 'the balance''s marker is back at 50 %%');

select public.reserve_credits(:'al_org', :'al_user', 'outbox_op', 'al-hold-2', 110);
select public.capture_credits(:'al_org', 'al-hold-2');
select results_eq(format('select threshold, status from public.credit_alert_outbox where org_id = %L order by created_at, status', :'al_org'),
  $$values (50::smallint, 'cancelled'), (50::smallint, 'pending')$$, 'a real crossing queues the threshold again beside the cancelled event');
select (select id from public.credit_alert_outbox where org_id = :'al_org' and status = 'pending') as al_event \gset

select tests.authenticate_as_service_role();
select results_eq('select id, attempts, url from public.claim_credit_alerts(50)',
  format($$values (%L::uuid, 1, 'https://hooks.example.test/credits')$$, :'al_event'), 'the dispatcher claims the event with its webhook');
select tests.clear_authentication();
select results_eq(format('select status, lease_expires_at from public.credit_alert_outbox where id = %L', :'al_event'),
  $$values ('processing', now() + interval '60 seconds')$$, 'leased for 60 s');
update public.credit_alert_outbox set lease_expires_at = now() - interval '1 second' where id = :'al_event';
select tests.authenticate_as_service_role();
select results_eq('select id, attempts from public.claim_credit_alerts(50)', format('values (%L::uuid, 2)', :'al_event'),
  'a lapsed lease is reclaimed: the event is delivered again (receivers dedupe on its id)');
select is(public.record_credit_alert_delivery(:'al_event', false, 504, 'timeout'), 'pending', 'a failed delivery is retried');
select tests.clear_authentication();
select results_eq(format('select status, last_error, last_status_code, next_attempt_at from public.credit_alert_outbox where id = %L', :'al_event'),
  $$values ('pending', 'timeout', 504, now() + interval '60 seconds')$$, 'the outcome class is stored as given; backoff 30 s × 2^(attempts − 1)');
select tests.authenticate_as_service_role();
select is(public.record_credit_alert_delivery(:'al_event', true, 204), 'pending', 'recording an event that is not processing changes nothing');
select tests.clear_authentication();
update public.credit_alert_outbox set next_attempt_at = now(), attempts = 7 where id = :'al_event';
select tests.authenticate_as_service_role();
select * from public.claim_credit_alerts(50);
select is(public.record_credit_alert_delivery(:'al_event', false, null, 'refused_address'), 'failed', 'the eighth failed attempt fails the event');
select is(public.record_credit_alert_delivery(:'al_event', false, null, 'timeout'), 'failed', 'and a late record replays its status');
select tests.clear_authentication();

-- Delivered once, and a duplicate record is a replay
select public.reserve_credits(:'al_org', :'al_user', 'outbox_op', 'al-hold-3', 40);
select public.capture_credits(:'al_org', 'al-hold-3');
select (select id from public.credit_alert_outbox where org_id = :'al_org' and threshold = 75) as al_75 \gset
select tests.authenticate_as_service_role();
select results_eq('select id from public.claim_credit_alerts(50)', format('values (%L::uuid)', :'al_75'), 'the 75 %% event is claimed');
select is(public.record_credit_alert_delivery(:'al_75', true, 204), 'delivered', 'and delivered');
select is(public.record_credit_alert_delivery(:'al_75', true, 204), 'delivered', 'recording it again replays');
select tests.clear_authentication();
select results_eq(format('select status, last_status_code, last_error, delivered_at is not null from public.credit_alert_outbox where id = %L', :'al_75'),
  $$values ('delivered', 204, null::text, true)$$, 'the delivery is recorded');

-- Orgs without a webhook: closed by the claim
select tests.create_user('alerts-no-hook@example.test') as nh_user \gset
select tests.personal_org(:'nh_user') as nh_org \gset
select public.grant_credits(:'nh_org', 100, 'purchase', 'nh-100');
select public.reserve_credits(:'nh_org', :'nh_user', 'outbox_op', 'nh-hold', 60);
select public.capture_credits(:'nh_org', 'nh-hold');
select tests.authenticate_as_service_role();
select is_empty('select * from public.claim_credit_alerts(50)', 'nothing to deliver for an org without a webhook');
select tests.clear_authentication();
select results_eq(format('select threshold, status from public.credit_alert_outbox where org_id = %L', :'nh_org'),
  $$values (50::smallint, 'no_webhook')$$, 'its event is closed as no_webhook');

-- An alert whose crossing hold is still open waits for the hold, like a top-up
select tests.create_user('alerts-open-hold@example.test') as ah_user \gset
select tests.personal_org(:'ah_user') as ah_org \gset
insert into public.org_alert_webhooks (org_id, url, secret) values (:'ah_org', 'https://hooks.example.test/credits', 'whsec_test');
select public.grant_credits(:'ah_org', 200, 'purchase', 'alerts-open-hold');
select public.reserve_credits(:'ah_org', :'ah_user', 'outbox_op', 'ah-hold', 120);
select tests.authenticate_as_service_role();
select is_empty(format('select 1 from public.claim_credit_alerts(50) where org_id = %L', :'ah_org'), 'an alert whose crossing hold is still open is not delivered');
select tests.clear_authentication();
select results_eq(format('select status, attempts, next_attempt_at > now() + interval ''20 seconds'' from public.credit_alert_outbox where org_id = %L', :'ah_org'),
  $$values ('pending', 0, true)$$, '...it waits, unleased, for the hold to settle');
select public.capture_credits(:'ah_org', 'ah-hold');
update public.credit_alert_outbox set next_attempt_at = now() where org_id = :'ah_org';
select tests.authenticate_as_service_role();
select results_eq(format('select org_id from public.claim_credit_alerts(50) where org_id = %L', :'ah_org'), format('values (%L::uuid)', :'ah_org'),
  'once the hold is captured the threshold really is crossed: the alert is claimed');
select tests.clear_authentication();

select * from finish();
rollback;
