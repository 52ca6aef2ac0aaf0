-- Payments and auto top-up (seed 002).
--
-- Purchases arrive through the stripe-webhook function as grants (source 'purchase', the
-- checkout session id as external_ref; asynchronous payments as pending grants activated or
-- voided later). Auto top-up: when a charge takes an org's balance below its threshold, the
-- same transaction queues exactly one top-up request; the topup-processor function charges
-- the org's saved payment method off-session, and the webhook grants the credits (source
-- 'auto_top_up', the payment intent id as external_ref) when the payment succeeds.

-- Settings --------------------------------------------------------------------------------------

create table public.credit_auto_topup_settings (
  org_id uuid primary key references public.orgs (id),
  enabled boolean not null default false,
  -- Top up when available falls below this many credits...
  threshold bigint not null check (threshold between 1 and 1000000000000),
  -- ...by this many credits...
  amount bigint not null check (amount between 1 and 1000000000000),
  -- ...at most this many credits per calendar month (UTC).
  monthly_cap bigint not null check (monthly_cap between 1 and 1000000000000),
  updated_by uuid,
  updated_at timestamptz not null default now(),
  check (amount <= monthly_cap)
);

-- Saved payment method for off-session charges, set by the app's server after a checkout in
-- setup mode. service_role only.
create table public.org_billing (
  org_id uuid primary key references public.orgs (id),
  stripe_customer_id text not null check (stripe_customer_id ~ '^cus_[A-Za-z0-9_]+$'),
  stripe_payment_method_id text check (stripe_payment_method_id ~ '^pm_[A-Za-z0-9_]+$'),
  updated_at timestamptz not null default now()
);

-- The balance row carries the enabled threshold, so the trigger below fires only on the one
-- update that crosses it: charges that do not cross pay nothing for auto top-up.
alter table public.credit_balances add column auto_topup_threshold bigint check (auto_topup_threshold > 0);

-- Requests --------------------------------------------------------------------------------------

create table public.credit_topup_requests (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id),
  amount bigint not null check (amount > 0),
  -- pending: queued by the crossing; processing: claimed by the processor; submitted: payment
  -- intent created; succeeded: credits granted; failed: payment failed (see error).
  status text not null default 'pending' check (status in ('pending', 'processing', 'submitted', 'succeeded', 'failed')),
  payment_intent_id text,
  grant_id uuid references public.credit_grants (id),
  error text check (char_length(error) <= 1000),
  attempts integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Never two at once: one open request per org.
create unique index credit_topup_requests_one_open on public.credit_topup_requests (org_id)
  where status in ('pending', 'processing', 'submitted');
create index credit_topup_requests_org_created_idx on public.credit_topup_requests (org_id, created_at);
create index credit_topup_requests_pending_idx on public.credit_topup_requests (created_at) where status = 'pending';
create index credit_topup_requests_grant_idx on public.credit_topup_requests (grant_id);

-- Queues a top-up in the charge's own transaction when available crosses below the threshold.
create function private.queue_auto_topup()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settings public.credit_auto_topup_settings;
  v_this_month bigint;
begin
  select * into v_settings from public.credit_auto_topup_settings s where s.org_id = new.org_id and s.enabled;
  if not found then
    return null;
  end if;
  select coalesce(sum(r.amount), 0) into v_this_month
  from public.credit_topup_requests r
  where r.org_id = new.org_id and r.status <> 'failed' and r.created_at >= date_trunc('month', now() at time zone 'utc') at time zone 'utc';
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
  'Trigger on credit_balances: one pending top-up when available crosses below the org''s threshold, within the monthly cap. Not callable.';

create trigger queue_auto_topup
after update of available on public.credit_balances
for each row
when (new.auto_topup_threshold is not null and old.available >= new.auto_topup_threshold and new.available < new.auto_topup_threshold)
execute function private.queue_auto_topup();

-- RLS -------------------------------------------------------------------------------------------

alter table public.credit_auto_topup_settings enable row level security;
alter table public.org_billing enable row level security;
alter table public.credit_topup_requests enable row level security;

revoke all on public.credit_auto_topup_settings, public.org_billing, public.credit_topup_requests from anon, authenticated, service_role;
grant select on public.credit_auto_topup_settings, public.credit_topup_requests to authenticated, service_role;
grant select on public.org_billing to service_role;

create policy credit_auto_topup_settings_select_members on public.credit_auto_topup_settings
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy credit_topup_requests_select_members on public.credit_topup_requests
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy org_billing_no_user_access on public.org_billing as restrictive
for all to anon, authenticated
using (false);

-- RPCs ------------------------------------------------------------------------------------------

