-- Charge path v2: less work under the balance lock, and one function per money rule.
--
-- What a plain charge (consume_credits) does now, in order:
--   before the lock   validate the request id, quantity and metadata; read the price; probe for
--                     a committed twin (a replay answers without taking the lock);
--   under the lock    lock the balance row (and see whether the org has grants past their expiry
--                     that no job has settled yet: if so, expire them first, so that a charge's
--                     figures never count expired credits); re-check for a twin that committed
--                     while we waited;
--                     take the credits from the head grant in one UPDATE (the burn-down loop only
--                     runs when the head grant cannot cover the charge);
--                     update the balance and append its ledger entry in one statement; insert the
--                     request row (the idempotency record and the call record).
-- Rows written per plain charge: the balance row and the head grant (both HOT updates), one
-- ledger row (primary key and per-org index), one request row (primary key and per-org index).
--
-- Side effects on the hot row: three triggers hang off credit_balances and run inside every
-- charge's balance update, each behind a WHEN clause so that a charge that crosses nothing calls
-- no function: sync_org_credit_flag (the replicated gate flag, on a flip only), queue_auto_topup
-- (an org with auto top-up whose balance falls below its threshold) and record_low_balance_alerts
-- (an org with alert thresholds crossing the next one). Their cost is measured by the bench.
--
-- One function per money rule:
--   private.lock_and_settle   the first step of a charge, capture, release and refund: lock the
--                             balance row, expire the org's due grants;
--   private.expire_grants     expiring grants (the charge's burn-down, a money path settling due
--                             grants, and the cron batch all call it);
--   private.release_hold      giving held credits back (release, TTL expiry, the rest of a
--                             partial capture);
--   private.settle_request    every change of a request's state after it is created, refunds too.

-- Fewer writes per charge -----------------------------------------------------------------------------

-- Every ledger entry and every request is written under its org's balance row lock, and the
-- balance row references orgs (an org with a balance cannot be deleted), so the org exists. The
-- two foreign keys to orgs only added, to every charge, two lookups and a row lock on the org's
-- row (a WAL record on a replicated table).
alter table public.credit_ledger drop constraint credit_ledger_org_id_fkey;
alter table public.credit_requests drop constraint credit_requests_org_id_fkey;

-- No path looks the ledger up by request id (the usage rollup reads by ledger id, reconciliation
-- scans): the index only cost every charge an index insert.
drop index public.credit_ledger_request_idx;

-- A charge asks, under the lock, whether its org has grants past their expiry that no job has
-- settled yet (normally none): one descent of this index. Grant updates of `remaining` stay HOT
-- (the index names neither `remaining` nor anything a charge changes).
create index credit_grants_org_due_idx on public.credit_grants (org_id, expires_at)
  where status = 'active' and expires_at is not null;

-- Money movement: one statement for the balance and its ledger entry ---------------------------------

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
  v_claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
begin
  -- What kind of change the balance triggers see (transaction-local): a revocation must never
  -- queue an auto top-up.
  perform pg_catalog.set_config('tollgate.balance_change_kind', p_kind, true);
  with changed as (
    update public.credit_balances b
    set available = b.available + p_amount,
        held = b.held + p_held_delta,
        updated_at = now()
    where b.org_id = p_org_id
    returning b.*
  ),
  entry as (
    insert into public.credit_ledger (org_id, kind, amount, held_delta, balance_after, held_after, request_id, grant_id, actor_user_id, actor_role, metadata)
    select p_org_id, p_kind, p_amount, p_held_delta, c.available, c.held, p_request_id, p_grant_id,
           (v_claims ->> 'sub')::uuid, coalesce(v_claims ->> 'role', 'system'), coalesce(p_metadata, '{}')
    from changed c
  )
  select c.* into v_balance from changed c;
  if not found then
    -- Every caller locked the row first, so this is a bug, never a caller's mistake: refuse
    -- rather than write a grant or a request without its balance change and ledger entry.
    perform private.fail('unknown_org', 'PT404', jsonb_build_object('org_id', p_org_id));
  end if;
  return v_balance;
end
$$;

comment on function private.apply_balance_change(uuid, text, bigint, bigint, text, uuid, jsonb) is
  'Changes a locked balance and appends the matching ledger entry in one statement; the balance triggers see the ledger kind in tollgate.balance_change_kind. The only way a balance changes. Internal.';

