-- Credit engine core: the private building blocks every money path is made of.
--
-- Callers are SECURITY DEFINER RPCs (next migration). The rules they follow:
--   1. lock the org's balance row first (private.lock_balance), then touch grants;
--   2. settle due grants (private.expire_due_grants) before reading `available`;
--   3. move money only through private.apply_balance_change, which writes the balance and its
--      ledger entry together — there is no other way to change a balance.
-- None of these functions is granted to an API role except where noted.

-- Errors ------------------------------------------------------------------------------------

-- Raises a documented error: message = stable snake_case key, detail = JSON with the numbers.
-- PostgREST turns SQLSTATE PTxyz into HTTP xyz. Granted to authenticated because SECURITY
-- INVOKER user RPCs raise through it too.
create function private.fail(p_key text, p_errcode text, p_detail jsonb default '{}', p_hint text default null)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_hint is null then
    raise exception using message = p_key, errcode = p_errcode, detail = coalesce(p_detail, '{}')::text;
  end if;
  raise exception using message = p_key, errcode = p_errcode, detail = coalesce(p_detail, '{}')::text, hint = p_hint;
end
$$;

revoke all on function private.fail(text, text, jsonb, text) from public;
grant execute on function private.fail(text, text, jsonb, text) to authenticated, service_role;
comment on function private.fail(text, text, jsonb, text) is
  'Raises a documented RPC error (key, SQLSTATE, JSON detail, hint). Used by every RPC.';

-- Who is calling, for which org ---------------------------------------------------------------

-- The org a user RPC acts on: p_org_id when the caller is a member of it, else the caller's
-- personal org. Definer so it can read memberships whatever RLS says; it reveals only the
-- caller's own memberships.
create function private.caller_org(p_org_id uuid)
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_org_id uuid;
begin
  if v_user_id is null then
    perform private.fail('forbidden', '42501', '{}', 'this RPC needs a signed-in user');
  end if;
  if p_org_id is null then
    select o.id into v_org_id from public.orgs o where o.personal_user_id = v_user_id;
    if v_org_id is null then
      perform private.fail('unknown_org', 'PT404', '{}', 'the caller has no personal org: pass p_org_id');
    end if;
    return v_org_id;
  end if;
  if not exists (select 1 from public.org_members m where m.org_id = p_org_id and m.user_id = v_user_id) then
    perform private.fail('not_a_member', '42501', jsonb_build_object('org_id', p_org_id), 'the caller is not a member of this org');
  end if;
  return p_org_id;
end
$$;

revoke all on function private.caller_org(uuid) from public;
grant execute on function private.caller_org(uuid) to authenticated;
comment on function private.caller_org(uuid) is
  'User RPCs: resolves p_org_id (membership checked) or the caller''s personal org. Called by authenticated through RPCs.';

-- Validation helpers --------------------------------------------------------------------------

create function private.check_metadata(p_metadata jsonb, p_key text default 'invalid_metadata')
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_metadata is null then
    return '{}';
  end if;
  if jsonb_typeof(p_metadata) <> 'object' or octet_length(p_metadata::text) > 8192 then
    perform private.fail(p_key, '22023', jsonb_build_object('max_bytes', 8192), 'pass a JSON object of at most 8 KiB');
  end if;
  return p_metadata;
end
$$;

revoke all on function private.check_metadata(jsonb, text) from public;
grant execute on function private.check_metadata(jsonb, text) to authenticated;
comment on function private.check_metadata(jsonb, text) is 'Validates a caller-supplied JSON object (object, at most 8 KiB).';