-- Owners and admins read and change their org's auto top-up settings.
create function private.require_org_admin(p_org_id uuid)
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.caller_org(p_org_id);
begin
  if not exists (
    select 1 from public.org_members m
    where m.org_id = v_org_id and m.user_id = (select auth.uid()) and m.role in ('owner', 'admin')
  ) then
    perform private.fail('forbidden', '42501', jsonb_build_object('org_id', v_org_id), 'only owners and admins of the org may do this');
  end if;
  return v_org_id;
end
$$;

revoke all on function private.require_org_admin(uuid) from public;
comment on function private.require_org_admin(uuid) is 'User RPCs: the caller''s org (as caller_org) when they are its owner or admin; 42501 forbidden otherwise. Internal.';

create function public.get_auto_topup(p_org_id uuid default null)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.caller_org(p_org_id);
  v_settings public.credit_auto_topup_settings;
begin
  select * into v_settings from public.credit_auto_topup_settings s where s.org_id = v_org_id;
  return jsonb_build_object(
    'org_id', v_org_id,
    'enabled', coalesce(v_settings.enabled, false),
    'threshold', v_settings.threshold,
    'amount', v_settings.amount,
    'monthly_cap', v_settings.monthly_cap,
    'payment_method_on_file', exists (select 1 from public.org_billing b where b.org_id = v_org_id and b.stripe_payment_method_id is not null)
  );
end
$$;

revoke all on function public.get_auto_topup(uuid) from public;
grant execute on function public.get_auto_topup(uuid) to authenticated;
comment on function public.get_auto_topup(uuid) is 'User RPC: the org''s auto top-up settings (any member may read).';

-- Definer: settings and the balance row's threshold change together, under the balance lock.
create function public.set_auto_topup(
  p_enabled boolean,
  p_threshold bigint,
  p_amount bigint,
  p_monthly_cap bigint,
  p_org_id uuid default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.require_org_admin(p_org_id);
begin
  if p_enabled is null then
    perform private.fail('invalid_enabled', '22023', '{}', 'p_enabled is true or false');
  end if;
  if p_threshold is null or p_threshold not between 1 and 1000000000000 then
    perform private.fail('invalid_threshold', '22023', jsonb_build_object('threshold', p_threshold, 'min', 1, 'max', 1000000000000));
  end if;
  if p_amount is null or p_amount not between 1 and 1000000000000 then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('amount', p_amount, 'min', 1, 'max', 1000000000000));
  end if;
  if p_monthly_cap is null or p_monthly_cap not between p_amount and 1000000000000 then
    perform private.fail('invalid_monthly_cap', '22023', jsonb_build_object('monthly_cap', p_monthly_cap, 'min', p_amount), 'the monthly cap must allow at least one top-up');
  end if;
  perform private.lock_balance(v_org_id);
  insert into public.credit_auto_topup_settings (org_id, enabled, threshold, amount, monthly_cap, updated_by)
  values (v_org_id, p_enabled, p_threshold, p_amount, p_monthly_cap, (select auth.uid()))
  on conflict (org_id) do update
  set enabled = excluded.enabled, threshold = excluded.threshold, amount = excluded.amount,
      monthly_cap = excluded.monthly_cap, updated_by = excluded.updated_by, updated_at = now();
  update public.credit_balances set auto_topup_threshold = case when p_enabled then p_threshold end where org_id = v_org_id;
  return public.get_auto_topup(v_org_id);
end
$$;

revoke all on function public.set_auto_topup(boolean, bigint, bigint, bigint, uuid) from public;
grant execute on function public.set_auto_topup(boolean, bigint, bigint, bigint, uuid) to authenticated;
comment on function public.set_auto_topup(boolean, bigint, bigint, bigint, uuid) is
  'User RPC (owners/admins): set the org''s auto top-up (threshold, amount, monthly cap). Errors: forbidden 42501, invalid_* 22023.';

