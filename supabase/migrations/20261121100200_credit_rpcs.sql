-- Credit engine RPCs: the public contract of DESIGN.md ("RPC contract", "Error contract").
--
-- User RPCs (authenticated; org from auth.uid() membership): consume_credits,
-- get_credit_balance, get_usage_stats. Server RPCs (service_role only; a user must never
-- release or refund their own charges): grant_credits, activate_credit_grant,
-- void_credit_grant, grant_onboarding_credits, reserve_credits, capture_credits,
-- release_credits, refund_credits. Each is one round trip and one transaction.

-- Shared pieces -------------------------------------------------------------------------------

-- What a charge or hold answers, first time and on replay. plpgsql, not sql: a SQL function
-- with SET is neither inlined nor plan-cached, and this runs on every charge.
create function private.request_result(p_request public.credit_requests, p_replayed boolean)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
  return jsonb_strip_nulls(jsonb_build_object(
    'request_id', p_request.request_id,
    'org_id', p_request.org_id,
    'operation', p_request.operation,
    'quantity', p_request.quantity,
    'status', p_request.status,
    'charged', p_request.charged,
    'reserved', case when p_request.kind = 'hold' then p_request.reserved end,
    'refunded', case when p_request.refunded > 0 then p_request.refunded end,
    'hold_expires_at', p_request.hold_expires_at,
    'balance_before', p_request.balance_before,
    'balance_after', p_request.balance_after,
    'replayed', p_replayed
  ));
end
$$;

revoke all on function private.request_result(public.credit_requests, boolean) from public;
comment on function private.request_result(public.credit_requests, boolean) is 'JSON answer for a charge or hold. Internal.';