-- Expiry: one rule ----------------------------------------------------------------------------------

-- Expires an org's grants that are past expires_at (all of them, or those of p_grant_ids): each
-- becomes 'expired' with what it had left in expired_amount, and that amount leaves the balance
-- with one 'expire' ledger entry per grant, in expiry order. The caller holds the org's balance
-- lock. Returns how many grants and credits expired.
create function private.expire_grants(
  p_org_id uuid,
  p_grant_ids uuid[] default null,
  out grants integer,
  out credits bigint
)
language plpgsql
set search_path = ''
as $$
declare
  v_grant record;
begin
  grants := 0;
  credits := 0;
  for v_grant in
    with due as (
      select g.id, g.remaining, g.expires_at
      from public.credit_grants g
      where g.org_id = p_org_id and g.status = 'active' and g.expires_at <= now()
        and (p_grant_ids is null or g.id = any (p_grant_ids))
      for update
    ),
    expired as (
      update public.credit_grants g
      set status = 'expired', expired_amount = g.expired_amount + d.remaining, remaining = 0, expired_at = now()
      from due d
      where g.id = d.id
      returning d.id, d.remaining, d.expires_at
    )
    select e.id, e.remaining from expired e order by e.expires_at, e.id
  loop
    if v_grant.remaining > 0 then
      perform private.apply_balance_change(p_org_id, 'expire', -v_grant.remaining, 0, null, v_grant.id, '{}');
    end if;
    grants := grants + 1;
    credits := credits + v_grant.remaining;
  end loop;
end
$$;

revoke all on function private.expire_grants(uuid, uuid[]) from public;
comment on function private.expire_grants(uuid, uuid[]) is
  'The expiry rule: expires an org''s due grants (all, or the listed ones) with one ledger entry each. Balance row locked by the caller. Internal.';

create or replace function private.expire_due_grants(p_org_id uuid)
returns integer
language plpgsql
set search_path = ''
as $$
begin
  return (private.expire_grants(p_org_id)).grants;
end
$$;

comment on function private.expire_due_grants(uuid) is
  'Expires all of an org''s due grants (private.expire_grants); balance row locked by the caller. Internal.';

-- Steps 1 and 2 of every money path in one: lock the org's balance row, then expire the org's
-- grants that are past expires_at and that no job has settled yet (one index probe says whether
-- there are any; normally there are none). Returns `available` after that. Unknown org → PT404.
create function private.lock_and_settle(p_org_id uuid)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_available bigint;
  v_due boolean;
begin
  -- The exists() reads this statement's snapshot, taken before any wait for the lock; if a
  -- holder expired those grants meanwhile, private.expire_grants (a new statement) finds none.
  select b.available,
         exists (select from public.credit_grants g
                 where g.org_id = p_org_id and g.status = 'active' and g.expires_at <= now())
  into v_available, v_due
  from public.credit_balances b where b.org_id = p_org_id for update of b;
  if not found then
    perform private.fail('unknown_org', 'PT404', jsonb_build_object('org_id', p_org_id));
  end if;
  if v_due then
    v_available := v_available - (private.expire_grants(p_org_id)).credits;
  end if;
  return v_available;
end
$$;

revoke all on function private.lock_and_settle(uuid) from public;
comment on function private.lock_and_settle(uuid) is
  'Locks an org''s balance row and expires its due grants; returns available. The first step of a charge, capture, release and refund. Internal.';

-- Burn-down: the loop for charges that span grants ------------------------------------------------

-- Takes p_amount from the org's active grants in burn-down order (priority, soonest expiry,
-- oldest) and returns where it came from: [{"grant_id", "amount"}]. The caller holds the balance
-- lock, has settled the org's due grants (private.lock_and_settle or private.expire_due_grants),
-- so every active grant is spendable, and has checked that `available` covers p_amount.
create or replace function private.burn_grants(p_org_id uuid, p_amount bigint)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_left bigint := p_amount;
  v_take bigint;
  v_allocations jsonb := '[]';
  v_grant record;