create function private.check_request_id(p_request_id text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_request_id is null or char_length(p_request_id) not between 1 and 200 then
    perform private.fail('invalid_request_id', '22023', jsonb_build_object('max_length', 200), 'pass a non-empty request id of at most 200 characters');
  end if;
end
$$;

revoke all on function private.check_request_id(text) from public;
comment on function private.check_request_id(text) is 'Validates an idempotency key.';

-- Locking and money movement --------------------------------------------------------------------

-- Step 1 of every money path: lock the org's balance row. Unknown org → PT404.
create function private.lock_balance(p_org_id uuid)
returns public.credit_balances
language plpgsql
set search_path = ''
as $$
declare
  v_balance public.credit_balances;
begin
  select * into v_balance from public.credit_balances b where b.org_id = p_org_id for update;
  if not found then
    perform private.fail('unknown_org', 'PT404', jsonb_build_object('org_id', p_org_id));
  end if;
  return v_balance;
end
$$;

revoke all on function private.lock_balance(uuid) from public;
comment on function private.lock_balance(uuid) is 'Locks and returns an org''s balance row (lock order: balance first). Internal.';

-- The only way a balance changes: update the (locked) row and append its ledger entry.
create function private.apply_balance_change(
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

revoke all on function private.apply_balance_change(uuid, text, bigint, bigint, text, uuid, jsonb) from public;
comment on function private.apply_balance_change(uuid, text, bigint, bigint, text, uuid, jsonb) is
  'Changes a locked balance and appends the matching ledger entry in one step. Internal.';

-- Step 2: expire the org's grants that are past expires_at (the balance row must be locked).
-- The cron job does this for everyone every minute; doing it here too means a charge never
-- spends, and a balance never shows, credits that have already expired.
create function private.expire_due_grants(p_org_id uuid)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_grant record;
  v_count integer := 0;
begin
  for v_grant in
    select g.id, g.remaining
    from public.credit_grants g
    where g.org_id = p_org_id and g.status = 'active' and g.expires_at <= now()
    order by g.expires_at, g.id
    for update
  loop
    update public.credit_grants
    set status = 'expired', expired_amount = expired_amount + v_grant.remaining, remaining = 0, expired_at = now()
    where id = v_grant.id;
    if v_grant.remaining > 0 then
      perform private.apply_balance_change(p_org_id, 'expire', -v_grant.remaining, 0, null, v_grant.id, '{}');
    end if;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

revoke all on function private.expire_due_grants(uuid) from public;
comment on function private.expire_due_grants(uuid) is 'Expires an org''s due grants (balance row locked by the caller). Internal.';

-- Takes p_amount from the org's active grants in burn-down order (priority, soonest expiry,
-- oldest) and returns where it came from: [{"grant_id", "amount"}]. A grant met on the way
-- that is already past expires_at is expired here instead of spent (the cron job may not have
-- reached it yet); if that leaves too little, the charge fails with insufficient_credits and
-- everything, the expiry included, rolls back. The caller holds the balance lock and has
-- checked that `available` (which still counts due grants) covers p_amount.
create function private.burn_grants(p_org_id uuid, p_amount bigint)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_left bigint := p_amount;
  v_take bigint;
  v_expired bigint := 0;
  v_allocations jsonb := '[]';
  v_grant record;
begin
  if p_amount = 0 then
    return v_allocations;
  end if;
  for v_grant in
    select g.id, g.remaining, g.expires_at <= now() as due
    from public.credit_grants g
    where g.org_id = p_org_id and g.status = 'active' and g.remaining > 0
    order by g.priority, g.expires_at, g.created_at, g.id
    for update
  loop
    if v_grant.due then
      update public.credit_grants
      set status = 'expired', expired_amount = expired_amount + v_grant.remaining, remaining = 0, expired_at = now()
      where id = v_grant.id;
      perform private.apply_balance_change(p_org_id, 'expire', -v_grant.remaining, 0, null, v_grant.id, '{}');
      v_expired := v_expired + v_grant.remaining;
      continue;
    end if;
    v_take := least(v_grant.remaining, v_left);
    update public.credit_grants set remaining = remaining - v_take where id = v_grant.id;
    v_allocations := v_allocations || jsonb_build_object('grant_id', v_grant.id, 'amount', v_take);
    v_left := v_left - v_take;
    exit when v_left = 0;
  end loop;
  if v_left > 0 and v_expired > 0 then
    perform private.fail('insufficient_credits', 'PT402',
      jsonb_build_object('required', p_amount, 'available', p_amount - v_left),
      'top up credits or lower the quantity');
  end if;
  if v_left > 0 then
    -- available said yes but the grants cannot cover it: an invariant is broken. Refuse rather
    -- than overdraw; reconcile_credits() reports the org.
    perform private.fail('balance_out_of_sync', 'XX000', jsonb_build_object('org_id', p_org_id, 'missing', v_left),
      'available exceeds the grants'' remaining credits; run reconcile_credits()');
  end if;
  return v_allocations;
end
$$;

revoke all on function private.burn_grants(uuid, bigint) from public;
comment on function private.burn_grants(uuid, bigint) is 'Burns credits from grants in burn-down order; returns the allocations. Internal.';

-- Gives p_amount back to the grants a request drew from, newest allocation first (so what stays
-- charged is what burned first). A grant that has expired meanwhile takes nothing back: those
-- credits are recorded on it as expired_amount and reported as returned_expired, and the
-- caller decides their fate (a released hold lets them expire; a refund re-grants them).
-- The balance row must be locked and due grants settled by the caller.
create function private.return_to_grants(
  p_allocations jsonb,
  p_amount bigint,
  out allocations jsonb,
  out returned_live bigint,
  out returned_expired bigint
)
language plpgsql
set search_path = ''
as $$
declare
  v_left bigint := p_amount;
  v_give bigint;
  v_live boolean;
  v_kept jsonb := '[]';
  v_piece record;
begin
  returned_live := 0;
  returned_expired := 0;
  for v_piece in
    select (a.value ->> 'grant_id')::uuid as grant_id, (a.value ->> 'amount')::bigint as amount, a.ordinality as ord
    from jsonb_array_elements(p_allocations) with ordinality a
    order by a.ordinality desc
  loop
    v_give := least(v_piece.amount, v_left);
    if v_give > 0 then
      select g.status = 'active' into v_live from public.credit_grants g where g.id = v_piece.grant_id for update;
      if v_live then
        update public.credit_grants set remaining = remaining + v_give where id = v_piece.grant_id;
        returned_live := returned_live + v_give;
      else
        update public.credit_grants set expired_amount = expired_amount + v_give where id = v_piece.grant_id;
        returned_expired := returned_expired + v_give;
      end if;
      v_left := v_left - v_give;
    end if;
    if v_piece.amount > v_give then
      v_kept := v_kept || jsonb_build_object('grant_id', v_piece.grant_id, 'amount', v_piece.amount - v_give, 'ord', v_piece.ord);
    end if;
  end loop;
  if v_left > 0 then
    perform private.fail('allocation_out_of_sync', 'XX000', jsonb_build_object('missing', v_left),
      'the request''s allocations cannot cover the amount returned; run reconcile_credits()');
  end if;
  allocations := coalesce(
    (select jsonb_agg(k.value - 'ord' order by (k.value ->> 'ord')::int) from jsonb_array_elements(v_kept) k),
    '[]'
  );
end
$$;

revoke all on function private.return_to_grants(jsonb, bigint) from public;
comment on function private.return_to_grants(jsonb, bigint) is
  'Returns credits to the grants a request drew from (newest allocation first). Internal.';
