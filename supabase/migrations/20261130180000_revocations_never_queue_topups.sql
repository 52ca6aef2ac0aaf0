-- A revocation never queues an auto top-up.
--
-- Credits taken back because a payment was refunded or disputed must not charge the same
-- customer's card again off-session. The top-up trigger fires on the balance update that crosses
-- the threshold; to know what kind of change that update is, the one function that changes
-- balances records the ledger kind it is writing in a transaction-local setting just before the
-- update, and the trigger reads it. The next ordinary charge that crosses the threshold queues a
-- top-up as usual.

create or replace function private.apply_balance_change(
  p_org_id uuid,
  p_kind text,
  p_amount bigint,
  p_held_delta bigint default 0,
  p_request_id text default null,
  p_grant_id uuid default null,
  p_metadata jsonb default '{}'
)
returns public.credit_balances
language plpgsql
set search_path = ''
as $$
declare
  v_balance public.credit_balances;
  -- The caller as PostgREST set it (parsed once; auth.uid() and auth.role() would parse twice).
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
begin
  -- What kind of change the balance triggers below see (transaction-local).
  perform pg_catalog.set_config('tollgate.balance_change_kind', p_kind, true);
  update public.credit_balances b
  set available = b.available + p_amount,
      held = b.held + p_held_delta,
      updated_at = now()
  where b.org_id = p_org_id
  returning * into v_balance;

  insert into public.credit_ledger (org_id, kind, amount, held_delta, balance_after, held_after, request_id, grant_id, actor_user_id, actor_role, metadata)
  values (p_org_id, p_kind, p_amount, p_held_delta, v_balance.available, v_balance.held, p_request_id, p_grant_id,
          (v_claims ->> 'sub')::uuid, coalesce(v_claims ->> 'role', 'system'), coalesce(p_metadata, '{}'));

  return v_balance;
end
$$;

comment on function private.apply_balance_change(uuid, text, bigint, bigint, text, uuid, jsonb) is
  'Changes a locked balance and appends the matching ledger entry in one step; the balance triggers see the ledger kind in tollgate.balance_change_kind. Internal.';

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

comment on function private.queue_auto_topup() is
  'Trigger on credit_balances: one pending top-up when available crosses below the org''s threshold, within the monthly cap (in-flight and succeeded requests count); never for a revocation. Not callable.';