begin
  if p_amount = 0 then
    return v_allocations;
  end if;
  for v_grant in
    select g.id, g.remaining
    from public.credit_grants g
    where g.org_id = p_org_id and g.status = 'active' and g.remaining > 0
    order by g.priority, g.expires_at, g.created_at, g.id
  loop
    v_take := least(v_grant.remaining, v_left);
    update public.credit_grants set remaining = remaining - v_take where id = v_grant.id;
    v_allocations := v_allocations || jsonb_build_object('grant_id', v_grant.id, 'amount', v_take);
    v_left := v_left - v_take;
    exit when v_left = 0;
  end loop;
  if v_left > 0 then
    -- available said yes but the grants cannot cover it: an invariant is broken. Refuse rather
    -- than overdraw; reconcile_credits() reports the org.
    perform private.fail('balance_out_of_sync', 'XX000', jsonb_build_object('org_id', p_org_id, 'missing', v_left),
      'available exceeds the grants'' remaining credits; run reconcile_credits()');
  end if;
  return v_allocations;
end
$$;

comment on function private.burn_grants(uuid, bigint) is
  'Burns credits from grants in burn-down order; returns the allocations. Balance row locked and due grants settled by the caller (no other writer touches the org''s grants meanwhile). Internal.';

-- The charge ----------------------------------------------------------------------------------------