-- Charges (kind 'consume') or reserves (kind 'hold') price × quantity for one request id,
-- exactly once. Lock order: balance row, then grants.
create function private.charge(
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
  v_metadata jsonb := private.check_metadata(p_metadata);
  v_balance public.credit_balances;
  v_request public.credit_requests;
  v_price bigint;
  v_cost bigint;
  v_allocations jsonb;
begin
  if p_request_id is null or char_length(p_request_id) not between 1 and 200 then
    perform private.fail('invalid_request_id', '22023', jsonb_build_object('max_length', 200), 'pass a non-empty request id of at most 200 characters');
  end if;
  if p_quantity is null or p_quantity not between 1 and 1000000 then
    perform private.fail('invalid_quantity', '22023', jsonb_build_object('quantity', p_quantity, 'min', 1, 'max', 1000000));
  end if;
  -- Read before taking the lock: the less work under the balance lock, the more charges per
  -- second one org can take.
  select p.credits into v_price from public.credit_prices p where p.operation = p_operation and p.active;

  v_balance := private.lock_balance(p_org_id);

  -- Idempotency, checked under the lock: a concurrent twin has either committed (we replay it)
  -- or not started (it will replay us).
  select * into v_request from public.credit_requests r where r.org_id = p_org_id and r.request_id = p_request_id;
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

  -- `available` still counts grants past expires_at that the cron job has not expired yet, so
  -- this is the quick refusal; burn_grants expires any due grant it meets and refuses then.
  if v_balance.available < v_cost then
    perform private.fail('insufficient_credits', 'PT402',
      jsonb_build_object('required', v_cost, 'available', v_balance.available, 'operation', p_operation, 'quantity', p_quantity),
      'top up credits or lower the quantity');
  end if;

  v_allocations := private.burn_grants(p_org_id, v_cost);
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

revoke all on function private.charge(uuid, uuid, text, text, text, integer, integer, jsonb) from public;
comment on function private.charge(uuid, uuid, text, text, text, integer, integer, jsonb) is
  'Charges or reserves price × quantity once per (org, request id). Internal: consume_credits, reserve_credits, workflow RPCs.';

-- Settles a request in one write: its new state (status, charged, what it still holds of
-- which grants, balance after) and the call record from an RPC's p_result.
create function private.settle_request(
  p_org_id uuid,
  p_request_id text,
  p_status text,
  p_charged bigint,
  p_allocations jsonb,
  p_balance_after bigint,
  p_result jsonb,
  p_success boolean,
  p_backend_error boolean
)
returns public.credit_requests
language plpgsql
set search_path = ''
as $$
declare
  -- JSON nulls mean "not given" (clients send error_code: null on success).
  v_result jsonb := jsonb_strip_nulls(private.check_metadata(p_result, 'invalid_result'));
  v_request public.credit_requests;
begin
  if (v_result ? 'latency_ms' and (jsonb_typeof(v_result -> 'latency_ms') <> 'number' or (v_result ->> 'latency_ms')::numeric not between 0 and 2147483647))
     or (v_result ? 'backend_endpoint' and jsonb_typeof(v_result -> 'backend_endpoint') <> 'string')
     or (v_result ? 'error_code' and jsonb_typeof(v_result -> 'error_code') <> 'string')
     or (v_result ? 'success' and jsonb_typeof(v_result -> 'success') <> 'boolean') then
    perform private.fail('invalid_result', '22023', '{}',
      'p_result keys: latency_ms (number >= 0), backend_endpoint (string), error_code (string), success (boolean), output (any)');
  end if;
  update public.credit_requests
  set status = p_status,
      charged = p_charged,
      allocations = p_allocations,
      balance_after = p_balance_after,
      success = coalesce((v_result ->> 'success')::boolean, p_success),
      backend_error = p_backend_error,
      error_code = left(v_result ->> 'error_code', 100),
      latency_ms = round((v_result ->> 'latency_ms')::numeric)::integer,
      backend_endpoint = left(v_result ->> 'backend_endpoint', 500),
      output_summary = v_result -> 'output',
      completed_at = now()
  where org_id = p_org_id and request_id = p_request_id
  returning * into v_request;
  return v_request;
end
$$;

revoke all on function private.settle_request(uuid, text, text, bigint, jsonb, bigint, jsonb, boolean, boolean) from public;
comment on function private.settle_request(uuid, text, text, bigint, jsonb, bigint, jsonb, boolean, boolean) is
  'Settles a hold''s request (state and call record) in one write. Internal.';

-- Gives a held request's credits back (release, or hold expiry) and returns what the request
-- still holds (nothing) and the balance after; the caller settles the request. Balance locked,
-- request locked and still 'held'.
create function private.release_hold(
  p_request public.credit_requests,
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
  v_back := private.return_to_grants(p_request.allocations, p_request.reserved);
  v_balance := private.apply_balance_change(p_request.org_id, 'release', p_request.reserved, -p_request.reserved,
    p_request.request_id, null, jsonb_build_object('reason', p_reason));
  if v_back.returned_expired > 0 then
    -- Held credits whose grant expired while they were held expire now, as they would have.
    v_balance := private.apply_balance_change(p_request.org_id, 'expire', -v_back.returned_expired, 0,
      p_request.request_id, null, jsonb_build_object('reason', 'grant_expired_while_held'));
  end if;
  allocations := v_back.allocations;
  balance_after := v_balance.available;
end
$$;

revoke all on function private.release_hold(public.credit_requests, text) from public;
comment on function private.release_hold(public.credit_requests, text) is 'Releases a hold''s credits to their grants. Internal.';

-- Locks the balance and then the request (lock order), settles due grants; PT404 if unknown.
create function private.lock_request(p_org_id uuid, p_request_id text)
returns public.credit_requests
language plpgsql
set search_path = ''
as $$
declare
  v_request public.credit_requests;
begin
  perform private.check_request_id(p_request_id);
  perform private.lock_balance(p_org_id);
  select * into v_request from public.credit_requests r where r.org_id = p_org_id and r.request_id = p_request_id for update;
  if not found then
    perform private.fail('unknown_request', 'PT404', jsonb_build_object('org_id', p_org_id, 'request_id', p_request_id));
  end if;
  perform private.expire_due_grants(p_org_id);
  return v_request;
end
$$;

revoke all on function private.lock_request(uuid, text) from public;
comment on function private.lock_request(uuid, text) is 'Locks an org''s balance, then one of its requests. Internal.';

-- consume_credits -----------------------------------------------------------------------------

-- Charges the caller's org for one operation, atomically and at most once per request id.
-- Definer: users may not write credit tables; membership is checked by private.caller_org.
create function public.consume_credits(
  p_operation text,
  p_request_id text,
  p_quantity integer default 1,
  p_org_id uuid default null,
  p_metadata jsonb default '{}'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  return private.charge(private.caller_org(p_org_id), (select auth.uid()), 'consume', p_operation, p_request_id, p_quantity, null, p_metadata);
end
$$;

revoke all on function public.consume_credits(text, text, integer, uuid, jsonb) from public;
grant execute on function public.consume_credits(text, text, integer, uuid, jsonb) to authenticated;
comment on function public.consume_credits(text, text, integer, uuid, jsonb) is
  'User RPC: charge price(p_operation) × p_quantity to the caller''s org (default: personal) once per p_request_id. Errors: insufficient_credits PT402, idempotency_conflict PT409, unknown_operation PT404, not_a_member 42501, invalid_* 22023.';

-- get_credit_balance --------------------------------------------------------------------------

-- O(1): the balance row plus the org's due-but-not-yet-expired grants (normally none).
-- Invoker: RLS lets members read their balance; membership is checked explicitly for a clear error.
create function public.get_credit_balance(p_org_id uuid default null)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_org_id uuid := private.caller_org(p_org_id);
  v_balance public.credit_balances;
  v_due bigint;
  v_next record;
begin
  select * into v_balance from public.credit_balances b where b.org_id = v_org_id;
  select coalesce(sum(g.remaining), 0) into v_due
  from public.credit_grants g
  where g.org_id = v_org_id and g.status = 'active' and g.remaining > 0 and g.expires_at <= now();
  select g.expires_at, sum(g.remaining) as amount into v_next
  from public.credit_grants g
  where g.org_id = v_org_id and g.status = 'active' and g.remaining > 0 and g.expires_at > now()
  group by g.expires_at
  order by g.expires_at
  limit 1;
  return jsonb_build_object(
    'org_id', v_org_id,
    'available', v_balance.available - v_due,
    'held', v_balance.held,
    'next_expiry_at', v_next.expires_at,
    'next_expiry_amount', v_next.amount
  );
end
$$;

revoke all on function public.get_credit_balance(uuid) from public;
grant execute on function public.get_credit_balance(uuid) to authenticated;
comment on function public.get_credit_balance(uuid) is
  'User RPC: {org_id, available, held, next_expiry_at, next_expiry_amount} for the caller''s org (default: personal).';

-- get_usage_stats -----------------------------------------------------------------------------

create function public.get_usage_stats(p_days integer default 30, p_org_id uuid default null)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_org_id uuid;
  v_since timestamptz;
  v_stats jsonb;
begin
  if p_days is null or p_days not between 1 and 366 then
    perform private.fail('invalid_days', '22023', jsonb_build_object('days', p_days, 'min', 1, 'max', 366));
  end if;
  v_org_id := private.caller_org(p_org_id);
  v_since := now() - make_interval(days => p_days);

  select jsonb_build_object(
    'period_days', p_days,
    'total_calls', count(*),
    'successful_calls', count(*) filter (where r.success),
    'failed_calls', count(*) filter (where not r.success),
    'total_credits_used', coalesce(sum(r.charged - r.refunded), 0),
    'avg_latency_ms', coalesce(round(avg(r.latency_ms), 2), 0)
  ) into v_stats
  from public.credit_requests r
  where r.org_id = v_org_id and r.created_at > v_since;

  return v_stats || jsonb_build_object('top_operations', coalesce((
    select jsonb_agg(jsonb_build_object('operation', t.operation, 'calls', t.calls, 'credits', t.credits) order by t.calls desc, t.operation)
    from (
      select r.operation, count(*) as calls, coalesce(sum(r.charged - r.refunded), 0) as credits
      from public.credit_requests r
      where r.org_id = v_org_id and r.created_at > v_since
      group by r.operation
      order by calls desc, r.operation
      limit 10
    ) t
  ), '[]'));
end
$$;

revoke all on function public.get_usage_stats(integer, uuid) from public;
grant execute on function public.get_usage_stats(integer, uuid) to authenticated;
comment on function public.get_usage_stats(integer, uuid) is
  'User RPC: calls, successes, failures, credits used (net of refunds), average latency and top 10 operations over p_days (1..366).';

-- Grants --------------------------------------------------------------------------------------

create function private.grant_result(p_grant public.credit_grants, p_replayed boolean)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
  return jsonb_build_object(
    'grant_id', p_grant.id,
    'org_id', p_grant.org_id,
    'amount', p_grant.amount,
    'remaining', p_grant.remaining,
    'status', p_grant.status,
    'source', p_grant.source,
    'external_ref', p_grant.external_ref,
    'priority', p_grant.priority,
    'expires_at', p_grant.expires_at,
    'balance_after', (select b.available from public.credit_balances b where b.org_id = p_grant.org_id),
    'replayed', p_replayed
  );
end
$$;

revoke all on function private.grant_result(public.credit_grants, boolean) from public;
comment on function private.grant_result(public.credit_grants, boolean) is 'JSON answer for a grant. Internal.';

-- Inserts a grant once per (org, source, external_ref); the balance row is locked by the caller.
create function private.insert_grant(
  p_org_id uuid,
  p_amount bigint,
  p_source text,
  p_external_ref text,
  p_expires_at timestamptz,
  p_metadata jsonb,
  p_priority integer,
  p_pending boolean
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_grant public.credit_grants;
begin
  if p_external_ref is not null then
    select * into v_grant from public.credit_grants g
    where g.org_id = p_org_id and g.source = p_source and g.external_ref = p_external_ref;
    if found then
      -- A retried payment is the same payment: only the amount must match. The expiry is
      -- often computed at receipt time ("now + 30 days") and legitimately differs.
      if v_grant.amount <> p_amount then
        perform private.fail('idempotency_conflict', 'PT409',
          jsonb_build_object('source', p_source, 'external_ref', p_external_ref, 'amount', v_grant.amount),
          'this external reference was granted with another amount');
      end if;
      return private.grant_result(v_grant, true);
    end if;
  end if;

  if p_expires_at is not null and p_expires_at <= now() then
    perform private.fail('invalid_expiry', '22023', jsonb_build_object('expires_at', p_expires_at), 'expires_at must be in the future');
  end if;

  insert into public.credit_grants (org_id, amount, remaining, source, external_ref, status, priority, expires_at, metadata, pending_since, activated_at)
  values (p_org_id, p_amount, p_amount, p_source, p_external_ref,
          case when p_pending then 'pending' else 'active' end,
          p_priority, p_expires_at, p_metadata,
          case when p_pending then now() end,
          case when not p_pending then now() end)
  returning * into v_grant;

  if not p_pending then
    perform private.apply_balance_change(p_org_id, 'grant', p_amount, 0, null, v_grant.id,
      jsonb_build_object('source', p_source, 'external_ref', p_external_ref));
  end if;
  return private.grant_result(v_grant, false);
end
$$;

revoke all on function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean) from public;
comment on function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean) is
  'Inserts a grant idempotently on (org, source, external_ref) and credits it unless pending. Internal.';

-- Adds credits to an org: a purchase, promotion, adjustment... Idempotent on
-- (org, source, external_ref): a repeated payment reference returns the first grant.
-- p_pending: credits wait for activate_credit_grant (payment confirmed) or void_credit_grant.
create function public.grant_credits(
  p_org_id uuid,
  p_amount bigint,
  p_source text,
  p_external_ref text default null,
  p_expires_at timestamptz default null,
  p_metadata jsonb default '{}',
  p_priority integer default 100,
  p_pending boolean default false
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_metadata jsonb := private.check_metadata(p_metadata);
begin
  if p_amount is null or p_amount not between 1 and 1000000000000 then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('amount', p_amount, 'min', 1, 'max', 1000000000000));
  end if;
  if p_source is null or p_source !~ '^[a-z][a-z0-9_]{0,31}$' or p_source in ('onboarding', 'refund') then
    perform private.fail('invalid_source', '22023', jsonb_build_object('source', p_source),
      'a lowercase word such as purchase, promotion or adjustment; onboarding and refund grants have their own RPCs');
  end if;
  if p_external_ref is not null and char_length(p_external_ref) not between 1 and 200 then
    perform private.fail('invalid_external_ref', '22023', jsonb_build_object('max_length', 200));
  end if;
  if p_priority is null or p_priority not between 0 and 1000 then
    perform private.fail('invalid_priority', '22023', jsonb_build_object('priority', p_priority, 'min', 0, 'max', 1000));
  end if;
  perform private.lock_balance(p_org_id);
  return private.insert_grant(p_org_id, p_amount, p_source, p_external_ref, p_expires_at, v_metadata, p_priority, coalesce(p_pending, false));
end
$$;

revoke all on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean) from public;
grant execute on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean) to service_role;
comment on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean) is
  'Server RPC: add credits to an org, idempotent on (org, source, external_ref); p_pending waits for activate_credit_grant.';

