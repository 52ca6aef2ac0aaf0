-- Credit engine: tables, invariants and row-level security.
--
-- Money model (integer credit units, never floats):
--   credit_grants    where credits come from; `remaining` burns down in a fixed order
--   credit_balances  one row per org: `available` (spendable) and `held` (reserved by holds)
--   credit_requests  one row per metered request: the idempotency key and the call record
--   credit_ledger    append-only history of every movement
-- Invariants (CHECKs here, re-verified by reconcile_credits() and the tests):
--   available = sum(remaining) of active grants = sum(ledger.amount)
--   held      = sum(reserved) of open holds      = sum(ledger.held_delta)
-- Every writer locks the org's balance row first, then grants in burn-down order.

-- Prices ------------------------------------------------------------------------------------

create table public.credit_prices (
  operation text primary key check (operation ~ '^[a-z][a-z0-9_.:-]{0,63}$'),
  credits bigint not null check (credits between 0 and 1000000000000),
  description text check (char_length(description) <= 500),
  active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.credit_prices is
  'Price list: credits per unit of an operation. Clients never send a price; RPCs read it here.';

-- Grants ------------------------------------------------------------------------------------

create table public.credit_grants (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id),
  amount bigint not null check (amount between 1 and 1000000000000),
  remaining bigint not null,
  -- purchase | promotion | onboarding | refund | adjustment | <your own lowercase word>
  source text not null check (source ~ '^[a-z][a-z0-9_]{0,31}$'),
  -- Payment/session id etc.: (org, source, external_ref) makes a grant idempotent.
  external_ref text check (char_length(external_ref) between 1 and 200),
  -- pending: awaiting payment confirmation, not spendable; active: spendable;
  -- expired: past expires_at (what was left is in expired_amount); voided: payment failed.
  status text not null default 'active' check (status in ('pending', 'active', 'expired', 'voided')),
  -- Burn-down order: lower priority first, then soonest expiry, then oldest.
  priority integer not null default 100 check (priority between 0 and 1000),
  expires_at timestamptz,
  expired_amount bigint not null default 0 check (expired_amount >= 0),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  -- Set when the grant was created pending (awaiting payment); kept after activation.
  pending_since timestamptz,
  activated_at timestamptz,
  expired_at timestamptz,
  check (remaining between 0 and amount),
  check (status <> 'pending' or pending_since is not null),
  check (status <> 'pending' or remaining = amount),
  check (status not in ('expired', 'voided') or remaining = 0),
  constraint credit_grants_idempotency unique (org_id, source, external_ref)
)
-- Room on each page so the charge's update of `remaining` (an unindexed column) stays HOT.
with (fillfactor = 80);

-- Burn-down scan: an org's active grants in burn order. `remaining` is deliberately not in the
-- index (not even its predicate), so burning credits is a HOT update that touches no index.
create index credit_grants_burn_idx on public.credit_grants (org_id, priority, expires_at, created_at, id)
  where status = 'active';
-- Expiry scan (cron) and due-grant probe (on charge).
create index credit_grants_due_idx on public.credit_grants (expires_at, org_id)
  where status = 'active' and expires_at is not null;

comment on table public.credit_grants is
  'Where credits come from (top-ups, promotions, onboarding, refunds). remaining burns down; expires_at is enforced by expire_credit_grants().';

-- Balances ----------------------------------------------------------------------------------

create table public.credit_balances (
  org_id uuid primary key references public.orgs (id),
  available bigint not null default 0 check (available >= 0),
  held bigint not null default 0 check (held >= 0),
  updated_at timestamptz not null default now()
)
-- Updated by every charge: half-empty pages keep those updates HOT.
with (fillfactor = 50);

comment on table public.credit_balances is
  'One row per org, changed in the same transaction as every ledger entry: O(1) balance reads.';

-- Requests ----------------------------------------------------------------------------------

create table public.credit_requests (
  org_id uuid not null references public.orgs (id),
  request_id text not null check (char_length(request_id) between 1 and 200),
  -- consume: charged at once; hold: reserved, then captured, released or expired.
  kind text not null check (kind in ('consume', 'hold')),
  -- No foreign keys on operation and user_id: a billing record must outlive a deleted user
  -- or a retired price (prices are deactivated, never deleted), and the hot path stays lean.
  operation text not null,
  quantity integer not null check (quantity between 1 and 1000000),
  unit_price bigint not null check (unit_price >= 0),
  reserved bigint not null default 0 check (reserved >= 0),
  charged bigint not null default 0 check (charged >= 0),
  refunded bigint not null default 0 check (refunded between 0 and charged),
  status text not null check (status in ('charged', 'held', 'captured', 'released', 'expired', 'refunded')),
  -- Which grants the credits came from: [{"grant_id": ..., "amount": n}] in burn order, net of
  -- credits given back. Refunds and releases return credits to exactly these grants.
  allocations jsonb not null default '[]' check (jsonb_typeof(allocations) = 'array'),
  user_id uuid,
  balance_before bigint not null,
  balance_after bigint not null,
  hold_expires_at timestamptz,
  -- Call record (seed 003): outcome of the metered operation.
  success boolean,
  backend_error boolean not null default false,
  error_code text check (char_length(error_code) <= 100),
  latency_ms integer check (latency_ms >= 0),
  backend_endpoint text check (char_length(backend_endpoint) <= 500),
  input_summary jsonb,
  output_summary jsonb,
  refund_reason text,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  refunded_at timestamptz,
  primary key (org_id, request_id),
  check (kind = 'hold' or reserved = 0),
  check (status <> 'held' or (kind = 'hold' and hold_expires_at is not null)),
  check (charged <= unit_price * quantity)
);

