-- Low-balance alerts (seed 004: alerting).
--
-- When usage of the org's last grant crosses 50, 75, 90 and 100 %, one event per threshold is
-- written to an outbox in the charge's own transaction. The alerts-dispatcher function
-- delivers them to the org's webhook, signed with HMAC-SHA256, retrying with backoff; every
-- event and its delivery state stays visible in credit_alert_outbox.

-- The balance row carries the reference grant and the next threshold, so the check costs one
-- comparison in a trigger WHEN clause on charges that cross nothing.
alter table public.credit_balances
  add column alert_grant_id uuid,
  add column alert_grant_amount bigint check (alert_grant_amount > 0),
  add column alert_threshold_next smallint check (alert_threshold_next in (50, 75, 90, 100));

create table public.credit_alert_outbox (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id),
  grant_id uuid not null,
  threshold smallint not null check (threshold in (50, 75, 90, 100)),
  payload jsonb not null,
  -- pending → delivered | failed (after 8 attempts) | no_webhook (the org has none)
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed', 'no_webhook')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_status_code integer,
  last_error text check (char_length(last_error) <= 1000),
  created_at timestamptz not null default now(),
  delivered_at timestamptz,
  unique (org_id, grant_id, threshold)
);

create index credit_alert_outbox_due_idx on public.credit_alert_outbox (next_attempt_at) where status = 'pending';

create table public.org_alert_webhooks (
  org_id uuid primary key references public.orgs (id),
  url text not null check (url ~ '^https?://' and char_length(url) <= 1000),
  secret text not null,
  updated_by uuid,
  updated_at timestamptz not null default now()
);

-- Threshold level: the balance at which `p_threshold` % of the grant is used.
create function private.alert_level(p_grant_amount bigint, p_threshold smallint)
returns bigint
language sql
immutable
set search_path = ''
as $$ select (p_grant_amount * (100 - p_threshold)) / 100 $$;

revoke all on function private.alert_level(bigint, smallint) from public;
comment on function private.alert_level(bigint, smallint) is 'Balance at which p_threshold % of a grant of p_grant_amount is used. Internal.';

-- BEFORE UPDATE on the balance: records every threshold the new balance crossed and moves the
-- marker to the next one, in the same row version (no extra write).
create function private.record_low_balance_alerts()
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
      on conflict (org_id, grant_id, threshold) do nothing;
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
  'Trigger on credit_balances: one outbox event per usage threshold (50/75/90/100 % of the last grant) crossed. Not callable.';

create trigger record_low_balance_alerts
before update of available on public.credit_balances
for each row
when (new.alert_threshold_next is not null
      and new.available < old.available
      and new.available <= (new.alert_grant_amount * (100 - new.alert_threshold_next)) / 100)
execute function private.record_low_balance_alerts();

-- A newly credited grant (not a refund) becomes the alerts' reference.
create function private.set_alert_reference()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.credit_balances
  set alert_grant_id = new.id, alert_grant_amount = new.amount, alert_threshold_next = 50
  where org_id = new.org_id;
  return null;
end
$$;

revoke all on function private.set_alert_reference() from public;
comment on function private.set_alert_reference() is 'Trigger on credit_grants: the last credited grant is the low-balance alerts'' reference. Not callable.';

create trigger set_alert_reference_on_insert
after insert on public.credit_grants
for each row
when (new.status = 'active' and new.source <> 'refund')
execute function private.set_alert_reference();

create trigger set_alert_reference_on_activation
after update of status on public.credit_grants
for each row
when (old.status = 'pending' and new.status = 'active')
execute function private.set_alert_reference();

-- RLS -------------------------------------------------------------------------------------------

alter table public.credit_alert_outbox enable row level security;
alter table public.org_alert_webhooks enable row level security;
revoke all on public.credit_alert_outbox, public.org_alert_webhooks from anon, authenticated, service_role;
grant select on public.credit_alert_outbox to authenticated, service_role;
grant select on public.org_alert_webhooks to service_role;

create policy credit_alert_outbox_select_members on public.credit_alert_outbox
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy org_alert_webhooks_no_user_access on public.org_alert_webhooks as restrictive
for all to anon, authenticated
using (false);

