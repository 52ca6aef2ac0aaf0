-- Outboxes wait for open holds before they act.
--
-- A hold lowers `available` at once, but it may still be released, charging nothing (the
-- backend failed, or never answered). A top-up or alert queued by a hold that is still open when
-- the row is claimed cannot be judged yet: if `available + held` is back at or above the level
-- that queued it, the outcome depends on the holds, so the row waits ('deferred': back to
-- pending, due again in 30 s) instead of charging a card or sending an alert. Once the holds
-- settle, the ordinary re-check decides: captured, the row goes ahead; released, it is cancelled
-- as balance_recovered. Holds cannot outlive their TTL, so the wait is bounded.
--
-- outbox_claim also reads its candidates and re-check results into typed variables, so
-- `supabase db lint` (plpgsql_check) can check every statement. Grants and comments carry over
-- (create or replace keeps them).

create or replace function private.outbox_claim(p_outbox regclass, p_limit integer)
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

-- The top-up's re-check: as before, plus 'deferred' while open holds decide whether the balance
-- really stays below the threshold.
create or replace function private.recheck_topup_request(p_id uuid, out close_status text, out reason text)
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

comment on function private.recheck_topup_request(uuid) is
  'Outbox re-check of a top-up request (balance locked by the caller): why it is no longer needed, deferred while open holds decide, or nulls. Internal: private.outbox_claim.';

-- The alert's re-check: as before, plus 'deferred' while open holds decide whether the
-- threshold is really crossed.
create or replace function private.recheck_credit_alert(p_id uuid, out close_status text, out reason text)
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

comment on function private.recheck_credit_alert(uuid) is
  'Outbox re-check of a low-balance event (balance locked by the caller): cancels one no longer crossed and rewinds the marker, defers one while open holds decide. Internal: private.outbox_claim.';
