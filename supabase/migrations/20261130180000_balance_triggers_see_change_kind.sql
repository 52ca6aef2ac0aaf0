-- The balance triggers see what kind of change fired them.
--
-- The one function that changes balances records the ledger kind it is writing in a
-- transaction-local setting (tollgate.balance_change_kind) just before the update. The auto
-- top-up trigger (private.queue_auto_topup) reads it so that a revocation (credits taken back
-- for a refunded or disputed payment) never charges the same customer's card again.

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