-- Charges (kind 'consume') or reserves (kind 'hold') price × quantity for one request id,
-- exactly once. See the top of this file for what runs before and under the balance lock.
create or replace function private.charge(
  p_org_id uuid,
  p_user_id uuid,
  p_kind text,
  p_operation text,
  p_request_id text,
  p_quantity integer,
  p_ttl_seconds integer,
  p_metadata jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_metadata jsonb := case when p_metadata = '{}'::jsonb then p_metadata else private.check_metadata(p_metadata) end;
  v_request public.credit_requests;
  v_price bigint;
  v_cost bigint;
  v_available bigint;
  v_grant_id uuid;
  v_allocations jsonb := '[]';
  v_balance public.credit_balances;
begin
  perform private.check_request_id(p_request_id);
  if p_quantity is null or p_quantity not between 1 and 1000000 then
    perform private.fail('invalid_quantity', '22023', jsonb_build_object('quantity', p_quantity, 'min', 1, 'max', 1000000));
  end if;
  select p.credits into v_price from public.credit_prices p where p.operation = p_operation and p.active;

  -- A committed twin answers without the lock; one still running is caught under it below.
  select * into v_request from public.credit_requests r where r.org_id = p_org_id and r.request_id = p_request_id;
  if not found then
    -- Settled first, so the charge's figures (and its refusal) never count expired credits.
    v_available := private.lock_and_settle(p_org_id);
    -- A new statement, a new snapshot: a twin that held the lock before us has committed now.
    select * into v_request from public.credit_requests r where r.org_id = p_org_id and r.request_id = p_request_id;
  end if;
  if found then
    if v_request.kind <> p_kind or v_request.operation is distinct from p_operation or v_request.quantity <> p_quantity then
      perform private.fail('idempotency_conflict', 'PT409',
        jsonb_build_object('request_id', p_request_id, 'kind', v_request.kind, 'operation', v_request.operation, 'quantity', v_request.quantity),
        'this request id was used with other parameters: use a new id');
    end if;
    return private.request_result(v_request, true);
  end if;

  if v_price is null then
    perform private.fail('unknown_operation', 'PT404', jsonb_build_object('operation', p_operation));
  end if;
  v_cost := v_price * p_quantity;

  if v_available < v_cost then
    perform private.fail('insufficient_credits', 'PT402',
      jsonb_build_object('required', v_cost, 'available', v_available, 'operation', p_operation, 'quantity', p_quantity),
      'top up credits or lower the quantity');
  end if;

  if v_cost > 0 then
    -- The head grant in burn-down order, when it covers the whole charge: one UPDATE, found by
    -- its row address (no second index descent). No row lock before it and no risk that the
    -- address moves: every writer of an org's grants holds its balance lock. No grant is due
    -- here: lock_and_settle expired them.
    update public.credit_grants g
    set remaining = g.remaining - v_cost
    where g.ctid = (
        select h.ctid from public.credit_grants h
        where h.org_id = p_org_id and h.status = 'active' and h.remaining > 0
        order by h.priority, h.expires_at, h.created_at, h.id
        limit 1
      )
      and g.remaining >= v_cost
    returning g.id into v_grant_id;
    if v_grant_id is not null then
      v_allocations := jsonb_build_array(jsonb_build_object('grant_id', v_grant_id, 'amount', v_cost));
    else
      v_allocations := private.burn_grants(p_org_id, v_cost);
    end if;
  end if;

  if p_kind = 'consume' then
    v_balance := private.apply_balance_change(p_org_id, 'charge', -v_cost, 0, p_request_id, null,
      jsonb_build_object('operation', p_operation, 'quantity', p_quantity));
  else
    v_balance := private.apply_balance_change(p_org_id, 'hold', -v_cost, v_cost, p_request_id, null,
      jsonb_build_object('operation', p_operation, 'quantity', p_quantity));
  end if;

  insert into public.credit_requests (
    org_id, request_id, kind, operation, quantity, unit_price, reserved, charged, status, allocations,
    user_id, balance_before, balance_after, hold_expires_at, success, metadata, completed_at
  ) values (
    p_org_id, p_request_id, p_kind, p_operation, p_quantity, v_price,
    case when p_kind = 'hold' then v_cost else 0 end,
    case when p_kind = 'consume' then v_cost else 0 end,
    case when p_kind = 'consume' then 'charged' else 'held' end,
    v_allocations, p_user_id, v_balance.available + v_cost, v_balance.available,
    case when p_kind = 'hold' then now() + make_interval(secs => p_ttl_seconds) end,
    case when p_kind = 'consume' then true end,
    v_metadata,
    case when p_kind = 'consume' then now() end
  )
  returning * into v_request;

  return private.request_result(v_request, false);
end
$$;

comment on function private.charge(uuid, uuid, text, text, text, integer, integer, jsonb) is
  'Charges or reserves price × quantity once per (org, request id); validation, price and replay probe before the balance lock, the money writes under it. Internal: consume_credits, reserve_credits, workflow RPCs.';

-- Request state: one function for every change after creation ---------------------------------------

-- Settles a request in one write: its new state (status, charged, what it still holds of which
-- grants, balance after) and, except for a refund, the call record from an RPC's p_result. A
-- refund ('refunded') records refunded = charged and the reason, and keeps the call record.
create function private.settle_request(
  p_org_id uuid,
  p_request_id text,
  p_status text,
  p_charged bigint,
  p_allocations jsonb,
  p_balance_after bigint,
  p_result jsonb,
  p_success boolean,
  p_backend_error boolean,
  p_refund_reason text
)
returns public.credit_requests
language plpgsql
set search_path = ''
as $$
declare
  v_refund boolean := p_status = 'refunded';
  -- JSON nulls mean "not given" (clients send error_code: null on success).
  v_result jsonb := case when p_status = 'refunded' then '{}'::jsonb
                         else jsonb_strip_nulls(private.check_metadata(p_result, 'invalid_result')) end;
  v_request public.credit_requests;
begin
  if (v_result ? 'latency_ms' and (jsonb_typeof(v_result -> 'latency_ms') <> 'number' or (v_result ->> 'latency_ms')::numeric not between 0 and 2147483647))
     or (v_result ? 'backend_endpoint' and jsonb_typeof(v_result -> 'backend_endpoint') <> 'string')
     or (v_result ? 'error_code' and jsonb_typeof(v_result -> 'error_code') <> 'string')
     or (v_result ? 'success' and jsonb_typeof(v_result -> 'success') <> 'boolean') then
    perform private.fail('invalid_result', '22023', '{}',
      'p_result keys: latency_ms (number >= 0), backend_endpoint (string), error_code (string), success (boolean), output (any)');
  end if;
  update public.credit_requests r
  set status = p_status,
      charged = p_charged,
      allocations = p_allocations,
      balance_after = p_balance_after,
      refunded = case when v_refund then p_charged else r.refunded end,
      refunded_at = case when v_refund then now() else r.refunded_at end,
      refund_reason = case when v_refund then p_refund_reason else r.refund_reason end,
      success = case when v_refund then r.success else coalesce((v_result ->> 'success')::boolean, p_success) end,
      backend_error = case when v_refund then r.backend_error else p_backend_error end,
      error_code = case when v_refund then r.error_code else left(v_result ->> 'error_code', 100) end,
      latency_ms = case when v_refund then r.latency_ms else round((v_result ->> 'latency_ms')::numeric)::integer end,
      backend_endpoint = case when v_refund then r.backend_endpoint else left(v_result ->> 'backend_endpoint', 500) end,
      output_summary = case when v_refund then r.output_summary else v_result -> 'output' end,
      completed_at = case when v_refund then r.completed_at else now() end
  where r.org_id = p_org_id and r.request_id = p_request_id
  returning r.* into v_request;
  return v_request;
end
$$;

revoke all on function private.settle_request(uuid, text, text, bigint, jsonb, bigint, jsonb, boolean, boolean, text) from public;
comment on function private.settle_request(uuid, text, text, bigint, jsonb, bigint, jsonb, boolean, boolean, text) is
  'Every change of a request''s state after it is created (capture, release, hold expiry, refund) in one write. Internal.';

-- Giving held credits back: one rule ----------------------------------------------------------------

-- Gives p_amount of a held request's credits back (a release, a hold's TTL expiry, or what a
-- partial capture does not charge): to the grants it drew from, newest allocation first, with a
-- 'release' ledger entry; credits whose grant expired while they were held expire now, as they
-- would have. Returns what the request still holds of which grants and the balance after; the
-- caller settles the request. Balance and request locked; the request is 'held'.
create function private.release_hold(
  p_request public.credit_requests,
  p_amount bigint,
  p_reason text,
  out allocations jsonb,
  out balance_after bigint
)
language plpgsql
set search_path = ''
as $$
declare
  v_back record;
  v_balance public.credit_balances;