-- RPCs ------------------------------------------------------------------------------------------

-- Owners and admins set the org's alert webhook; the signing secret is returned once, here.
create function public.set_alert_webhook(p_url text, p_org_id uuid default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.require_org_admin(p_org_id);
  v_secret text := 'whsec_' || encode(extensions.gen_random_bytes(24), 'hex');
begin
  if p_url is null or p_url !~ '^https?://' or char_length(p_url) > 1000 then
    perform private.fail('invalid_url', '22023', jsonb_build_object('max_length', 1000), 'an http(s) URL');
  end if;
  insert into public.org_alert_webhooks (org_id, url, secret, updated_by)
  values (v_org_id, p_url, v_secret, (select auth.uid()))
  on conflict (org_id) do update set url = excluded.url, secret = excluded.secret, updated_by = excluded.updated_by, updated_at = now();
  return jsonb_build_object('org_id', v_org_id, 'url', p_url, 'secret', v_secret);
end
$$;

revoke all on function public.set_alert_webhook(text, uuid) from public;
grant execute on function public.set_alert_webhook(text, uuid) to authenticated;
comment on function public.set_alert_webhook(text, uuid) is
  'User RPC (owners/admins): set the org''s low-balance webhook; returns the new HMAC signing secret (shown once).';

-- The dispatcher leases due events for 60 s; events of orgs without a webhook are closed.
create function public.claim_credit_alerts(p_limit integer default 50)
returns table (id uuid, org_id uuid, payload jsonb, attempts integer, url text, secret text)
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_limit is null or p_limit not between 1 and 500 then
    perform private.fail('invalid_limit', '22023', jsonb_build_object('limit', p_limit, 'min', 1, 'max', 500));
  end if;
  update public.credit_alert_outbox o
  set status = 'no_webhook'
  where o.status = 'pending' and o.next_attempt_at <= now()
    and not exists (select 1 from public.org_alert_webhooks w where w.org_id = o.org_id);
  return query
  with leased as (
    update public.credit_alert_outbox o
    set attempts = o.attempts + 1, next_attempt_at = now() + interval '60 seconds'
    where o.id in (
      select d.id from public.credit_alert_outbox d
      where d.status = 'pending' and d.next_attempt_at <= now()
      order by d.next_attempt_at
      limit p_limit
      for update skip locked
    )
    returning o.id, o.org_id, o.payload, o.attempts
  )
  select l.id, l.org_id, l.payload, l.attempts, w.url, w.secret
  from leased l
  join public.org_alert_webhooks w on w.org_id = l.org_id;
end
$$;

revoke all on function public.claim_credit_alerts(integer) from public;
grant execute on function public.claim_credit_alerts(integer) to service_role;
comment on function public.claim_credit_alerts(integer) is 'Server RPC (alerts-dispatcher): lease due low-balance events for delivery.';

-- Delivered, or retried with exponential backoff (30 s, 1 min, 2 min, ... at most 1 h);
-- after 8 attempts the event is failed.
create function public.record_credit_alert_delivery(p_id uuid, p_delivered boolean, p_status_code integer default null, p_error text default null)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_status text;
begin
  update public.credit_alert_outbox
  set status = case when p_delivered then 'delivered' when attempts >= 8 then 'failed' else 'pending' end,
      delivered_at = case when p_delivered then now() end,
      next_attempt_at = case when p_delivered then next_attempt_at
                             else now() + least(interval '30 seconds' * power(2, attempts - 1), interval '1 hour') end,
      last_status_code = p_status_code,
      last_error = left(p_error, 1000)
  where id = p_id and status = 'pending'
  returning status into v_status;
  if v_status is null then
    perform private.fail('unknown_alert', 'PT404', jsonb_build_object('id', p_id), 'no pending alert with this id');
  end if;
  return v_status;
end
$$;

revoke all on function public.record_credit_alert_delivery(uuid, boolean, integer, text) from public;
grant execute on function public.record_credit_alert_delivery(uuid, boolean, integer, text) to service_role;
comment on function public.record_credit_alert_delivery(uuid, boolean, integer, text) is
  'Server RPC (alerts-dispatcher): record a delivery attempt; retries back off exponentially, 8 attempts at most.';