-- Locks an org's balance, then its grant with this (source, external_ref); PT404 if none.
create function private.lock_grant(p_org_id uuid, p_source text, p_external_ref text)
returns public.credit_grants
language plpgsql
set search_path = ''
as $$
declare
  v_grant public.credit_grants;
begin
  perform private.lock_balance(p_org_id);
  select * into v_grant from public.credit_grants g
  where g.org_id = p_org_id and g.source = p_source and g.external_ref = p_external_ref
  for update;
  if not found then
    perform private.fail('unknown_grant', 'PT404', jsonb_build_object('source', p_source, 'external_ref', p_external_ref));
  end if;
  return v_grant;
end
$$;

revoke all on function private.lock_grant(uuid, text, text) from public;
comment on function private.lock_grant(uuid, text, text) is 'Locks an org''s balance, then one of its grants by external reference. Internal.';

-- Payment confirmed: a pending grant becomes spendable (once).
create function public.activate_credit_grant(p_org_id uuid, p_source text, p_external_ref text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_grant public.credit_grants := private.lock_grant(p_org_id, p_source, p_external_ref);
begin
  if v_grant.status <> 'pending' then
    if v_grant.status in ('active', 'expired') and v_grant.pending_since is not null then
      return private.grant_result(v_grant, true);
    end if;
    perform private.fail('grant_not_pending', 'PT409', jsonb_build_object('status', v_grant.status));
  end if;
  update public.credit_grants set status = 'active', activated_at = now() where id = v_grant.id returning * into v_grant;
  perform private.apply_balance_change(p_org_id, 'grant', v_grant.amount, 0, null, v_grant.id,
    jsonb_build_object('source', p_source, 'external_ref', p_external_ref, 'activated', true));
  -- A grant whose expiry passed while it was pending is credited and expired at once.
  perform private.expire_due_grants(p_org_id);
  select * into v_grant from public.credit_grants g where g.id = v_grant.id;
  return private.grant_result(v_grant, false);
end
$$;

revoke all on function public.activate_credit_grant(uuid, text, text) from public;
grant execute on function public.activate_credit_grant(uuid, text, text) to service_role;
comment on function public.activate_credit_grant(uuid, text, text) is
  'Server RPC: a pending grant''s payment succeeded; credit it (idempotent). Errors: unknown_grant PT404, grant_not_pending PT409.';

-- Payment failed: a pending grant is voided (once); it never becomes spendable.
create function public.void_credit_grant(p_org_id uuid, p_source text, p_external_ref text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_grant public.credit_grants := private.lock_grant(p_org_id, p_source, p_external_ref);
begin
  if v_grant.status = 'voided' then
    return private.grant_result(v_grant, true);
  end if;
  if v_grant.status <> 'pending' then
    perform private.fail('grant_not_pending', 'PT409', jsonb_build_object('status', v_grant.status));
  end if;
  update public.credit_grants set status = 'voided', remaining = 0 where id = v_grant.id returning * into v_grant;
  return private.grant_result(v_grant, false);
end
$$;

revoke all on function public.void_credit_grant(uuid, text, text) from public;
grant execute on function public.void_credit_grant(uuid, text, text) to service_role;
comment on function public.void_credit_grant(uuid, text, text) is
  'Server RPC: a pending grant''s payment failed; void it (idempotent). Errors: unknown_grant PT404, grant_not_pending PT409.';

-- One onboarding grant per user, to their personal org; repeated calls return the first.
create function public.grant_onboarding_credits(p_user_id uuid, p_amount bigint, p_expires_at timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid;
begin
  if p_amount is null or p_amount not between 1 and 1000000000000 then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('amount', p_amount, 'min', 1, 'max', 1000000000000));
  end if;
  select o.id into v_org_id from public.orgs o where o.personal_user_id = p_user_id;
  if v_org_id is null then
    perform private.fail('unknown_user', 'PT404', jsonb_build_object('user_id', p_user_id), 'no such user (or they have no personal org)');
  end if;
  perform private.lock_balance(v_org_id);
  return private.insert_grant(v_org_id, p_amount, 'onboarding', p_user_id::text, p_expires_at, '{}', 100, false);
end
$$;

revoke all on function public.grant_onboarding_credits(uuid, bigint, timestamptz) from public;
grant execute on function public.grant_onboarding_credits(uuid, bigint, timestamptz) to service_role;
comment on function public.grant_onboarding_credits(uuid, bigint, timestamptz) is
  'Server RPC: the one onboarding grant of a user (to their personal org); idempotent per user.';

-- Holds ---------------------------------------------------------------------------------------

-- Pre-authorisation (seed 004): set aside price × quantity for a request; the credits are not
-- spendable until captured or released. p_user_id, when given, must be a member of the org.
create function public.reserve_credits(
  p_org_id uuid,
  p_user_id uuid,
  p_operation text,
  p_request_id text,
  p_quantity integer default 1,
  p_ttl_seconds integer default 300,
  p_metadata jsonb default '{}'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_ttl_seconds is null or p_ttl_seconds not between 1 and 86400 then
    perform private.fail('invalid_ttl', '22023', jsonb_build_object('ttl_seconds', p_ttl_seconds, 'min', 1, 'max', 86400));
  end if;
  if p_user_id is not null and not exists (
    select 1 from public.org_members m where m.org_id = p_org_id and m.user_id = p_user_id
  ) then
    perform private.fail('not_a_member', '42501', jsonb_build_object('org_id', p_org_id, 'user_id', p_user_id));
  end if;
  return private.charge(p_org_id, p_user_id, 'hold', p_operation, p_request_id, p_quantity, p_ttl_seconds, p_metadata);
end
$$;

revoke all on function public.reserve_credits(uuid, uuid, text, text, integer, integer, jsonb) from public;
grant execute on function public.reserve_credits(uuid, uuid, text, text, integer, integer, jsonb) to service_role;
comment on function public.reserve_credits(uuid, uuid, text, text, integer, integer, jsonb) is
  'Server RPC: hold price × quantity for p_ttl_seconds (1..86400). Same errors as consume_credits, plus invalid_ttl.';

-- Charges a hold: p_quantity units (default: all held), at most what was held; the rest is
-- released. p_result records the call (latency_ms, backend_endpoint, error_code, success, output).
create function public.capture_credits(
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
  v_back record;
  v_balance public.credit_balances;
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

  v_balance := private.apply_balance_change(p_org_id, 'capture', 0, -v_charge, p_request_id, null,
    jsonb_build_object('quantity', v_quantity));
  v_back := private.return_to_grants(v_request.allocations, v_request.reserved - v_charge);
  if v_request.reserved > v_charge then
    v_balance := private.apply_balance_change(p_org_id, 'release', v_request.reserved - v_charge, -(v_request.reserved - v_charge),
      p_request_id, null, jsonb_build_object('reason', 'partial_capture'));
  end if;
  if v_back.returned_expired > 0 then
    v_balance := private.apply_balance_change(p_org_id, 'expire', -v_back.returned_expired, 0, p_request_id, null,
      jsonb_build_object('reason', 'grant_expired_while_held'));
  end if;
  v_request := private.settle_request(p_org_id, p_request_id, 'captured', v_charge, v_back.allocations, v_balance.available,
    p_result, true, false);
  return private.request_result(v_request, false);
end
$$;

revoke all on function public.capture_credits(uuid, text, integer, jsonb) from public;
grant execute on function public.capture_credits(uuid, text, integer, jsonb) to service_role;
comment on function public.capture_credits(uuid, text, integer, jsonb) is
  'Server RPC: charge a hold (up to the held quantity) and release the rest. Errors: unknown_request PT404, not_a_hold / hold_not_active / hold_expired / idempotency_conflict PT409, invalid_quantity 22023.';

-- Releases a hold: nothing is charged. p_backend_error records that our backend failed
-- (seed 003: users never pay for our failures).
create function public.release_credits(
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
  v_released := private.release_hold(v_request, case when coalesce(p_backend_error, true) then 'backend_error' else 'released' end);
  v_request := private.settle_request(p_org_id, p_request_id, 'released', 0, v_released.allocations, v_released.balance_after,
    p_result, false, coalesce(p_backend_error, true));
  return private.request_result(v_request, false);
end
$$;

revoke all on function public.release_credits(uuid, text, boolean, jsonb) from public;
grant execute on function public.release_credits(uuid, text, boolean, jsonb) to service_role;
comment on function public.release_credits(uuid, text, boolean, jsonb) is
  'Server RPC: release a hold, charging nothing (idempotent). Errors: unknown_request PT404, not_a_hold / hold_not_active PT409.';

-- Refunds ---------------------------------------------------------------------------------------

-- Returns a charge exactly once, whatever the concurrency (the balance lock serialises callers
-- and the request's status records the refund). Credits go back to the grants they came from;
-- credits whose grant expired meanwhile come back as a new 'refund' grant that expires in 7
-- days, so a refund always makes the user whole and never resurrects an expired grant.
create function public.refund_credits(p_org_id uuid, p_request_id text, p_reason text)
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

  update public.credit_requests
  set status = 'refunded', refunded = charged, refunded_at = now(), refund_reason = p_reason,
      allocations = v_back.allocations, balance_after = v_balance.available
  where org_id = p_org_id and request_id = p_request_id
  returning * into v_request;
  return private.request_result(v_request, false);
end
$$;

revoke all on function public.refund_credits(uuid, text, text) from public;
grant execute on function public.refund_credits(uuid, text, text) to service_role;
comment on function public.refund_credits(uuid, text, text) is
  'Server RPC: refund a charge exactly once (idempotent). Errors: unknown_request PT404, not_refundable PT409, invalid_reason 22023.';