-- The app's server records the customer and saved payment method for off-session charges.
create function public.set_org_billing(p_org_id uuid, p_stripe_customer_id text, p_stripe_payment_method_id text default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_stripe_customer_id is null or p_stripe_customer_id !~ '^cus_[A-Za-z0-9_]+$' then
    perform private.fail('invalid_customer', '22023', '{}', 'a Stripe customer id (cus_...)');
  end if;
  if p_stripe_payment_method_id is not null and p_stripe_payment_method_id !~ '^pm_[A-Za-z0-9_]+$' then
    perform private.fail('invalid_payment_method', '22023', '{}', 'a Stripe payment method id (pm_...)');
  end if;
  if not exists (select 1 from public.orgs o where o.id = p_org_id) then
    perform private.fail('unknown_org', 'PT404', jsonb_build_object('org_id', p_org_id));
  end if;
  insert into public.org_billing (org_id, stripe_customer_id, stripe_payment_method_id)
  values (p_org_id, p_stripe_customer_id, p_stripe_payment_method_id)
  on conflict (org_id) do update
  set stripe_customer_id = excluded.stripe_customer_id, stripe_payment_method_id = excluded.stripe_payment_method_id, updated_at = now();
end
$$;

revoke all on function public.set_org_billing(uuid, text, text) from public;
grant execute on function public.set_org_billing(uuid, text, text) to service_role;
comment on function public.set_org_billing(uuid, text, text) is 'Server RPC: the org''s Stripe customer and saved payment method.';

-- The processor claims pending requests (skipping ones another processor holds) with what it
-- needs to charge them. Requests of orgs without a saved payment method fail at once.
create function public.claim_topup_requests(p_limit integer default 10)
returns table (id uuid, org_id uuid, amount bigint, stripe_customer_id text, stripe_payment_method_id text)
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_limit is null or p_limit not between 1 and 100 then
    perform private.fail('invalid_limit', '22023', jsonb_build_object('limit', p_limit, 'min', 1, 'max', 100));
  end if;
  update public.credit_topup_requests r
  set status = 'failed', error = 'no payment method on file', updated_at = now()
  where r.status = 'pending'
    and not exists (select 1 from public.org_billing b where b.org_id = r.org_id and b.stripe_payment_method_id is not null);
  return query
  with claimed as (
    update public.credit_topup_requests r
    set status = 'processing', attempts = r.attempts + 1, updated_at = now()
    where r.id in (
      select p.id from public.credit_topup_requests p
      where p.status = 'pending'
      order by p.created_at
      limit p_limit
      for update skip locked
    )
    returning r.id, r.org_id, r.amount
  )
  select c.id, c.org_id, c.amount, b.stripe_customer_id, b.stripe_payment_method_id
  from claimed c
  join public.org_billing b on b.org_id = c.org_id;
end
$$;

revoke all on function public.claim_topup_requests(integer) from public;
grant execute on function public.claim_topup_requests(integer) to service_role;
comment on function public.claim_topup_requests(integer) is 'Server RPC (topup-processor): claim pending top-up requests.';

-- The processor reports what Stripe said: submitted (with the payment intent) or failed.
create function public.mark_topup_request(p_id uuid, p_status text, p_payment_intent_id text default null, p_error text default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_status not in ('submitted', 'failed') then
    perform private.fail('invalid_status', '22023', jsonb_build_object('status', p_status), 'submitted or failed');
  end if;
  update public.credit_topup_requests
  set status = p_status, payment_intent_id = coalesce(p_payment_intent_id, payment_intent_id), error = left(p_error, 1000), updated_at = now()
  where id = p_id and status = 'processing';
  if not found then
    perform private.fail('unknown_request', 'PT404', jsonb_build_object('id', p_id), 'no top-up request in processing with this id');
  end if;
end
$$;

revoke all on function public.mark_topup_request(uuid, text, text, text) from public;
grant execute on function public.mark_topup_request(uuid, text, text, text) to service_role;
comment on function public.mark_topup_request(uuid, text, text, text) is 'Server RPC (topup-processor): record the payment attempt of a claimed request.';

-- The webhook: the payment intent of a top-up succeeded (grant once) or failed.
create function public.complete_topup_request(p_id uuid, p_payment_intent_id text, p_succeeded boolean, p_error text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_request public.credit_topup_requests;
  v_grant jsonb;
begin
  select * into v_request from public.credit_topup_requests r where r.id = p_id;
  if not found then
    perform private.fail('unknown_request', 'PT404', jsonb_build_object('id', p_id));
  end if;
  perform private.lock_balance(v_request.org_id);
  select * into v_request from public.credit_topup_requests r where r.id = p_id for update;
  if v_request.status = 'succeeded' or (v_request.status = 'failed' and not p_succeeded) then
    return jsonb_build_object('id', p_id, 'status', v_request.status, 'replayed', true);
  end if;
  if p_succeeded then
    v_grant := private.insert_grant(v_request.org_id, v_request.amount, 'auto_top_up', p_payment_intent_id, null,
      jsonb_build_object('topup_request_id', p_id), 100, false);
    update public.credit_topup_requests
    set status = 'succeeded', payment_intent_id = p_payment_intent_id, grant_id = (v_grant ->> 'grant_id')::uuid, error = null, updated_at = now()
    where id = p_id;
  else
    update public.credit_topup_requests
    set status = 'failed', payment_intent_id = p_payment_intent_id, error = left(coalesce(p_error, 'payment failed'), 1000), updated_at = now()
    where id = p_id;
  end if;
  return jsonb_build_object('id', p_id, 'status', case when p_succeeded then 'succeeded' else 'failed' end, 'replayed', false, 'grant', v_grant);
end
$$;

revoke all on function public.complete_topup_request(uuid, text, boolean, text) from public;
grant execute on function public.complete_topup_request(uuid, text, boolean, text) to service_role;
comment on function public.complete_topup_request(uuid, text, boolean, text) is
  'Server RPC (stripe-webhook): a top-up payment succeeded (credits granted once, source auto_top_up) or failed.';