create index credit_requests_org_created_idx on public.credit_requests (org_id, created_at);
create index credit_requests_open_holds_idx on public.credit_requests (hold_expires_at) where status = 'held';

comment on table public.credit_requests is
  'One row per metered request, keyed (org_id, request_id): the idempotency record and the call record.';

-- Ledger ------------------------------------------------------------------------------------

create table public.credit_ledger (
  id bigint generated always as identity primary key,
  org_id uuid not null references public.orgs (id),
  kind text not null check (kind in ('grant', 'charge', 'hold', 'capture', 'release', 'refund', 'expire', 'adjustment')),
  -- Signed change of credit_balances.available, and of credit_balances.held.
  amount bigint not null,
  held_delta bigint not null default 0,
  balance_after bigint not null check (balance_after >= 0),
  held_after bigint not null check (held_after >= 0),
  request_id text,
  grant_id uuid references public.credit_grants (id),
  actor_user_id uuid,
  actor_role text not null,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now()
);

create index credit_ledger_org_idx on public.credit_ledger (org_id, id);
create index credit_ledger_request_idx on public.credit_ledger (org_id, request_id) where request_id is not null;
-- Only grant, expiry and refund entries name a grant: charges skip this index.
create index credit_ledger_grant_idx on public.credit_ledger (grant_id) where grant_id is not null;

comment on table public.credit_ledger is
  'Append-only: every grant, charge, hold, capture, release, refund, expiry and adjustment. sum(amount) = available; sum(held_delta) = held.';

-- Append-only even for the table owner: UPDATE, DELETE and TRUNCATE raise.
create function private.forbid_ledger_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'ledger_append_only'
    using errcode = '42501', hint = 'credit_ledger is append-only: correct a mistake with an adjustment entry';
end
$$;

revoke all on function private.forbid_ledger_change() from public;
comment on function private.forbid_ledger_change() is 'Trigger: keeps credit_ledger append-only. Not callable.';

create trigger credit_ledger_append_only
before update or delete on public.credit_ledger
for each row execute function private.forbid_ledger_change();

create trigger credit_ledger_no_truncate
before truncate on public.credit_ledger
for each statement execute function private.forbid_ledger_change();

-- One balance row per org, created with the org ------------------------------------------------

create function private.create_credit_balance()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.credit_balances (org_id) values (new.id) on conflict do nothing;
  return new;
end
$$;

revoke all on function private.create_credit_balance() from public;
comment on function private.create_credit_balance() is
  'Trigger on orgs: every org has its balance row, so every money path can lock it. Definer: orgs are created by the personal-org trigger too.';

create trigger create_credit_balance
after insert on public.orgs
for each row execute function private.create_credit_balance();

insert into public.credit_balances (org_id) select id from public.orgs on conflict do nothing;

-- The replicated gate flag follows the balance, in the same transaction -----------------------

-- Written only when it flips: no write, no WAL, no replication traffic otherwise.
create function private.sync_org_credit_flag()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.orgs
  set has_usage_credits = new.available > 0
  where id = new.org_id
    and has_usage_credits is distinct from (new.available > 0);
  return null;
end
$$;

revoke all on function private.sync_org_credit_flag() from public;
comment on function private.sync_org_credit_flag() is
  'Trigger on credit_balances: keeps orgs.has_usage_credits = (available > 0) in the same transaction, writing only on a flip.';

create trigger sync_org_credit_flag
after update of available on public.credit_balances
for each row
when ((old.available > 0) is distinct from (new.available > 0))
execute function private.sync_org_credit_flag();

-- Row-level security ------------------------------------------------------------------------
-- Users read their orgs' rows; nobody writes these tables directly through the API: every
-- write goes through an RPC. service_role reads everything (and manages prices).

alter table public.credit_prices enable row level security;
alter table public.credit_grants enable row level security;
alter table public.credit_balances enable row level security;
alter table public.credit_requests enable row level security;
alter table public.credit_ledger enable row level security;

revoke all on public.credit_prices, public.credit_grants, public.credit_balances, public.credit_requests, public.credit_ledger
  from anon, authenticated, service_role;
grant select on public.credit_prices, public.credit_grants, public.credit_balances, public.credit_requests, public.credit_ledger
  to authenticated, service_role;
-- Prices are managed by trusted servers; retired with active = false, never deleted.
grant insert, update on public.credit_prices to service_role;

create policy credit_prices_select_active on public.credit_prices
for select to authenticated
using (active);

create policy credit_grants_select_members on public.credit_grants
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy credit_balances_select_members on public.credit_balances
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy credit_requests_select_members on public.credit_requests
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy credit_ledger_select_members on public.credit_ledger
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

-- Belt and braces for the ledger: even a role granted UPDATE/DELETE later is refused by RLS.
create policy credit_ledger_no_update on public.credit_ledger as restrictive
for update to public
using (false);

create policy credit_ledger_no_delete on public.credit_ledger as restrictive
for delete to public
using (false);
