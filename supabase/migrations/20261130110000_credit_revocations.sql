-- Revocations: an audited debit that takes credits back (a refunded or disputed payment,
-- fraud), never below zero. revoke_credits() is the one way credits are taken back; the Stripe
-- webhook's refund and dispute handling (next migration) calls the same function.
--
-- Money model additions:
--   credit_grants.revoked_amount  credits taken back from the grant (like expired_amount), so a
--                                 grant's used credits stay exactly what requests hold of it:
--                                 amount - remaining - expired_amount - revoked_amount = allocations
--   credit_revocations           one row per (org, external_ref): the idempotency record and the
--                                 answer a replay returns
--   ledger kinds 'revoke' (credits taken back) and 'reinstate' (a revocation withdrawn, e.g. a
--                                 dispute the merchant won)
-- Lock order as everywhere: the balance row first, then grants.

-- Grants: what was taken back -------------------------------------------------------------------

alter table public.credit_grants
  add column revoked_amount bigint not null default 0 check (revoked_amount >= 0);

-- What a grant has given away (to requests) is never negative: checked on every write, as
-- reconcile_credits() checks it daily. NOT VALID + VALIDATE: existing rows are checked without
-- blocking writers for the scan.
alter table public.credit_grants
  add constraint credit_grants_used_not_negative check (remaining + expired_amount + revoked_amount <= amount) not valid;
alter table public.credit_grants validate constraint credit_grants_used_not_negative;

comment on column public.credit_grants.revoked_amount is
  'Credits taken back from this grant by revoke_credits() (net of reinstatements).';

-- Ledger: two new kinds ---------------------------------------------------------------------------

alter table public.credit_ledger drop constraint credit_ledger_kind_check;
alter table public.credit_ledger
  add constraint credit_ledger_kind_check
  check (kind in ('grant', 'charge', 'hold', 'capture', 'release', 'refund', 'expire', 'adjustment', 'revoke', 'reinstate')) not valid;
alter table public.credit_ledger validate constraint credit_ledger_kind_check;

-- Revocations ---------------------------------------------------------------------------------------

create table public.credit_revocations (
  org_id uuid not null references public.orgs (id),
  -- The caller's idempotency key (a refund id, a case number...): one revocation per (org, ref).
  external_ref text not null check (char_length(external_ref) between 1 and 200),
  -- What was asked for; revoked + shortfall = amount.
  amount bigint not null check (amount between 1 and 1000000000000),
  -- The grant named by the caller (credits come from it only), or null: burn-down order.
  grant_id uuid references public.credit_grants (id),
  reason text not null check (char_length(reason) between 1 and 500),
  revoked bigint not null check (revoked >= 0),
  -- The part that could not be taken back: already spent, held, expired or never there.
  shortfall bigint not null check (shortfall >= 0),
  -- Where the revoked credits came from: [{"grant_id", "amount"}] in the order taken.
  allocations jsonb not null default '[]' check (jsonb_typeof(allocations) = 'array'),
  balance_after bigint not null check (balance_after >= 0),
  actor_user_id uuid,
  actor_role text not null,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  primary key (org_id, external_ref),
  check (revoked + shortfall = amount)
);

create index credit_revocations_grant_idx on public.credit_revocations (grant_id) where grant_id is not null;

comment on table public.credit_revocations is
  'One row per revoke_credits() (org, external_ref): what was asked, what was taken back (revoked), what could not be (shortfall), from which grants.';

alter table public.credit_revocations enable row level security;
revoke all on public.credit_revocations from anon, authenticated, service_role;
grant select on public.credit_revocations to authenticated, service_role;

-- Members see why credits were taken back from their org, as they see the ledger.
create policy credit_revocations_select_members on public.credit_revocations
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

-- What revoke_credits answers, first time and on replay.
create function private.revocation_result(p_revocation public.credit_revocations, p_replayed boolean)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
  return jsonb_build_object(
    'org_id', p_revocation.org_id,
    'external_ref', p_revocation.external_ref,
    'amount', p_revocation.amount,
    'grant_id', p_revocation.grant_id,
    'revoked', p_revocation.revoked,
    'shortfall', p_revocation.shortfall,
    'allocations', p_revocation.allocations,
    'balance_after', p_revocation.balance_after,
    'replayed', p_replayed
  );
