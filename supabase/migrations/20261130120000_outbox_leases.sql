-- Outboxes that cannot wedge: one lease-based mechanism for auto top-ups and low-balance alerts.
--
-- Both queues (credit_topup_requests, credit_alert_outbox) follow the same rules, written once
-- in private.outbox_* and applied to the two whitelisted tables (private.outbox_spec) by
-- dynamic SQL:
--
--   claim   the oldest due rows: pending ones whose next_attempt_at has come, and processing
--           ones whose lease lapsed (their processor died). Rows that plainly cannot run (alerts
--           of an org without a webhook) are closed in bulk first. Then, under the org's balance
--           lock (the lock order of every money path: balance, then row), each row is locked
--           with SKIP LOCKED and the condition that queued it is re-checked (private.recheck_*):
--           a row no longer needed is closed (`cancelled` with a reason, or `no_webhook`); a row
--           whose crossing still depends on open holds (`available + held` back at or above the
--           level that queued it: a hold may yet be released, charging nothing) is 'deferred'
--           back to pending, due again in 30 s, until the holds settle (bounded by their TTL); a row
--           whose lease lapsed with its attempts used up is `failed` ('lease_expired'); of the
--           rest, the oldest p_limit are leased: status processing, attempts + 1,
--           lease_expires_at = now() + the lease.
--   settle  processing → the outcome the worker reports (a final status such as submitted or
--           delivered, `failed`, or `retry`: back to pending after an exponential backoff, or
--           failed when its attempts are used up). A mark on a row that is no longer processing
--           (a webhook settled it first, another worker finished it) changes nothing and
--           reports the row's status: marks are idempotent and may arrive in any order.
--
-- A revocation (refund, dispute) never queues a top-up: taking credits back must not charge the
-- same card again (the trigger reads the change's ledger kind, see private.apply_balance_change).
--
-- Cancelled rows do not count towards the auto top-up monthly cap and do not block a later
-- crossing from queueing the same top-up or alert again.

-- Top-up requests -------------------------------------------------------------------------------

alter table public.credit_topup_requests
  drop constraint credit_topup_requests_status_check,
  -- pending → processing (leased) → submitted (payment intent created) → succeeded (credits
  -- granted); failed: the payment failed, or attempts ran out; cancelled: no longer needed when
  -- claimed (cancel_reason says why).
  add constraint credit_topup_requests_status_check
    check (status in ('pending', 'processing', 'submitted', 'succeeded', 'failed', 'cancelled')),
  -- When a pending request is due (now, or after a retry's backoff).
  add column next_attempt_at timestamptz not null default now(),
  -- While processing: when the claim lapses and another processor may reclaim the request.
  add column lease_expires_at timestamptz,
  add column cancel_reason text check (char_length(cancel_reason) <= 100);

-- Requests left processing by the old processor become reclaimable once a lease would have run out.
update public.credit_topup_requests set lease_expires_at = updated_at + interval '10 minutes' where status = 'processing';

alter table public.credit_topup_requests
  add constraint credit_topup_requests_lease_check check ((status = 'processing') = (lease_expires_at is not null)),
  add constraint credit_topup_requests_cancelled_with_reason check (status <> 'cancelled' or cancel_reason is not null);

drop index public.credit_topup_requests_pending_idx;
create index credit_topup_requests_due_idx on public.credit_topup_requests (next_attempt_at) where status = 'pending';
create index credit_topup_requests_lease_idx on public.credit_topup_requests (lease_expires_at) where status = 'processing';

-- Alert events ----------------------------------------------------------------------------------

alter table public.credit_alert_outbox
  drop constraint credit_alert_outbox_status_check,
  -- pending → processing (leased) → delivered | pending again (retry after backoff) | failed
  -- (8 attempts); no_webhook: the org has none; cancelled: the threshold was no longer crossed
  -- when the event was claimed (cancel_reason says why).
  add constraint credit_alert_outbox_status_check
    check (status in ('pending', 'processing', 'delivered', 'failed', 'no_webhook', 'cancelled')),
  add column lease_expires_at timestamptz,
  add column cancel_reason text check (char_length(cancel_reason) <= 100),
  add column updated_at timestamptz not null default now(),
  add constraint credit_alert_outbox_lease_check check ((status = 'processing') = (lease_expires_at is not null)),
  add constraint credit_alert_outbox_cancelled_with_reason check (status <> 'cancelled' or cancel_reason is not null);

-- One live event per (org, grant, threshold); a cancelled one stays as history and does not
-- stop a later real crossing from queueing the threshold again.
alter table public.credit_alert_outbox drop constraint credit_alert_outbox_org_id_grant_id_threshold_key;
create unique index credit_alert_outbox_once on public.credit_alert_outbox (org_id, grant_id, threshold) where status <> 'cancelled';
create index credit_alert_outbox_lease_idx on public.credit_alert_outbox (lease_expires_at) where status = 'processing';

-- The shared mechanism --------------------------------------------------------------------------

-- The whitelist: the tables the outbox functions may touch, and each one's rules. Dynamic SQL
-- in private.outbox_* only ever names a table that passed through here.
create function private.outbox_spec(
  p_outbox regclass,
  out error_column text,       -- where a failure's reason is written
  out recheck text,            -- function (p_id uuid) → (close_status, reason): is the row still needed?
  out settle_outcomes text[],  -- what a worker may report
  out max_attempts integer,    -- claims before a row fails for good
  out lease interval,          -- how long a claim holds a row
  out retry_after interval,    -- first backoff; doubles per attempt...
  out retry_cap interval,      -- ...up to this
  out max_batch integer,       -- largest p_limit of a claim
  out bulk_close_status text,  -- rows that plainly cannot run (no balance lock needed to know)...
  out bulk_close_when text     -- ...are closed in bulk first: this condition on alias o
)
language plpgsql
stable
set search_path = ''
as $$
begin
  case p_outbox
    when 'public.credit_topup_requests'::regclass then
      -- The lease outlasts a processor run (Stripe calls time out after 20 s, 2 retries); five
      -- attempts at most 1 h apart stay well inside Stripe's 24 h idempotency window.
      select 'error', 'private.recheck_topup_request', array['submitted', 'failed', 'retry'], 5,
             interval '10 minutes', interval '1 minute', interval '1 hour', 100, null, null
      into error_column, recheck, settle_outcomes, max_attempts, lease, retry_after, retry_cap, max_batch,
           bulk_close_status, bulk_close_when;
    when 'public.credit_alert_outbox'::regclass then
      -- Deliveries time out after seconds; retries after 30 s, 1 min, 2 min, ... at most 1 h.
      -- Most orgs have no webhook: their events are closed in bulk, not one balance lock each.
      select 'last_error', 'private.recheck_credit_alert', array['delivered', 'failed', 'retry'], 8,
             interval '60 seconds', interval '30 seconds', interval '1 hour', 500,
             'no_webhook', 'not exists (select 1 from public.org_alert_webhooks w where w.org_id = o.org_id)'
      into error_column, recheck, settle_outcomes, max_attempts, lease, retry_after, retry_cap, max_batch,
           bulk_close_status, bulk_close_when;
    else
      perform private.fail('unknown_outbox', '22023', jsonb_build_object('outbox', p_outbox::text),
        'credit_topup_requests or credit_alert_outbox');
  end case;
end
$$;

revoke all on function private.outbox_spec(regclass) from public;
comment on function private.outbox_spec(regclass) is
  'The outbox whitelist and each outbox''s rules (attempts, lease, backoff, batch, re-check). Internal: private.outbox_*.';

-- Closes a row without running it (cancelled, failed, no_webhook) and records why. The claim
-- holds the row's lock.
create function private.outbox_close(p_outbox regclass, p_id uuid, p_status text, p_reason text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_spec record;
begin
  select * into v_spec from private.outbox_spec(p_outbox);
  execute format($sql$
      update %1$s o
      set status = $2,
          cancel_reason = case when $2 = 'cancelled' then $3 end,
          %2$I = case when $2 = 'failed' then left($3, 1000) else o.%2$I end,
          lease_expires_at = null,
          updated_at = now()
      where o.id = $1$sql$, p_outbox, v_spec.error_column)
    using p_id, p_status, p_reason;
end
$$;

revoke all on function private.outbox_close(regclass, uuid, text, text) from public;
comment on function private.outbox_close(regclass, uuid, text, text) is
  'Closes an outbox row without running it (cancelled / failed / no_webhook) with its reason. Internal: private.outbox_claim.';

-- Claims up to p_limit rows: due pending ones and lapsed leases, re-checked under the org's
-- balance lock; returns the ids it leased. It looks at up to 4 × p_limit of the
-- oldest due rows, so rows it closes (no longer needed) do not use up the batch; like every
-- multi-org batch it visits them in org order, so concurrent claims lock balances in one order
-- and cannot deadlock. See the header of this migration for the rules.
create function private.outbox_claim(p_outbox regclass, p_limit integer)
returns setof uuid
language plpgsql
set search_path = ''
as $$
declare
  v_spec record;
  v_candidate_id uuid;
  v_candidate_org_id uuid;
  v_due timestamptz;
  v_attempts integer;
  v_found integer;
  v_close_status text;
  v_close_reason text;
  v_eligible jsonb := '[]';
begin
  select * into v_spec from private.outbox_spec(p_outbox);
  if p_limit is null or p_limit not between 1 and v_spec.max_batch then
    perform private.fail('invalid_limit', '22023', jsonb_build_object('limit', p_limit, 'min', 1, 'max', v_spec.max_batch));
  end if;
  if v_spec.bulk_close_status is not null then
    -- Bounded, and row locks only (SKIP LOCKED): no balance lock is taken or awaited here.
    execute format($sql$
        update %1$s t
        set status = $2, updated_at = now()
        where t.id in (
          select o.id from %1$s o
          where o.status = 'pending' and o.next_attempt_at <= now() and %2$s
          order by o.next_attempt_at
          limit $1
          for update skip locked
        )$sql$, p_outbox, v_spec.bulk_close_when)
      using p_limit * 100, v_spec.bulk_close_status;
  end if;
  for v_candidate_id, v_candidate_org_id in execute format($sql$
      select c.id, c.org_id
      from (
        select d.id, d.org_id
        from (
          (select p.id, p.org_id, p.next_attempt_at as due from %1$s p
           where p.status = 'pending' and p.next_attempt_at <= now()
           order by p.next_attempt_at limit $1)
          union all
          (select p.id, p.org_id, p.lease_expires_at as due from %1$s p
           where p.status = 'processing' and p.lease_expires_at <= now()
           order by p.lease_expires_at limit $1)
        ) d
        order by d.due, d.id
        limit $1
      ) c
      order by c.org_id, c.id$sql$, p_outbox)
    using p_limit * 4
  loop
    -- The lock order of every money path: the org's balance first, then the row.
    perform private.lock_balance(v_candidate_org_id);
    execute format($sql$
        select o.attempts, case o.status when 'pending' then o.next_attempt_at else o.lease_expires_at end
        from %s o
        where o.id = $1
          and ((o.status = 'pending' and o.next_attempt_at <= now())
               or (o.status = 'processing' and o.lease_expires_at <= now()))
        for update skip locked$sql$, p_outbox)
      into v_attempts, v_due
      using v_candidate_id;
    get diagnostics v_found = row_count;
    -- Claimed by another processor, or settled by a webhook, since the candidates were read.
    continue when v_found = 0;
    if v_attempts >= v_spec.max_attempts then
      -- Its processors kept dying with the lease: fail visibly instead of trying for ever.
      perform private.outbox_close(p_outbox, v_candidate_id, 'failed', 'lease_expired');
      continue;
    end if;
    execute format('select r.close_status, r.reason from %s($1) r', v_spec.recheck) into v_close_status, v_close_reason using v_candidate_id;
    if v_close_status = 'deferred' then
      execute format($sql$
          update %s o
          set status = 'pending', lease_expires_at = null, next_attempt_at = now() + interval '30 seconds', updated_at = now()
          where o.id = $1$sql$, p_outbox)
        using v_candidate_id;
      continue;
    end if;
    if v_close_status is not null then
      perform private.outbox_close(p_outbox, v_candidate_id, v_close_status, v_close_reason);
      continue;
    end if;
    v_eligible := v_eligible || jsonb_build_object('id', v_candidate_id, 'due', v_due);
  end loop;

  -- Lease the oldest p_limit of the rows still needed; the rest stay due for the next claim.
  return query execute format($sql$
      update %s o
      set status = 'processing', attempts = o.attempts + 1, lease_expires_at = now() + $2, updated_at = now()
      where o.id in (
        select (e.value ->> 'id')::uuid from jsonb_array_elements($1) e
        order by (e.value ->> 'due')::timestamptz, e.value ->> 'id'
        limit $3
      )
      returning o.id$sql$, p_outbox)
    using v_eligible, v_spec.lease, p_limit;
end
$$;

revoke all on function private.outbox_claim(regclass, integer) from public;
comment on function private.outbox_claim(regclass, integer) is
  'Claims due outbox rows and lapsed leases (SKIP LOCKED, balance lock first), re-checks each, leases the rest; returns their ids. Internal: claim_topup_requests, claim_credit_alerts.';

-- Records a worker's outcome for a processing row: a final status, 'failed', or 'retry' (back to
-- pending after the backoff, failed once its attempts are used up). On a row that is no longer
-- processing it changes nothing: `applied` is false and `status` is the row's status (null when
-- there is no such row).
create function private.outbox_settle(
  p_outbox regclass,
  p_id uuid,
  p_outcome text,
  p_error text,
  out status text,
  out applied boolean
)
language plpgsql
set search_path = ''
as $$
declare
  v_spec record;
  v_rows integer;
begin
  select * into v_spec from private.outbox_spec(p_outbox);
  if p_outcome is null or not (p_outcome = any (v_spec.settle_outcomes)) then
    perform private.fail('invalid_status', '22023', jsonb_build_object('status', p_outcome, 'allowed', v_spec.settle_outcomes));
  end if;
  execute format($sql$
      update %1$s o
      set status = case when $2 <> 'retry' then $2 when o.attempts >= $4 then 'failed' else 'pending' end,
          next_attempt_at = case when $2 = 'retry' and o.attempts < $4
                                 then now() + least($5 * power(2, greatest(o.attempts - 1, 0)), $6)
                                 else o.next_attempt_at end,
          lease_expires_at = null,
          %2$I = left($3, 1000),
          updated_at = now()
      where o.id = $1 and o.status = 'processing'
      returning o.status$sql$, p_outbox, v_spec.error_column)
    into status
    using p_id, p_outcome, p_error, v_spec.max_attempts, v_spec.retry_after, v_spec.retry_cap;
  get diagnostics v_rows = row_count;
  applied := v_rows > 0;
  if not applied then
    execute format('select o.status from %s o where o.id = $1', p_outbox) into status using p_id;
  end if;
end
$$;

revoke all on function private.outbox_settle(regclass, uuid, text, text) from public;
comment on function private.outbox_settle(regclass, uuid, text, text) is
  'Records a worker''s outcome for a processing outbox row (final, failed, retry with backoff); idempotent on settled rows. Internal: mark_topup_request, record_credit_alert_delivery.';

-- Re-checks ---------------------------------------------------------------------------------------

-- Is this top-up still needed? Run by the claim under the org's balance lock. Closes it when
-- auto top-up was switched off, the saved payment method is gone, the balance is back at or
-- above the threshold (the hold that crossed it was released, credits arrived meanwhile), or —
-- for a request already tried — when its first attempt may be older than Stripe's 24 h
-- idempotency window, so that retrying it could charge the card a second time.
create function private.recheck_topup_request(p_id uuid, out close_status text, out reason text)
language plpgsql
stable
set search_path = ''
as $$
declare
  v_request public.credit_topup_requests;
  v_settings public.credit_auto_topup_settings;
  v_balance public.credit_balances;
begin
  select * into v_request from public.credit_topup_requests r where r.id = p_id;
  select * into v_settings from public.credit_auto_topup_settings s where s.org_id = v_request.org_id;
  select * into v_balance from public.credit_balances b where b.org_id = v_request.org_id;
  if not coalesce(v_settings.enabled, false) then
    close_status := 'cancelled';
    reason := 'auto_top_up_disabled';
  elsif not exists (select 1 from public.org_billing b where b.org_id = v_request.org_id and b.stripe_payment_method_id is not null) then
    close_status := 'cancelled';
    reason := 'no_payment_method';
  elsif v_balance.available >= v_settings.threshold then
    close_status := 'cancelled';
    reason := 'balance_recovered';
  elsif v_request.attempts > 0 and v_request.created_at < now() - interval '23 hours' then
    close_status := 'failed';
    reason := 'idempotency_window_passed';
  elsif v_balance.held > 0 and v_balance.available + v_balance.held >= v_settings.threshold then
    close_status := 'deferred';
    reason := 'holds_open';
  end if;
end
$$;

revoke all on function private.recheck_topup_request(uuid) from public;
comment on function private.recheck_topup_request(uuid) is
  'Outbox re-check of a top-up request (balance locked by the caller): why it is no longer needed, deferred while open holds decide, or nulls. Internal: private.outbox_claim.';

-- Is this alert still true? Run by the claim under the org's balance lock. An event whose
-- threshold is no longer crossed (the hold that crossed it was released, credits arrived) is
-- cancelled, and the balance row's marker is rewound to that threshold so that a later real
-- crossing queues it again. An org without a webhook closes the event as no_webhook.
create function private.recheck_credit_alert(p_id uuid, out close_status text, out reason text)
language plpgsql
set search_path = ''
as $$
declare
  v_alert public.credit_alert_outbox;
  v_available bigint;
  v_held bigint;
  v_level bigint;
begin
  select * into v_alert from public.credit_alert_outbox o where o.id = p_id;
  select b.available, b.held into v_available, v_held from public.credit_balances b where b.org_id = v_alert.org_id;
  select private.alert_level(g.amount, v_alert.threshold) into v_level from public.credit_grants g where g.id = v_alert.grant_id;
  if v_available > v_level then
    update public.credit_balances b
    set alert_threshold_next = v_alert.threshold
    where b.org_id = v_alert.org_id
      and b.alert_grant_id = v_alert.grant_id
      and (b.alert_threshold_next is null or b.alert_threshold_next > v_alert.threshold);
    close_status := 'cancelled';
    reason := 'balance_recovered';
  elsif not exists (select 1 from public.org_alert_webhooks w where w.org_id = v_alert.org_id) then
    close_status := 'no_webhook';
  elsif v_held > 0 and v_available + v_held > v_level then
    close_status := 'deferred';
    reason := 'holds_open';
  end if;
end
$$;

revoke all on function private.recheck_credit_alert(uuid) from public;
comment on function private.recheck_credit_alert(uuid) is
  'Outbox re-check of a low-balance event (balance locked by the caller): cancels one no longer crossed and rewinds the marker, defers one while open holds decide. Internal: private.outbox_claim.';

-- Queueing ----------------------------------------------------------------------------------------

-- The monthly cap counts what is in flight (pending, processing, submitted) and what succeeded,
-- never failed or cancelled requests. The trigger runs under the balance row's lock and the
-- one-open index backs it, so concurrent crossings still queue one request.
create or replace function private.queue_auto_topup()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings public.credit_auto_topup_settings;
  v_this_month bigint;
begin
  -- Taking credits back for a refund or dispute must not charge the same card again.
  if pg_catalog.current_setting('tollgate.balance_change_kind', true) = 'revoke' then
    return null;
  end if;
  select * into v_settings from public.credit_auto_topup_settings s where s.org_id = new.org_id and s.enabled;
  if not found then
    return null;
  end if;
  select coalesce(sum(r.amount), 0) into v_this_month
  from public.credit_topup_requests r
  where r.org_id = new.org_id
    and r.status in ('pending', 'processing', 'submitted', 'succeeded')
    and r.created_at >= date_trunc('month', now() at time zone 'utc') at time zone 'utc';
  if v_this_month + v_settings.amount > v_settings.monthly_cap then
    return null;
  end if;
  insert into public.credit_topup_requests (org_id, amount)
  values (new.org_id, v_settings.amount)
  on conflict (org_id) where status in ('pending', 'processing', 'submitted') do nothing;
  return null;
end
$$;

revoke all on function private.queue_auto_topup() from public;
comment on function private.queue_auto_topup() is
  'Trigger on credit_balances: one pending top-up when available crosses below the org''s threshold, within the monthly cap (in-flight and succeeded requests count); never for a revocation. Not callable.';

-- As before, but a cancelled event of the same threshold no longer blocks a new one.
create or replace function private.record_low_balance_alerts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_threshold smallint;
begin
  foreach v_threshold in array array[50, 75, 90, 100]::smallint[] loop
    continue when v_threshold < new.alert_threshold_next;
    if new.available <= private.alert_level(new.alert_grant_amount, v_threshold) then
      insert into public.credit_alert_outbox (org_id, grant_id, threshold, payload)
      values (new.org_id, new.alert_grant_id, v_threshold, jsonb_build_object(
        'type', 'credits.low_balance',
        'org_id', new.org_id,
        'threshold_percent', v_threshold,
        'grant_id', new.alert_grant_id,
        'grant_amount', new.alert_grant_amount,
        'available', new.available,
        'occurred_at', now()
      ))
      on conflict (org_id, grant_id, threshold) where status <> 'cancelled' do nothing;
      new.alert_threshold_next := case v_threshold when 50 then 75 when 75 then 90 when 90 then 100 end;
    else
      exit;
    end if;
  end loop;
  return new;
end
$$;

revoke all on function private.record_low_balance_alerts() from public;
comment on function private.record_low_balance_alerts() is
  'Trigger on credit_balances: one outbox event per usage threshold (50/75/90/100 % of the last grant) crossed; a cancelled event does not block a new one. Not callable.';

-- Top-up RPCs ---------------------------------------------------------------------------------------

-- The processor claims due top-ups (and lapsed leases) with what it needs to charge them;
-- requests that are no longer needed are cancelled by the claim instead.
create or replace function public.claim_topup_requests(p_limit integer default 10)
returns table (id uuid, org_id uuid, amount bigint, stripe_customer_id text, stripe_payment_method_id text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[] := array(select private.outbox_claim('public.credit_topup_requests', p_limit));
begin
  return query
  select r.id, r.org_id, r.amount, b.stripe_customer_id, b.stripe_payment_method_id
  from public.credit_topup_requests r
  join public.org_billing b on b.org_id = r.org_id
  where r.id = any (v_ids)
  order by r.created_at, r.id;
end
$$;

revoke all on function public.claim_topup_requests(integer) from public;
grant execute on function public.claim_topup_requests(integer) to service_role;
comment on function public.claim_topup_requests(integer) is
  'Server RPC (topup-processor): lease due top-up requests (10 min), re-checked under the balance lock; lapsed leases are reclaimed. Errors: invalid_limit 22023.';

-- The processor reports what Stripe said: submitted (with the payment intent), failed (Stripe
-- refused the payment), or retry (Stripe could not be reached: try again after a backoff). On a
-- request the webhook already settled it changes nothing and answers replayed: true.
drop function public.mark_topup_request(uuid, text, text, text);
create function public.mark_topup_request(p_id uuid, p_status text, p_payment_intent_id text default null, p_error text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settled record;
begin
  if p_status = 'submitted' and (p_payment_intent_id is null or p_payment_intent_id !~ '^pi_[A-Za-z0-9_]+$') then
    perform private.fail('invalid_payment_intent', '22023', '{}', 'a submitted top-up names its Stripe payment intent (pi_...)');
  end if;
  select * into v_settled from private.outbox_settle('public.credit_topup_requests', p_id, p_status, p_error);
  if v_settled.status is null then
    perform private.fail('unknown_request', 'PT404', jsonb_build_object('id', p_id), 'no top-up request with this id');
  end if;
  if p_payment_intent_id is not null then
    -- Keep the intent even when the webhook came first and did not name it (a failure event).
    update public.credit_topup_requests r set payment_intent_id = p_payment_intent_id
    where r.id = p_id and r.payment_intent_id is null;
  end if;
  return jsonb_build_object('id', p_id, 'status', v_settled.status, 'replayed', not v_settled.applied);
end
$$;

revoke all on function public.mark_topup_request(uuid, text, text, text) from public;
grant execute on function public.mark_topup_request(uuid, text, text, text) to service_role;
comment on function public.mark_topup_request(uuid, text, text, text) is
  'Server RPC (topup-processor): record a claimed request''s payment attempt (submitted / failed / retry) → {id, status, replayed}; a no-op on a settled request. Errors: invalid_status, invalid_payment_intent 22023; unknown_request PT404.';

-- The webhook (or the processor, when Stripe answers succeeded at once): the payment intent of a
-- top-up succeeded (credits granted once) or failed. Converges whatever the order: success wins
-- over an earlier failure or cancellation (Stripe may retry a payment; a cancelled request's
-- payment may already have been under way) and over a request still pending or processing (the
-- webhook can arrive before the processor's own mark); a failure never undoes a success.
create or replace function public.complete_topup_request(p_id uuid, p_payment_intent_id text, p_succeeded boolean, p_error text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid;
  v_request public.credit_topup_requests;
  v_grant jsonb;
begin
  if p_succeeded is null then
    perform private.fail('invalid_status', '22023', '{}', 'p_succeeded is true or false');
  end if;
  if p_succeeded and (p_payment_intent_id is null or p_payment_intent_id !~ '^pi_[A-Za-z0-9_]+$') then
    perform private.fail('invalid_payment_intent', '22023', '{}', 'a succeeded top-up names its Stripe payment intent (pi_...)');
  end if;
  select r.org_id into v_org_id from public.credit_topup_requests r where r.id = p_id;
  if not found then
    perform private.fail('unknown_request', 'PT404', jsonb_build_object('id', p_id));
  end if;
  perform private.lock_balance(v_org_id);
  select * into v_request from public.credit_topup_requests r where r.id = p_id for update;
  if v_request.status = 'succeeded' or (not p_succeeded and v_request.status in ('failed', 'cancelled')) then
    return jsonb_build_object('id', p_id, 'status', v_request.status, 'replayed', true);
  end if;
  if p_succeeded then
    v_grant := private.insert_grant(v_request.org_id, v_request.amount, 'auto_top_up', p_payment_intent_id, null,
      jsonb_build_object('topup_request_id', p_id), 100, false);
    update public.credit_topup_requests r
    set status = 'succeeded', payment_intent_id = p_payment_intent_id, grant_id = (v_grant ->> 'grant_id')::uuid,
        error = null, cancel_reason = null, lease_expires_at = null, updated_at = now()
    where r.id = p_id;
    return jsonb_build_object('id', p_id, 'status', 'succeeded', 'replayed', false, 'grant', v_grant);
  end if;
  update public.credit_topup_requests r
  set status = 'failed', payment_intent_id = coalesce(p_payment_intent_id, r.payment_intent_id),
      error = left(coalesce(p_error, 'payment failed'), 1000), lease_expires_at = null, updated_at = now()
  where r.id = p_id;
  return jsonb_build_object('id', p_id, 'status', 'failed', 'replayed', false);
end
$$;

revoke all on function public.complete_topup_request(uuid, text, boolean, text) from public;
grant execute on function public.complete_topup_request(uuid, text, boolean, text) to service_role;
comment on function public.complete_topup_request(uuid, text, boolean, text) is
  'Server RPC (stripe-webhook, topup-processor): a top-up payment succeeded (credits granted once, source auto_top_up) or failed; converges in any order. Errors: invalid_status, invalid_payment_intent 22023; unknown_request PT404.';

-- Alert RPCs ----------------------------------------------------------------------------------------

-- The dispatcher leases due events for 60 s (and reclaims lapsed leases); events that are no
-- longer true are cancelled and events of orgs without a webhook closed, by the claim.
create or replace function public.claim_credit_alerts(p_limit integer default 50)
returns table (id uuid, org_id uuid, payload jsonb, attempts integer, url text, secret text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[] := array(select private.outbox_claim('public.credit_alert_outbox', p_limit));
begin
  return query
  select o.id, o.org_id, o.payload, o.attempts, w.url, w.secret
  from public.credit_alert_outbox o
  join public.org_alert_webhooks w on w.org_id = o.org_id
  where o.id = any (v_ids)
  order by o.created_at, o.id;
end
$$;

revoke all on function public.claim_credit_alerts(integer) from public;
grant execute on function public.claim_credit_alerts(integer) to service_role;
comment on function public.claim_credit_alerts(integer) is
  'Server RPC (alerts-dispatcher): lease due low-balance events (60 s), re-checked under the balance lock; lapsed leases are reclaimed. Errors: invalid_limit 22023.';

-- Delivered, or retried with exponential backoff (30 s, 1 min, 2 min, ... at most 1 h); after 8
-- attempts the event is failed. p_error is stored as given (an outcome class such as timeout or
-- http_5xx). Recording an event that is no longer processing changes nothing and returns its status.
create or replace function public.record_credit_alert_delivery(p_id uuid, p_delivered boolean, p_status_code integer default null, p_error text default null)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settled record;
begin
  select * into v_settled
  from private.outbox_settle('public.credit_alert_outbox', p_id, case when p_delivered then 'delivered' else 'retry' end, p_error);
  if v_settled.status is null then
    perform private.fail('unknown_alert', 'PT404', jsonb_build_object('id', p_id), 'no alert with this id');
  end if;
  if v_settled.applied then
    update public.credit_alert_outbox o
    set last_status_code = p_status_code, delivered_at = case when p_delivered then now() end
    where o.id = p_id;
  end if;
  return v_settled.status;
end
$$;

revoke all on function public.record_credit_alert_delivery(uuid, boolean, integer, text) from public;
grant execute on function public.record_credit_alert_delivery(uuid, boolean, integer, text) to service_role;
comment on function public.record_credit_alert_delivery(uuid, boolean, integer, text) is
  'Server RPC (alerts-dispatcher): record a delivery attempt of a claimed event → its status; retries back off exponentially, 8 attempts at most; a no-op on a settled event. Errors: unknown_alert PT404.';