begin
  if p_amount = 0 then
    allocations := p_request.allocations;
    balance_after := (select b.available from public.credit_balances b where b.org_id = p_request.org_id);
    return;
  end if;
  v_back := private.return_to_grants(p_request.allocations, p_amount);
  v_balance := private.apply_balance_change(p_request.org_id, 'release', p_amount, -p_amount,
    p_request.request_id, null, jsonb_build_object('reason', p_reason));
  if v_back.returned_expired > 0 then
    v_balance := private.apply_balance_change(p_request.org_id, 'expire', -v_back.returned_expired, 0,
      p_request.request_id, null, jsonb_build_object('reason', 'grant_expired_while_held'));
  end if;
  allocations := v_back.allocations;
  balance_after := v_balance.available;
end
$$;

revoke all on function private.release_hold(public.credit_requests, bigint, text) from public;
comment on function private.release_hold(public.credit_requests, bigint, text) is
  'The give-back rule for holds: returns p_amount of a hold''s credits to their grants (release, TTL expiry, partial capture). Internal.';

-- Locks the balance, then reads the request (PT404 if unknown) and settles due grants. The
-- request needs no row lock of its own: every writer of an org's requests holds its balance lock.
create or replace function private.lock_request(p_org_id uuid, p_request_id text)
returns public.credit_requests
language plpgsql
set search_path = ''
as $$
declare
  v_request public.credit_requests;
begin
  perform private.check_request_id(p_request_id);
  perform private.lock_and_settle(p_org_id);
  select * into v_request from public.credit_requests r where r.org_id = p_org_id and r.request_id = p_request_id;
  if not found then
    perform private.fail('unknown_request', 'PT404', jsonb_build_object('org_id', p_org_id, 'request_id', p_request_id));
  end if;
  return v_request;
end
$$;

comment on function private.lock_request(uuid, text) is
  'Locks an org''s balance, reads one of its requests and settles due grants. Internal.';

-- Holds: capture and release ------------------------------------------------------------------------