end
$$;

revoke all on function private.revocation_result(public.credit_revocations, boolean) from public;
comment on function private.revocation_result(public.credit_revocations, boolean) is 'JSON answer for a revocation. Internal.';

-- Takes up to p_amount credits back from an org, once per (org, external_ref): from p_grant_id
-- only when given, else in burn-down order (private.burn_grants, the charge's own rule). Takes
-- what is spendable and reports the rest as shortfall: never below zero, and credits on hold are
-- not taken. The caller has validated the inputs and holds the org's balance lock; grants are
-- locked here, after it. Internal: public.revoke_credits and the Stripe payment settlement.
create function private.revoke_credits(
  p_org_id uuid,
  p_amount bigint,
  p_reason text,
  p_external_ref text,
  p_grant_id uuid,
  p_metadata jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_revocation public.credit_revocations;
  v_grant public.credit_grants;
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  v_allocations jsonb := '[]';
  v_available bigint;
  v_take bigint;
  v_revoked bigint := 0;
  v_piece record;
begin
  -- Idempotency, under the balance lock: a concurrent twin has committed (we replay it) or has
  -- not started (it will replay us).
  select * into v_revocation from public.credit_revocations r where r.org_id = p_org_id and r.external_ref = p_external_ref;
  if found then
    if v_revocation.amount <> p_amount or v_revocation.grant_id is distinct from p_grant_id then
      perform private.fail('idempotency_conflict', 'PT409',
        jsonb_build_object('external_ref', p_external_ref, 'amount', v_revocation.amount, 'grant_id', v_revocation.grant_id),
        'this external reference was revoked with another amount or grant: use a new reference');
    end if;
    return private.revocation_result(v_revocation, true);
  end if;

  if p_grant_id is not null and not exists (select 1 from public.credit_grants g where g.id = p_grant_id and g.org_id = p_org_id) then
    perform private.fail('unknown_grant', 'PT404', jsonb_build_object('grant_id', p_grant_id, 'org_id', p_org_id));
  end if;

  -- Credits past their expiry are not there to take back.
  perform private.expire_due_grants(p_org_id);
  select b.available into v_available from public.credit_balances b where b.org_id = p_org_id;

  if p_grant_id is null then
    v_allocations := private.burn_grants(p_org_id, least(p_amount, v_available));
  else
    select * into v_grant from public.credit_grants g where g.id = p_grant_id for update;
    v_take := case when v_grant.status = 'active' then least(p_amount, v_grant.remaining) else 0 end;
    if v_take > 0 then
      update public.credit_grants set remaining = remaining - v_take where id = p_grant_id;
      v_allocations := jsonb_build_array(jsonb_build_object('grant_id', p_grant_id, 'amount', v_take));
    end if;
  end if;

  -- One ledger entry per grant, naming it: the grant's history shows what was taken back.
  for v_piece in
    select (a.value ->> 'grant_id')::uuid as grant_id, (a.value ->> 'amount')::bigint as amount
    from jsonb_array_elements(v_allocations) with ordinality a
    order by a.ordinality
  loop
    update public.credit_grants set revoked_amount = revoked_amount + v_piece.amount where id = v_piece.grant_id;
    perform private.apply_balance_change(p_org_id, 'revoke', -v_piece.amount, 0, null, v_piece.grant_id,
      coalesce(p_metadata, '{}') || jsonb_build_object('external_ref', p_external_ref, 'reason', p_reason));
    v_revoked := v_revoked + v_piece.amount;
  end loop;

  insert into public.credit_revocations (
    org_id, external_ref, amount, grant_id, reason, revoked, shortfall, allocations, balance_after,
    actor_user_id, actor_role, metadata
  ) values (
    p_org_id, p_external_ref, p_amount, p_grant_id, p_reason, v_revoked, p_amount - v_revoked, v_allocations,
    (select b.available from public.credit_balances b where b.org_id = p_org_id),
    (v_claims ->> 'sub')::uuid, coalesce(v_claims ->> 'role', 'system'), coalesce(p_metadata, '{}')
  )
  returning * into v_revocation;
  return private.revocation_result(v_revocation, false);
end
$$;

revoke all on function private.revoke_credits(uuid, bigint, text, text, uuid, jsonb) from public;
comment on function private.revoke_credits(uuid, bigint, text, text, uuid, jsonb) is
  'Takes credits back once per (org, external_ref), from one grant or in burn-down order, never below zero. Balance locked by the caller. Internal.';

-- The service-role debit: payment refunds, disputes, fraud. Definer: service_role may not
-- write the credit tables directly; every balance change goes through the core.
create function public.revoke_credits(
  p_org_id uuid,
  p_amount bigint,
  p_reason text,
  p_external_ref text,
  p_grant_id uuid default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_amount is null or p_amount not between 1 and 1000000000000 then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('amount', p_amount, 'min', 1, 'max', 1000000000000));
  end if;
  if p_reason is null or char_length(btrim(p_reason)) = 0 or char_length(p_reason) > 500 then
    perform private.fail('invalid_reason', '22023', jsonb_build_object('max_length', 500), 'say why the credits are taken back');
  end if;
  if p_external_ref is null or char_length(p_external_ref) not between 1 and 200 then
    perform private.fail('invalid_external_ref', '22023', jsonb_build_object('max_length', 200),
      'pass the reference that makes this revocation idempotent (a refund id, a case number)');
  end if;
  perform private.lock_balance(p_org_id);
  return private.revoke_credits(p_org_id, p_amount, p_reason, p_external_ref, p_grant_id, '{}');
end
$$;

revoke all on function public.revoke_credits(uuid, bigint, text, text, uuid) from public;
grant execute on function public.revoke_credits(uuid, bigint, text, text, uuid) to service_role;
comment on function public.revoke_credits(uuid, bigint, text, text, uuid) is
  'Server RPC: take up to p_amount credits back (from p_grant_id, else in burn-down order), never below zero; idempotent on (org, external_ref) → {revoked, shortfall, balance_after, replayed, ...}. Errors: invalid_amount / invalid_reason / invalid_external_ref 22023, unknown_org / unknown_grant PT404, idempotency_conflict PT409.';

-- Gives back p_amount credits a revocation took from a grant (the revocation was withdrawn, e.g.
-- a dispute the merchant won). A grant that expired meanwhile takes them as expired, as a
-- release does: an expired grant is never brought back to life. Returns the credits made
-- spendable again. The caller holds the balance lock and has expired the org's due grants.
create function private.reinstate_revoked(p_org_id uuid, p_grant_id uuid, p_amount bigint, p_metadata jsonb)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_grant public.credit_grants;
begin
  select * into v_grant from public.credit_grants g where g.id = p_grant_id and g.org_id = p_org_id for update;
  if not found or v_grant.revoked_amount < p_amount then
    perform private.fail('allocation_out_of_sync', 'XX000',
      jsonb_build_object('grant_id', p_grant_id, 'reinstate', p_amount, 'revoked_amount', v_grant.revoked_amount),
      'the grant has not had this many credits revoked; run reconcile_credits()');
  end if;
  if v_grant.status = 'active' then
    update public.credit_grants set remaining = remaining + p_amount, revoked_amount = revoked_amount - p_amount where id = p_grant_id;
    perform private.apply_balance_change(p_org_id, 'reinstate', p_amount, 0, null, p_grant_id, coalesce(p_metadata, '{}'));
    return p_amount;
  end if;
  update public.credit_grants set revoked_amount = revoked_amount - p_amount, expired_amount = expired_amount + p_amount where id = p_grant_id;
  return 0;
end
$$;

revoke all on function private.reinstate_revoked(uuid, uuid, bigint, jsonb) from public;
comment on function private.reinstate_revoked(uuid, uuid, bigint, jsonb) is
  'Gives revoked credits back to their grant (or lets them expire with it). Balance locked by the caller. Internal.';