create or replace function public.capture_credits(
  p_org_id uuid,
  p_request_id text,
  p_quantity integer default null,
  p_result jsonb default '{}'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_request public.credit_requests := private.lock_request(p_org_id, p_request_id);
  v_quantity integer;
  v_charge bigint;
  v_rest record;
begin
  if v_request.kind <> 'hold' then
    perform private.fail('not_a_hold', 'PT409', jsonb_build_object('request_id', p_request_id, 'kind', v_request.kind));
  end if;
  if p_quantity is not null and (p_quantity < 0 or p_quantity > v_request.quantity) then
    perform private.fail('invalid_quantity', '22023', jsonb_build_object('quantity', p_quantity, 'min', 0, 'max', v_request.quantity),
      'capture at most the held quantity');
  end if;
  v_quantity := coalesce(p_quantity, v_request.quantity);
  v_charge := v_request.unit_price * v_quantity;
  if v_request.status = 'captured' then
    if v_request.charged <> v_charge then
      perform private.fail('idempotency_conflict', 'PT409', jsonb_build_object('request_id', p_request_id, 'charged', v_request.charged),
        'this hold was captured with another quantity');
    end if;
    return private.request_result(v_request, true);
  end if;
  if v_request.status <> 'held' and v_request.status <> 'expired' then
    perform private.fail('hold_not_active', 'PT409', jsonb_build_object('request_id', p_request_id, 'status', v_request.status));
  end if;
  -- Expired is expired, whether or not the cron job has released the hold yet.
  if v_request.status = 'expired' or v_request.hold_expires_at <= now() then
    -- Past its TTL a hold no longer authorises a charge; the cron job releases it.
    perform private.fail('hold_expired', 'PT409', jsonb_build_object('request_id', p_request_id, 'hold_expires_at', v_request.hold_expires_at),
      'the hold outlived its TTL: reserve again');
  end if;

  perform private.apply_balance_change(p_org_id, 'capture', 0, -v_charge, p_request_id, null,
    jsonb_build_object('quantity', v_quantity));
  -- What the capture does not charge goes back as a release.
  v_rest := private.release_hold(v_request, v_request.reserved - v_charge, 'partial_capture');
  v_request := private.settle_request(p_org_id, p_request_id, 'captured', v_charge, v_rest.allocations, v_rest.balance_after,
    p_result, true, false, null);
  return private.request_result(v_request, false);
end
$$;

comment on function public.capture_credits(uuid, text, integer, jsonb) is
  'Server RPC: charge a hold (up to the held quantity) and release the rest. Errors: unknown_request PT404, not_a_hold / hold_not_active / hold_expired / idempotency_conflict PT409, invalid_quantity 22023.';

create or replace function public.release_credits(
  p_org_id uuid,
  p_request_id text,
  p_backend_error boolean default true,
  p_result jsonb default '{}'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_request public.credit_requests := private.lock_request(p_org_id, p_request_id);
  v_released record;
begin
  if v_request.kind <> 'hold' then
    perform private.fail('not_a_hold', 'PT409', jsonb_build_object('request_id', p_request_id, 'kind', v_request.kind));
  end if;
  if v_request.status in ('released', 'expired') then
    -- Already given back (by an earlier release or by TTL expiry): nothing was charged.
    return private.request_result(v_request, true);
  end if;
  if v_request.status <> 'held' then
    perform private.fail('hold_not_active', 'PT409', jsonb_build_object('request_id', p_request_id, 'status', v_request.status));
  end if;
  v_released := private.release_hold(v_request, v_request.reserved,
    case when coalesce(p_backend_error, true) then 'backend_error' else 'released' end);
  v_request := private.settle_request(p_org_id, p_request_id, 'released', 0, v_released.allocations, v_released.balance_after,
    p_result, false, coalesce(p_backend_error, true), null);
  return private.request_result(v_request, false);
end
$$;

comment on function public.release_credits(uuid, text, boolean, jsonb) is
  'Server RPC: release a hold, charging nothing (idempotent). Errors: unknown_request PT404, not_a_hold / hold_not_active PT409.';

create or replace function public.expire_stale_holds(p_batch_size integer default 500)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_hold record;
  v_request public.credit_requests;
  v_released record;
  v_count integer := 0;
begin
  if p_batch_size is null or p_batch_size not between 1 and 10000 then
    perform private.fail('invalid_batch_size', '22023', jsonb_build_object('batch_size', p_batch_size, 'min', 1, 'max', 10000));
  end if;
  for v_hold in
    select d.org_id, d.request_id
    from (
      select r.org_id, r.request_id from public.credit_requests r
      where r.status = 'held' and r.hold_expires_at <= now()
      order by r.hold_expires_at
      limit p_batch_size
    ) d
    order by d.org_id, d.request_id
  loop
    v_request := private.lock_request(v_hold.org_id, v_hold.request_id);
    -- Captured or released since we looked: nothing to do.
    continue when v_request.status <> 'held';
    v_released := private.release_hold(v_request, v_request.reserved, 'hold_expired');
    perform private.settle_request(v_hold.org_id, v_hold.request_id, 'expired', 0, v_released.allocations, v_released.balance_after,
      '{}', false, false, null);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

comment on function public.expire_stale_holds(integer) is
  'Cron (every minute) / service_role: release holds past their TTL (status expired, nothing charged); returns the number released.';

-- Refunds -------------------------------------------------------------------------------------------

-- Returns a charge exactly once, whatever the concurrency (the balance lock serialises callers
-- and the request's status records the refund). Credits go back to the grants they came from;
-- credits whose grant expired meanwhile come back as a new 'refund' grant that expires in 7
-- days, so a refund always makes the user whole and never resurrects an expired grant.
create or replace function public.refund_credits(p_org_id uuid, p_request_id text, p_reason text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_request public.credit_requests;
  v_back record;
  v_regrant_id uuid;
  v_balance public.credit_balances;
begin
  if p_reason is null or char_length(btrim(p_reason)) not between 1 and 500 then
    perform private.fail('invalid_reason', '22023', jsonb_build_object('max_length', 500), 'say why the charge is refunded');
  end if;
  v_request := private.lock_request(p_org_id, p_request_id);
  if v_request.status = 'refunded' then
    return private.request_result(v_request, true);
  end if;
  if v_request.status not in ('charged', 'captured') or v_request.charged = 0 then
    perform private.fail('not_refundable', 'PT409', jsonb_build_object('request_id', p_request_id, 'status', v_request.status, 'charged', v_request.charged));
  end if;

  v_back := private.return_to_grants(v_request.allocations, v_request.charged);
  if v_back.returned_expired > 0 then
    insert into public.credit_grants (org_id, amount, remaining, source, external_ref, priority, expires_at, metadata, activated_at)
    values (p_org_id, v_back.returned_expired, v_back.returned_expired, 'refund', p_request_id, 0, now() + interval '7 days',
            jsonb_build_object('request_id', p_request_id, 'reason', p_reason), now())
    returning id into v_regrant_id;
  end if;
  v_balance := private.apply_balance_change(p_org_id, 'refund', v_request.charged, 0, p_request_id, v_regrant_id,
    jsonb_build_object('reason', p_reason, 'regranted', v_back.returned_expired));

  v_request := private.settle_request(p_org_id, p_request_id, 'refunded', v_request.charged, v_back.allocations,
    v_balance.available, null, null, null, p_reason);
  return private.request_result(v_request, false);
end
$$;

comment on function public.refund_credits(uuid, text, text) is
  'Server RPC: refund a charge exactly once (idempotent). Errors: unknown_request PT404, not_refundable PT409, invalid_reason 22023.';

-- The cron batch: the same expiry rule, org by org -------------------------------------------------

-- Expires up to p_batch_size grants past expires_at and returns how many. The batch's balances
-- are locked in org order (the lock order of every money path, so two batches never deadlock),
-- then private.expire_grants settles each org's share.
create or replace function public.expire_credit_grants(p_batch_size integer default 2000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_org_id uuid;
  v_count integer := 0;
begin
  if p_batch_size is null or p_batch_size not between 1 and 10000 then
    perform private.fail('invalid_batch_size', '22023', jsonb_build_object('batch_size', p_batch_size, 'min', 1, 'max', 10000));
  end if;
  select array_agg(d.id) into v_ids
  from (
    select g.id from public.credit_grants g
    where g.status = 'active' and g.expires_at <= now()
    order by g.expires_at
    limit p_batch_size
  ) d;
  if v_ids is null then
    return 0;
  end if;

  for v_org_id in
    select b.org_id from public.credit_balances b
    where b.org_id in (select g.org_id from public.credit_grants g where g.id = any (v_ids))
    order by b.org_id
    for update
  loop
    -- Re-read under the lock: a charge may have expired some of them meanwhile.
    v_count := v_count + (private.expire_grants(v_org_id, v_ids)).grants;
  end loop;
  return v_count;
end
$$;

comment on function public.expire_credit_grants(integer) is
  'Cron (every minute) / service_role: expire due grants in a bounded batch (private.expire_grants per org, balances locked in org order); returns the number expired.';

-- The old shapes of the two rules, replaced above.
drop function private.release_hold(public.credit_requests, text);
drop function private.settle_request(uuid, text, text, bigint, jsonb, bigint, jsonb, boolean, boolean);
