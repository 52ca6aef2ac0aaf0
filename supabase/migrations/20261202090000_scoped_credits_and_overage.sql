-- Scoped credits and overage with a spend cap.
--
-- Scoped credits: a grant may name the operations it can be spent on (a promotion for image
-- generation only); `credit_grants.operations` null means any operation.
--   - A charge burns only the grants that cover its operation, in the usual order (priority,
--     soonest expiry, oldest); what an operation may spend is the covering grants' credits.
--   - `available` on the balance row stays the org's total (every grant, net of debt): the gate
--     flag keeps its meaning, "the org can spend on something".
--
-- Overage: an org may be allowed to go below zero up to `credit_balances.overage_limit`
-- (set_overage_limit(), service role, 0 by default); the debt is `credit_balances.overage`.
--   - A charge for operation X succeeds iff  price × quantity <= covering(X) − overage + limit,
--     i.e. `available` for X never goes below −limit. The covering grants burn first; the rest
--     is taken as debt: the request's allocations end with a piece {"grant_id": null, amount}.
--   - Giving credits back (release, partial capture, refund) returns the debt piece first
--     (newest piece first, as always): it lowers the debt, or, when a later grant has already
--     repaid that debt, goes back to the grant that repaid it.
--   - A grant that can be spent on anything pays the debt first when it is credited (created
--     active, pending activated, scheduled started, checkout paid): one 'grant' ledger entry for
--     its amount with overage_delta = −paid; the grant keeps what it paid in `overage_repaid`.
--     A scoped grant pays no debt: the debt is not tied to an operation.
--   - A revocation without a named grant takes from every grant in burn-down order, then up to
--     the overage room as debt (`credit_revocations.overage`).
--   - Every change of the debt is a ledger entry (overage_delta / overage_after, like held);
--     reconcile_credits() checks the debt against the ledger and against its sources.
--
-- Invariants (CHECKs): overage >= 0; available + overage = Σ remaining of active grants >= 0.
-- The limit may be lowered below the current debt: the debt stays, nothing new is charged
-- beyond the limit.

-- Tables ---------------------------------------------------------------------------------------

alter table public.credit_grants
  add column operations text[],
  add column overage_repaid bigint not null default 0;
alter table public.credit_grants
  add constraint credit_grants_operations_check check (
    operations is null or (array_ndims(operations) = 1 and cardinality(operations) between 1 and 100 and array_position(operations, null) is null)),
  add constraint credit_grants_overage_repaid_check check (overage_repaid >= 0);
-- What a grant has given away (to requests, expiry, revocation or debt) never exceeds it.
alter table public.credit_grants drop constraint credit_grants_used_not_negative;
alter table public.credit_grants
  add constraint credit_grants_used_not_negative check (remaining + expired_amount + revoked_amount + overage_repaid <= amount);
comment on column public.credit_grants.operations is
  'The operations this grant can be spent on (sorted); null: any operation.';
comment on column public.credit_grants.overage_repaid is
  'Credits of this grant that paid the org''s overage debt when it was credited (net of debts given back by refunds).';

-- A charge's one extra probe: the org's active scoped grants (none for most orgs).
create index credit_grants_scoped_idx on public.credit_grants (org_id) where status = 'active' and operations is not null;
-- A refund of a debt piece finds the grants that repaid debt.
create index credit_grants_repaid_idx on public.credit_grants (org_id) where overage_repaid > 0;

alter table public.credit_balances
  add column overage bigint not null default 0,
  add column overage_limit bigint not null default 0;
alter table public.credit_balances drop constraint credit_balances_available_check;
alter table public.credit_balances
  add constraint credit_balances_overage_check check (overage >= 0),
  add constraint credit_balances_overage_limit_check check (overage_limit between 0 and 1000000000000),
  add constraint credit_balances_covered_check check (available + overage >= 0);
comment on column public.credit_balances.available is
  'Spendable credits of active grants, net of the overage debt: below zero while the org is in overage.';
comment on column public.credit_balances.overage is
  'Credits the org owes: charged beyond its grants within overage_limit; paid first by its next unscoped grant.';
comment on column public.credit_balances.overage_limit is
  'How far below zero available may go (set_overage_limit(), 0 by default).';

alter table public.credit_ledger
  add column overage_delta bigint not null default 0,
  add column overage_after bigint not null default 0;
alter table public.credit_ledger drop constraint credit_ledger_balance_after_check;
alter table public.credit_ledger
  add constraint credit_ledger_overage_after_check check (overage_after >= 0),
  add constraint credit_ledger_covered_check check (balance_after + overage_after >= 0);

alter table public.credit_revocations
  add column overage bigint not null default 0,
  add column overage_restored bigint not null default 0;
alter table public.credit_revocations drop constraint credit_revocations_balance_after_check;
alter table public.credit_revocations
  add constraint credit_revocations_overage_check check (overage >= 0 and overage_restored >= 0 and overage + overage_restored <= revoked);
comment on column public.credit_revocations.overage is
  'Part of revoked taken as new overage debt (a revocation without a named grant, beyond the grants'' credits).';
comment on column public.credit_revocations.overage_restored is
  'Part of revoked that brought back the debt the named grant had repaid (its payment refunded or disputed).';

-- Error catalog --------------------------------------------------------------------------------

insert into private.error_catalog (key, sqlstate, http_status, meaning) values
  ('invalid_operations', '22023', 400, 'A grant''s operations: an empty list, a null or malformed name, or more than 100 names (details: operations).');
update private.error_catalog
set meaning = 'An outbox claim''s batch size (`p_limit`) or an overage limit that is missing or out of range (details: min, max).'
where key = 'invalid_limit';
update private.error_catalog
set meaning = 'The credits this operation may spend, with the overage allowance, are fewer than the charge needs (details: required, available, overage, overage_limit); nothing is written.'
where key = 'insufficient_credits';

-- The flag rule ------------------------------------------------------------------------------

-- One place for what orgs.has_usage_credits means: the org can spend on something, i.e. some
-- operation has covering credits − overage + overage_limit > 0. Decided from the balance row
-- alone except when the debt is above a lowered limit and some grants are scoped.
-- Callers: the sync_org_credit_flag trigger, refresh_orgs_has_usage_credits(), reconcile_credits().
create function private.can_spend(p_org_id uuid, p_available bigint, p_overage bigint, p_overage_limit bigint)
returns boolean
language plpgsql stable
set search_path = ''
as $$
declare
  v_best bigint;
begin
  if p_overage < p_overage_limit then
    return true;                                   -- room left under the cap: anything
  end if;
  if p_available + p_overage_limit <= 0 then
    return false;                                  -- all the grants together do not cover the debt
  end if;
  if p_overage = p_overage_limit then
    return true;                                   -- some grant has credits: its operations
  end if;
  -- Debt above a lowered limit: the best-covered operation must cover more than the excess.
  select coalesce(sum(g.remaining) filter (where g.operations is null), 0)
       + coalesce((select max(per_op.credits) from (
           select sum(x.remaining) as credits
           from public.credit_grants x, unnest(x.operations) o(operation)
           where x.org_id = p_org_id and x.status = 'active' and x.remaining > 0
           group by o.operation) per_op), 0)
  into v_best
  from public.credit_grants g
  where g.org_id = p_org_id and g.status = 'active' and g.remaining > 0;
  return v_best > p_overage - p_overage_limit;
end
$$;
revoke all on function private.can_spend(uuid, bigint, bigint, bigint) from public;
comment on function private.can_spend(uuid, bigint, bigint, bigint) is
  'The gate flag rule: the org can spend on something (some operation''s covering credits − overage + overage_limit > 0). Internal: flag trigger, refresh, reconcile.';

create or replace function private.sync_org_credit_flag()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flag boolean := private.can_spend(new.org_id, new.available, new.overage, new.overage_limit);
begin
  update public.orgs
  set has_usage_credits = v_flag
  where id = new.org_id
    and has_usage_credits is distinct from v_flag;
  return null;
end
$$;
comment on function private.sync_org_credit_flag() is
  'Trigger on credit_balances: keeps orgs.has_usage_credits = private.can_spend(...) in the same transaction, writing only on a flip.';

-- Fires only when the rule's answer can change: with the debt within the cap the answer is
-- (available + overage_limit > 0); above a lowered cap it depends on the grants, so always.
drop trigger sync_org_credit_flag on public.credit_balances;
create trigger sync_org_credit_flag
  after update of available, overage, overage_limit on public.credit_balances
  for each row
  when ((old.available + old.overage_limit > 0) is distinct from (new.available + new.overage_limit > 0)
        or old.overage > old.overage_limit or new.overage > new.overage_limit)
  execute function private.sync_org_credit_flag();

create or replace function public.refresh_orgs_has_usage_credits(p_batch_size integer default 10000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  if p_batch_size is null or p_batch_size not between 1 and 100000 then
    perform private.fail('invalid_batch_size', '22023', jsonb_build_object('batch_size', p_batch_size, 'min', 1, 'max', 100000));
  end if;
  with drift as (
    select b.org_id, f.flag
    from public.credit_balances b
    join public.orgs o on o.id = b.org_id
    cross join lateral (select private.can_spend(b.org_id, b.available, b.overage, b.overage_limit) as flag) f
    where o.has_usage_credits is distinct from f.flag
    order by b.org_id
    limit p_batch_size
    for update of b skip locked
  )
  update public.orgs o
  set has_usage_credits = d.flag
  from drift d
  where o.id = d.org_id and o.has_usage_credits is distinct from d.flag;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

-- The money core -------------------------------------------------------------------------------

drop function private.apply_balance_change(uuid, text, bigint, bigint, text, uuid, jsonb);
-- Why: the only way a balance changes, and now the debt too. Who: every money path (internal).
create function private.apply_balance_change(
  p_org_id uuid,
  p_kind text,
  p_amount bigint,
  p_held_delta bigint default 0,
  p_request_id text default null,
  p_grant_id uuid default null,
  p_metadata jsonb default '{}',
  p_overage_delta bigint default 0
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
        overage = b.overage + p_overage_delta,
        updated_at = now()
    where b.org_id = p_org_id
    returning b.*
  ),
  entry as (
    insert into public.credit_ledger (org_id, kind, amount, held_delta, balance_after, held_after, overage_delta, overage_after,
                                      request_id, grant_id, actor_user_id, actor_role, metadata)
    select p_org_id, p_kind, p_amount, p_held_delta, c.available, c.held, p_overage_delta, c.overage,
           p_request_id, p_grant_id,
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
revoke all on function private.apply_balance_change(uuid, text, bigint, bigint, text, uuid, jsonb, bigint) from public;
comment on function private.apply_balance_change(uuid, text, bigint, bigint, text, uuid, jsonb, bigint) is
  'Changes a locked balance (available, held, overage debt) and appends the matching ledger entry in one statement; the balance triggers see the ledger kind in tollgate.balance_change_kind. The only way a balance changes. Internal.';

drop function private.lock_and_settle(uuid);
-- Why: steps 1-2 of every charge/capture/release/refund. Who: charge, lock_request, batches.
create function private.lock_and_settle(p_org_id uuid)
returns public.credit_balances
language plpgsql
set search_path = ''
as $$
declare
  v_balance public.credit_balances;
  v_due boolean;
begin
  -- The exists() reads this statement's snapshot, taken before any wait for the lock; if a
  -- holder expired those grants meanwhile, private.expire_grants (a new statement) finds none.
  select b.org_id, b.available, b.held, b.overage, b.overage_limit,
         exists (select from public.credit_grants g
                 where g.org_id = p_org_id and g.status = 'active' and g.expires_at <= now())
  into v_balance.org_id, v_balance.available, v_balance.held, v_balance.overage, v_balance.overage_limit, v_due
  from public.credit_balances b where b.org_id = p_org_id for update of b;
  if not found then
    perform private.fail('unknown_org', 'PT404', jsonb_build_object('org_id', p_org_id));
  end if;
  if v_due then
    v_balance.available := v_balance.available - (private.expire_grants(p_org_id)).credits;
  end if;
  return v_balance;
end
$$;
revoke all on function private.lock_and_settle(uuid) from public;
comment on function private.lock_and_settle(uuid) is
  'Locks an org''s balance row and expires its due grants; returns its money figures as they then stand (org_id, available, held, overage, overage_limit; other fields null). The first step of a charge, capture, release and refund. Internal.';

drop function private.burn_grants(uuid, bigint);
-- Why: the burn-down rule in one place. Who: charge (when the head grant cannot cover it alone),
-- revoke_credits (p_operation null: every grant).
create function private.burn_grants(p_org_id uuid, p_amount bigint, p_operation text default null)
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
      and (p_operation is null or g.operations is null or p_operation = any (g.operations))
    order by g.priority, g.expires_at, g.created_at, g.id
  loop
    v_take := least(v_grant.remaining, v_left);
    update public.credit_grants set remaining = remaining - v_take where id = v_grant.id;
    v_allocations := v_allocations || jsonb_build_object('grant_id', v_grant.id, 'amount', v_take);
    v_left := v_left - v_take;
    exit when v_left = 0;
  end loop;
  if v_left > 0 then
    -- The figures said yes but the grants cannot cover it: an invariant is broken. Refuse rather
    -- than overdraw; reconcile_credits() reports the org.
    perform private.fail('balance_out_of_sync', 'XX000', jsonb_build_object('org_id', p_org_id, 'missing', v_left),
      'available exceeds the grants'' remaining credits; run reconcile_credits()');
  end if;
  return v_allocations;
end
$$;
revoke all on function private.burn_grants(uuid, bigint, text) from public;
comment on function private.burn_grants(uuid, bigint, text) is
  'Burns credits from the grants covering p_operation (null: every grant) in burn-down order; returns the allocations. Balance row locked and due grants settled by the caller. Internal.';

-- Why: "credits that can be spent on anything pay the debt first" is one rule. Who:
-- credit_grant, refund_credits (a regrant), reinstate_revoked.
create function private.repay_debt(p_grant_id uuid, p_debt bigint, p_credits bigint)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_paid bigint;
begin
  -- p_debt: the org's debt as the caller's pending balance change leaves it (balance locked by
  -- the caller); p_credits: the grant's credits that just arrived. A scoped grant pays nothing.
  if least(p_debt, p_credits) <= 0 then
    return 0;                                      -- no debt (the common case): nothing to touch
  end if;
  update public.credit_grants g
  set remaining = g.remaining - least(p_debt, p_credits), overage_repaid = g.overage_repaid + least(p_debt, p_credits)
  where g.id = p_grant_id and g.operations is null and g.status = 'active'
  returning least(p_debt, p_credits) into v_paid;
  return coalesce(v_paid, 0);
end
$$;
revoke all on function private.repay_debt(uuid, bigint, bigint) from public;
comment on function private.repay_debt(uuid, bigint, bigint) is
  'The repayment rule: credits that arrive on an active unscoped grant pay the org''s overage debt first (remaining → overage_repaid); returns what was paid, for the caller''s ledger entry (overage_delta). Balance locked by the caller. Internal.';

-- Why: crediting a grant is one rule (debt first, then spendable). Who: insert_grant,
-- activate_grants, activate_credit_grant, apply_checkout_event.
create function private.credit_grant(p_grant_id uuid, p_metadata jsonb)
returns public.credit_balances
language plpgsql
set search_path = ''
as $$
declare
  v_grant public.credit_grants;
  v_paid bigint;
begin
  select * into v_grant from public.credit_grants g where g.id = p_grant_id;
  v_paid := private.repay_debt(p_grant_id,
    (select b.overage from public.credit_balances b where b.org_id = v_grant.org_id), v_grant.remaining);
  return private.apply_balance_change(v_grant.org_id, 'grant', v_grant.amount, 0, null, p_grant_id,
    case when v_paid > 0 then coalesce(p_metadata, '{}') || jsonb_build_object('overage_repaid', v_paid)
         else coalesce(p_metadata, '{}') end,
    -v_paid);
end
$$;
revoke all on function private.credit_grant(uuid, jsonb) from public;
comment on function private.credit_grant(uuid, jsonb) is
  'Credits a grant just made active (remaining = amount): an unscoped grant pays the org''s overage debt first (overage_repaid); one ''grant'' ledger entry. Balance row locked by the caller. Internal.';

drop function private.return_to_grants(jsonb, bigint);
-- Why: the give-back rule for a request's credits. Who: release_hold, refund_credits.
create function private.return_to_grants(
  p_org_id uuid,
  p_allocations jsonb,
  p_amount bigint,
  out allocations jsonb,
  out returned_live bigint,
  out returned_expired bigint,
  out returned_debt bigint,
  out expired_operations text[]
)
returns record
language plpgsql
set search_path = ''
as $$
declare
  v_left bigint := p_amount;
  v_give bigint;
  v_live boolean;
  v_kept jsonb := '[]';
  v_piece record;
  v_repaid record;
  v_back bigint;
  v_take bigint;
  v_expired_unscoped boolean := false;
  v_expired_scopes text[] := '{}';
  v_operations text[];
begin
  returned_live := 0;
  returned_expired := 0;
  returned_debt := 0;
  for v_piece in
    select (a.value ->> 'grant_id')::uuid as grant_id, (a.value ->> 'amount')::bigint as amount, a.ordinality as ord
    from jsonb_array_elements(p_allocations) with ordinality a
    order by a.ordinality desc
  loop
    v_give := least(v_piece.amount, v_left);
    if v_give > 0 and v_piece.grant_id is null then
      -- The debt piece: lowers the debt; what a later grant has already repaid goes back to it.
      select least(b.overage, v_give) into returned_debt from public.credit_balances b where b.org_id = p_org_id;
      v_back := v_give - returned_debt;
      for v_repaid in
        select g.id, g.overage_repaid
        from public.credit_grants g
        where g.org_id = p_org_id and g.overage_repaid > 0
        order by g.activated_at desc nulls last, g.created_at desc, g.id desc
        for update
      loop
        exit when v_back = 0;
        v_take := least(v_back, v_repaid.overage_repaid);
        -- Back to a live grant's remaining, or expired with it; only unscoped grants repay debt.
        update public.credit_grants g
        set overage_repaid = g.overage_repaid - v_take,
            remaining = g.remaining + case when g.status = 'active' then v_take else 0 end,
            expired_amount = g.expired_amount + case when g.status = 'active' then 0 else v_take end
        where g.id = v_repaid.id
        returning g.status = 'active' into v_live;
        if v_live then
          returned_live := returned_live + v_take;
        else
          returned_expired := returned_expired + v_take;
          v_expired_unscoped := true;
        end if;
        v_back := v_back - v_take;
      end loop;
      if v_back > 0 then
        perform private.fail('allocation_out_of_sync', 'XX000', jsonb_build_object('missing', v_back),
          'the org''s debt and repaid debt cannot take back the request''s overage; run reconcile_credits()');
      end if;
      v_left := v_left - v_give;
    elsif v_give > 0 then
      -- Back to a live grant's remaining, or expired with it: one UPDATE (it takes the row lock).
      update public.credit_grants g
      set remaining = g.remaining + case when g.status = 'active' then v_give else 0 end,
          expired_amount = g.expired_amount + case when g.status = 'active' then 0 else v_give end
      where g.id = v_piece.grant_id
      returning g.status = 'active', g.operations into v_live, v_operations;
      if v_live then
        returned_live := returned_live + v_give;
      else
        returned_expired := returned_expired + v_give;
        v_expired_unscoped := v_expired_unscoped or v_operations is null;
        v_expired_scopes := v_expired_scopes || v_operations;
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
  -- What the expired credits could be spent on: any operation if one of their grants could,
  -- else the operations their grants covered.
  if returned_expired > 0 and not v_expired_unscoped then
    expired_operations := (select array_agg(distinct o order by o) from unnest(v_expired_scopes) o);
  end if;
end
$$;
revoke all on function private.return_to_grants(uuid, jsonb, bigint) from public;
comment on function private.return_to_grants(uuid, jsonb, bigint) is
  'Returns credits to where a request drew them from, newest piece first: grants (live, or expired with them) and the overage debt piece (lowers the debt, or goes back to the grants that repaid it); expired_operations: what the expired part could be spent on (null: anything). Balance locked by the caller. Internal.';

create or replace function private.release_hold(p_request public.credit_requests, p_amount bigint, p_reason text,
                                                out allocations jsonb, out balance_after bigint)
returns record
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
  v_back := private.return_to_grants(p_request.org_id, p_request.allocations, p_amount);
  v_balance := private.apply_balance_change(p_request.org_id, 'release', p_amount, -p_amount,
    p_request.request_id, null, jsonb_build_object('reason', p_reason), -v_back.returned_debt);
  if v_back.returned_expired > 0 then
    v_balance := private.apply_balance_change(p_request.org_id, 'expire', -v_back.returned_expired, 0,
      p_request.request_id, null, jsonb_build_object('reason', 'grant_expired_while_held'));
  end if;
  allocations := v_back.allocations;
  balance_after := v_balance.available;
end
$$;

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
  v_paid bigint := 0;
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

  v_back := private.return_to_grants(p_org_id, v_request.allocations, v_request.charged);
  if v_back.returned_expired > 0 then
    -- Made whole for our failure, for what those credits could buy: the regrant keeps their scope.
    insert into public.credit_grants (org_id, amount, remaining, source, external_ref, priority, expires_at, metadata, activated_at,
                                      operations)
    values (p_org_id, v_back.returned_expired, v_back.returned_expired, 'refund', p_request_id, 0, now() + interval '7 days',
            jsonb_build_object('request_id', p_request_id, 'reason', p_reason), now(), v_back.expired_operations)
    returning id into v_regrant_id;
  end if;
  if v_regrant_id is not null then
    -- A new grant: when it can be spent on anything it pays what debt is left first.
    v_paid := private.repay_debt(v_regrant_id,
      (select b.overage from public.credit_balances b where b.org_id = p_org_id) - v_back.returned_debt, v_back.returned_expired);
  end if;
  v_balance := private.apply_balance_change(p_org_id, 'refund', v_request.charged, 0, p_request_id, v_regrant_id,
    jsonb_build_object('reason', p_reason, 'regranted', v_back.returned_expired)
      || case when v_paid > 0 then jsonb_build_object('overage_repaid', v_paid) else '{}' end,
    -v_back.returned_debt - v_paid);

  v_request := private.settle_request(p_org_id, p_request_id, 'refunded', v_request.charged, v_back.allocations,
    v_balance.available, null, null, null, p_reason);
  return private.request_result(v_request, false);
end
$$;

-- The charge: when the head covering grant pays it all (the common case) nothing is added to
-- the plain charge but a filter on the head grant's scope; otherwise one probe of the org's
-- scoped grants gives what the operation may spend. The figures come with the balance lock.
create or replace function private.charge(
  p_org_id uuid, p_user_id uuid, p_kind text, p_operation text, p_request_id text,
  p_quantity integer, p_ttl_seconds integer, p_metadata jsonb
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
  v_balance public.credit_balances;
  v_available bigint;
  v_debt bigint := 0;
  v_grant_id uuid;
  v_allocations jsonb := '[]';
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
    v_balance := private.lock_and_settle(p_org_id);
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

  if v_cost > 0 and v_balance.overage <= v_balance.overage_limit then
    -- The common case first: the head covering grant in burn-down order covers the whole
    -- charge. Then the charge is allowed (the debt is within the limit and grants pay it all),
    -- and it is one UPDATE, found by its row address (no second index descent). No row lock
    -- before it and no risk that the address moves: every writer of an org's grants holds its
    -- balance lock. No grant is due here: lock_and_settle expired them.
    update public.credit_grants g
    set remaining = g.remaining - v_cost
    where g.ctid = (
        select h.ctid from public.credit_grants h
        where h.org_id = p_org_id and h.status = 'active' and h.remaining > 0
          and (h.operations is null or p_operation = any (h.operations))
        order by h.priority, h.expires_at, h.created_at, h.id
        limit 1
      )
      and g.remaining >= v_cost
    returning g.id into v_grant_id;
  end if;

  if v_grant_id is not null then
    v_allocations := jsonb_build_array(jsonb_build_object('grant_id', v_grant_id, 'amount', v_cost));
  elsif v_cost > 0 then
    -- What this operation may spend: every grant's credits net of the debt, less the scoped
    -- grants that do not cover it (one probe of an index that is empty for most orgs).
    v_available := v_balance.available - coalesce((
      select sum(g.remaining) from public.credit_grants g
      where g.org_id = p_org_id and g.status = 'active' and g.operations is not null
        and g.remaining > 0 and not (p_operation = any (g.operations))), 0);
    if v_cost > v_available + v_balance.overage_limit then
      perform private.fail('insufficient_credits', 'PT402',
        jsonb_build_object('required', v_cost, 'available', v_available, 'operation', p_operation, 'quantity', p_quantity)
          -- The overage figures, for an org that has an overage limit or a debt.
          || case when v_balance.overage_limit > 0 or v_balance.overage > 0
                  then jsonb_build_object('overage', v_balance.overage, 'overage_limit', v_balance.overage_limit)
                  else '{}' end,
        'top up credits or lower the quantity');
    end if;
    -- Beyond the covering grants' credits (v_available + overage) the rest is debt, within the
    -- limit by the test above; the debt piece is always the last allocation.
    v_debt := greatest(v_cost - (v_available + v_balance.overage), 0);
    if v_cost > v_debt then
      v_allocations := private.burn_grants(p_org_id, v_cost - v_debt, p_operation);
    end if;
    if v_debt > 0 then
      v_allocations := v_allocations || jsonb_build_object('grant_id', null, 'amount', v_debt);
    end if;
  end if;

  if p_kind = 'consume' then
    v_balance := private.apply_balance_change(p_org_id, 'charge', -v_cost, 0, p_request_id, null,
      jsonb_build_object('operation', p_operation, 'quantity', p_quantity), v_debt);
  else
    v_balance := private.apply_balance_change(p_org_id, 'hold', -v_cost, v_cost, p_request_id, null,
      jsonb_build_object('operation', p_operation, 'quantity', p_quantity), v_debt);
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
  'Charges or reserves price × quantity once per (org, request id) from the grants covering the operation, then as overage debt within the limit; validation, price and replay probe before the balance lock, the money writes under it. Internal: consume_credits, reserve_credits, consume_credits_batch, workflow RPCs.';

create or replace function private.request_result(p_request public.credit_requests, p_replayed boolean)
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
    -- The part of what is charged or held that is overage debt (the allocations' last piece).
    'overage', case when p_request.allocations @> '[{"grant_id": null}]'
                    then (p_request.allocations -> -1 ->> 'amount')::bigint end,
    'hold_expires_at', p_request.hold_expires_at,
    'balance_before', p_request.balance_before,
    'balance_after', p_request.balance_after,
    'replayed', p_replayed
  ));
end
$$;
comment on function private.request_result(public.credit_requests, boolean) is
  'JSON answer for a charge or hold (overage: the part taken as debt, when any). Internal.';

-- Batch: the atomic refusal carries the failing item's overage figures.
create or replace function public.consume_credits_batch(p_items jsonb, p_org_id uuid default null, p_atomic boolean default true)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.caller_org(p_org_id);
  v_user_id uuid := (select auth.uid());
  v_atomic boolean := coalesce(p_atomic, true);
  v_results jsonb[] := '{}';
  v_result jsonb;
  v_item jsonb;
  v_index integer;
  v_charged_total bigint := 0;
  v_state text;
  v_key text;
  v_detail text;
  v_hint text;
  v_failed jsonb;
begin
  perform private.check_batch_items(p_items, 1000);

  if v_atomic then
    begin
      for v_item, v_index in select e.item, (e.i - 1)::integer from jsonb_array_elements(p_items) with ordinality e(item, i) loop
        v_result := private.charge(v_org_id, v_user_id, 'consume', v_item ->> 'operation', v_item ->> 'request_id',
          coalesce((v_item ->> 'quantity')::integer, 1), null, coalesce(v_item -> 'metadata', '{}'));
        if not (v_result ->> 'replayed')::boolean then
          v_charged_total := v_charged_total + (v_result ->> 'charged')::bigint;
        end if;
        v_results := array_append(v_results, v_result);
      end loop;
    exception when sqlstate 'PT402' or sqlstate 'PT404' or sqlstate 'PT409' or sqlstate '22023' then
      get stacked diagnostics v_state = returned_sqlstate, v_key = message_text, v_detail = pg_exception_detail, v_hint = pg_exception_hint;
      v_failed := coalesce(nullif(v_detail, '')::jsonb, '{}');
      if v_state = 'PT402' then
        -- The figures the failing item found, plus what the items before it charged (all rolled
        -- back now); its own overage figures as it found them.
        perform private.fail('insufficient_credits', jsonb_build_object(
            'required', v_charged_total + (v_failed ->> 'required')::bigint,
            'available', v_charged_total + (v_failed ->> 'available')::bigint,
            'item', v_index,
            'request_id', v_item ->> 'request_id',
            'operation', v_item ->> 'operation',
            'item_required', (v_failed ->> 'required')::bigint)
            || case when v_failed ? 'overage' then jsonb_build_object('item_available', (v_failed ->> 'available')::bigint,
                 'overage', (v_failed ->> 'overage')::bigint, 'overage_limit', (v_failed ->> 'overage_limit')::bigint)
               else '{}' end,
          'top up credits, or send fewer items (p_atomic false charges the items that fit)');
      end if;
      -- Any other item error fails the batch with its own key, naming the item.
      raise exception using message = v_key, errcode = v_state,
        detail = (v_failed || jsonb_build_object('item', v_index, 'request_id', v_item ->> 'request_id'))::text,
        hint = coalesce(nullif(v_hint, ''), 'nothing in the batch was charged');
    end;
  else
    -- Locked and due grants settled in the outer transaction: an item's rollback undoes neither.
    perform private.lock_and_settle(v_org_id);
    for v_item, v_index in select e.item, (e.i - 1)::integer from jsonb_array_elements(p_items) with ordinality e(item, i) loop
      begin
        v_result := private.charge(v_org_id, v_user_id, 'consume', v_item ->> 'operation', v_item ->> 'request_id',
          coalesce((v_item ->> 'quantity')::integer, 1), null, coalesce(v_item -> 'metadata', '{}'));
        if not (v_result ->> 'replayed')::boolean then
          v_charged_total := v_charged_total + (v_result ->> 'charged')::bigint;
        end if;
      exception when sqlstate 'PT402' or sqlstate 'PT404' or sqlstate 'PT409' or sqlstate '22023' then
        -- Documented item errors only; anything else (a broken invariant, a cancel) fails the call.
        get stacked diagnostics v_state = returned_sqlstate, v_key = message_text, v_detail = pg_exception_detail;
        v_result := jsonb_build_object(
          'request_id', v_item ->> 'request_id',
          'operation', v_item ->> 'operation',
          'error', v_key,
          'sqlstate', v_state,
          'details', coalesce(nullif(v_detail, '')::jsonb, '{}'));
      end;
      v_results := array_append(v_results, v_result);
    end loop;
  end if;

  return jsonb_build_object(
    'org_id', v_org_id,
    'results', to_jsonb(v_results),
    'charged_total', v_charged_total,
    'balance_after', (select b.available from public.credit_balances b where b.org_id = v_org_id)
  );
end
$$;

-- Grants -----------------------------------------------------------------------------------------

-- Why: one place for a caller's list of operations (grants). Who: grant_credits.
create function private.check_operations(p_operations text[])
returns text[]
language plpgsql
stable
set search_path = ''
as $$
declare
  v_sorted text[];
  v_unknown text[];
begin
  if p_operations is null then
    return null;
  end if;
  if coalesce(array_ndims(p_operations), 1) <> 1 or cardinality(p_operations) not between 1 and 100
     or exists (select from unnest(p_operations) o where o is null or o !~ '^[a-z][a-z0-9_.:-]{0,63}$') then
    perform private.fail('invalid_operations', jsonb_build_object('count', cardinality(p_operations), 'min', 1, 'max', 100)
        || case when cardinality(p_operations) <= 100 then jsonb_build_object('operations', to_jsonb(p_operations)) else '{}' end,
      'null for any operation, or a flat list of 1 to 100 operation names from the price list');
  end if;
  select array_agg(distinct o order by o) into v_sorted from unnest(p_operations) o;
  select array_agg(o order by o) into v_unknown
  from unnest(v_sorted) o
  where not exists (select from public.credit_prices p where p.operation = o and p.active);
  if v_unknown is not null then
    perform private.fail('unknown_operation', jsonb_build_object('operations', to_jsonb(v_unknown)),
      'a scoped grant names active operations of the price list');
  end if;
  return v_sorted;
end
$$;
revoke all on function private.check_operations(text[]) from public;
comment on function private.check_operations(text[]) is
  'Validates a grant''s operations (null: any) and returns them sorted and de-duplicated; invalid_operations 22023, unknown_operation PT404. Internal.';

create or replace function private.grant_result(p_grant public.credit_grants, p_replayed boolean)
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
    'effective_at', p_grant.effective_at,
    'operations', p_grant.operations,
    'overage_repaid', p_grant.overage_repaid,
    'balance_after', (select b.available from public.credit_balances b where b.org_id = p_grant.org_id),
    'replayed', p_replayed
  );
end
$$;
comment on function private.grant_result(public.credit_grants, boolean) is
  'JSON answer for a grant (with effective_at, operations, overage_repaid). Internal.';

drop function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz);
-- Why: one idempotent grant insert. Who: grant_credits, grant_onboarding_credits, checkout, top-ups.
create function private.insert_grant(
  p_org_id uuid, p_amount bigint, p_source text, p_external_ref text, p_expires_at timestamptz,
  p_metadata jsonb, p_priority integer, p_pending boolean, p_effective_at timestamptz default null,
  p_operations text[] default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_grant public.credit_grants;
  v_scheduled boolean := p_effective_at > now();
begin
  if p_external_ref is not null then
    select * into v_grant from public.credit_grants g
    where g.org_id = p_org_id and g.source = p_source and g.external_ref = p_external_ref;
    if found then
      -- A retried payment is the same payment: the amount must match, and so must the start and
      -- the scope. The expiry is often computed at receipt time ("now + 30 days") and
      -- legitimately differs.
      if v_grant.amount <> p_amount or v_grant.effective_at is distinct from p_effective_at
         or v_grant.operations is distinct from p_operations then
        perform private.fail('idempotency_conflict',
          jsonb_build_object('source', p_source, 'external_ref', p_external_ref, 'amount', v_grant.amount,
                             'effective_at', v_grant.effective_at, 'operations', v_grant.operations),
          'this external reference was granted with another amount, start or scope');
      end if;
      return private.grant_result(v_grant, true);
    end if;
  end if;

  if p_expires_at is not null and p_expires_at <= now() then
    perform private.fail('invalid_expiry', jsonb_build_object('expires_at', p_expires_at), 'expires_at must be in the future');
  end if;
  if p_effective_at is not null then
    if not isfinite(p_effective_at) or p_expires_at <= p_effective_at or (v_scheduled and p_pending) then
      perform private.fail('invalid_effective_at',
        jsonb_build_object('effective_at', p_effective_at, 'expires_at', p_expires_at, 'pending', p_pending),
        'a grant starts at a finite time before its expiry; a pending grant starts when its payment succeeds');
    end if;
  end if;

  insert into public.credit_grants (org_id, amount, remaining, source, external_ref, status, priority, expires_at, metadata,
                                    pending_since, activated_at, effective_at, operations)
  values (p_org_id, p_amount, p_amount, p_source, p_external_ref,
          case when p_pending then 'pending' when v_scheduled then 'scheduled' else 'active' end,
          p_priority, p_expires_at, p_metadata,
          case when p_pending then now() end,
          case when not p_pending and not coalesce(v_scheduled, false) then now() end,
          p_effective_at, p_operations)
  returning * into v_grant;

  if v_grant.status = 'active' then
    perform private.credit_grant(v_grant.id, jsonb_build_object('source', p_source, 'external_ref', p_external_ref));
    select * into v_grant from public.credit_grants g where g.id = v_grant.id;
  end if;
  return private.grant_result(v_grant, false);
end
$$;
revoke all on function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz, text[]) from public;
comment on function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz, text[]) is
  'Inserts a grant idempotently on (org, source, external_ref, with the same amount, start and scope) and credits it (private.credit_grant) unless pending or scheduled. Balance locked by the caller. Internal.';

drop function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz);
-- Why: the service's way to add credits. Who: service_role (backends, PostgREST).
create function public.grant_credits(
  p_org_id uuid,
  p_amount bigint,
  p_source text,
  p_external_ref text default null,
  p_expires_at timestamptz default null,
  p_metadata jsonb default '{}',
  p_priority integer default 100,
  p_pending boolean default false,
  p_effective_at timestamptz default null,
  p_operations text[] default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_metadata jsonb := private.check_metadata(p_metadata);
  v_operations text[];
begin
  perform private.check_credits(p_amount, 'amount');
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
  v_operations := private.check_operations(p_operations);
  perform private.lock_balance(p_org_id);
  return private.insert_grant(p_org_id, p_amount, p_source, p_external_ref, p_expires_at, v_metadata, p_priority,
    coalesce(p_pending, false), p_effective_at, v_operations);
end
$$;
revoke all on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz, text[]) from public;
grant execute on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz, text[]) to service_role;
comment on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz, text[]) is
  'Server RPC: add credits to an org, idempotent on (org, source, external_ref); p_pending waits for activate_credit_grant; p_effective_at in the future schedules the grant (not spendable, not in available, until activate_scheduled_grants() credits it); p_operations scopes it to those operations (null: any). An unscoped grant pays the org''s overage debt first. Errors: idempotency_conflict PT409, unknown_operation PT404, invalid_* 22023.';

create or replace function private.activate_grants(p_org_id uuid, p_grant_ids uuid[] default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_grant public.credit_grants;
  v_activated uuid[] := '{}';
begin
  for v_grant in
    select g.* from public.credit_grants g
    where g.org_id = p_org_id and g.status = 'scheduled' and g.effective_at <= now()
      and (p_grant_ids is null or g.id = any (p_grant_ids))
    order by g.effective_at, g.id
    for update
  loop
    -- One grant at a time, in start order: the last one started is the alerts' reference.
    update public.credit_grants set status = 'active', activated_at = now() where id = v_grant.id;
    perform private.credit_grant(v_grant.id,
      jsonb_build_object('source', v_grant.source, 'external_ref', v_grant.external_ref, 'effective_at', v_grant.effective_at));
    v_activated := v_activated || v_grant.id;
  end loop;
  if cardinality(v_activated) > 0 then
    perform private.expire_grants(p_org_id, v_activated);
  end if;
  return cardinality(v_activated);
end
$$;

create or replace function public.activate_credit_grant(p_org_id uuid, p_source text, p_external_ref text)
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
  update public.credit_grants set status = 'active', activated_at = now() where id = v_grant.id;
  perform private.credit_grant(v_grant.id,
    jsonb_build_object('source', p_source, 'external_ref', p_external_ref, 'activated', true));
  -- A grant whose expiry passed while it was pending is credited and expired at once.
  perform private.expire_due_grants(p_org_id);
  select * into v_grant from public.credit_grants g where g.id = v_grant.id;
  return private.grant_result(v_grant, false);
end
$$;

-- Checkout: a purchase paid after its failure is credited by the one rule too.
create or replace function public.apply_checkout_event(p_event_id text, p_event_type text, p_session_id text, p_org_id uuid, p_credits bigint, p_outcome text, p_payment_intent_id text DEFAULT NULL::text, p_amount bigint DEFAULT NULL::bigint, p_currency text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_payment public.stripe_payments;
  v_grant public.credit_grants;
  v_metadata jsonb;
  v_outcome text;
  v_exception jsonb;
  v_settled jsonb;
begin
  perform private.check_payment_event(p_event_id, p_event_type);
  if p_session_id is null or char_length(p_session_id) not between 1 and 200 then
    perform private.fail('invalid_external_ref', '22023', jsonb_build_object('max_length', 200), 'the checkout session id');
  end if;
  if p_outcome is null or p_outcome not in ('paid', 'unpaid', 'failed') then
    perform private.fail('invalid_outcome', '22023', jsonb_build_object('outcome', p_outcome), 'paid, unpaid or failed');
  end if;
  perform private.check_credits(p_credits, 'amount');
  if p_amount is not null and p_amount < 1 then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('payment_amount', p_amount, 'min', 1));
  end if;
  if p_currency is not null and p_currency !~ '^[A-Za-z]{3}$' then
    perform private.fail('invalid_currency', '22023', jsonb_build_object('currency', left(p_currency, 10)), 'an ISO 4217 code such as eur');
  end if;

  if p_payment_intent_id is not null then
    v_payment := private.lock_stripe_payment(p_payment_intent_id);
  end if;

  if p_org_id is null or not exists (select 1 from public.orgs o where o.id = p_org_id) then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'unknown_org',
      jsonb_build_object('session_id', p_session_id, 'credits', p_credits, 'outcome', p_outcome, 'payment_intent_id', p_payment_intent_id));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'unknown_org', 'exception_id', v_exception -> 'exception_id');
  end if;
  -- One checkout session pays for one org. Events of a session are serialised (a transaction
  -- lock on its id), so two events naming different orgs cannot both find it unclaimed.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('tollgate.checkout_session:' || p_session_id, 0));
  if exists (select 1 from public.credit_grants g
             where g.source = 'purchase' and g.external_ref = p_session_id and g.org_id <> p_org_id) then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'session_org_conflict',
      jsonb_build_object('session_id', p_session_id, 'granted_to', (select g.org_id from public.credit_grants g
        where g.source = 'purchase' and g.external_ref = p_session_id and g.org_id <> p_org_id limit 1)));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'session_org_conflict', 'exception_id', v_exception -> 'exception_id');
  end if;
  if v_payment.grant_id is not null and (v_payment.org_id <> p_org_id or v_payment.checkout_session_id is distinct from p_session_id) then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'payment_intent_conflict',
      jsonb_build_object('payment_intent_id', p_payment_intent_id, 'linked_org_id', v_payment.org_id, 'linked_session_id', v_payment.checkout_session_id));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'payment_intent_conflict', 'exception_id', v_exception -> 'exception_id');
  end if;

  perform private.lock_balance(p_org_id);
  select * into v_grant from public.credit_grants g
  where g.org_id = p_org_id and g.source = 'purchase' and g.external_ref = p_session_id
  for update;
  if found and v_grant.amount <> p_credits then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'idempotency_conflict',
      jsonb_build_object('session_id', p_session_id, 'granted', v_grant.amount, 'credits', p_credits));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'idempotency_conflict', 'exception_id', v_exception -> 'exception_id');
  end if;

  v_metadata := jsonb_strip_nulls(jsonb_build_object('stripe_event_id', p_event_id, 'checkout_session_id', p_session_id,
    'payment_intent_id', p_payment_intent_id));
  if v_grant.id is null then
    -- The first event of this session, whichever it is.
    perform private.insert_grant(p_org_id, p_credits, 'purchase', p_session_id, null, v_metadata, 100, p_outcome <> 'paid');
    if p_outcome = 'failed' then
      perform public.void_credit_grant(p_org_id, 'purchase', p_session_id);
    end if;
    v_outcome := case p_outcome when 'paid' then 'granted' when 'unpaid' then 'pending' else 'voided' end;
  elsif v_grant.status = 'pending' and p_outcome = 'paid' then
    perform public.activate_credit_grant(p_org_id, 'purchase', p_session_id);
    v_outcome := 'granted';
  elsif v_grant.status = 'pending' and p_outcome = 'failed' then
    perform public.void_credit_grant(p_org_id, 'purchase', p_session_id);
    v_outcome := 'voided';
  elsif v_grant.status = 'voided' and p_outcome = 'paid' then
    -- Paid wins: the money arrived after all. Credited now, exactly once.
    update public.credit_grants
    set status = 'active', remaining = amount, activated_at = now()
    where id = v_grant.id;
    perform private.credit_grant(v_grant.id,
      jsonb_build_object('source', 'purchase', 'external_ref', p_session_id, 'activated', true, 'after_failure', true));
    v_exception := private.record_contradiction(p_event_id, p_event_type, p_session_id, p_org_id, v_grant, p_outcome);
    v_outcome := 'granted';
  elsif v_grant.status in ('active', 'expired') and p_outcome = 'failed' then
    -- Paid wins: a failure reported after the success takes nothing back; someone should look.
    v_exception := private.record_contradiction(p_event_id, p_event_type, p_session_id, p_org_id, v_grant, p_outcome);
    v_outcome := 'unapplied';
  else
    -- Nothing new: a duplicate, or an event the grant has already moved past.
    v_outcome := 'replayed';
  end if;

  select * into v_grant from public.credit_grants g
  where g.org_id = p_org_id and g.source = 'purchase' and g.external_ref = p_session_id;
  if p_payment_intent_id is not null then
    update public.stripe_payments
    set org_id = p_org_id, grant_id = v_grant.id, checkout_session_id = p_session_id, credits = v_grant.amount,
        amount = coalesce(amount, p_amount), currency = coalesce(currency, lower(p_currency)), updated_at = now()
    where payment_intent_id = p_payment_intent_id
      and (org_id, grant_id, checkout_session_id, credits, amount, currency)
        is distinct from (p_org_id, v_grant.id, p_session_id, v_grant.amount, coalesce(amount, p_amount), coalesce(currency, lower(p_currency)));
    v_settled := private.settle_stripe_payment(p_payment_intent_id, p_event_id, p_event_type);
  end if;

  return jsonb_strip_nulls(jsonb_build_object(
    'outcome', v_outcome,
    'reason', case when v_outcome = 'unapplied' then v_exception ->> 'reason' end,
    'exception', coalesce(v_exception ->> 'reason', v_settled ->> 'exception'),
    'grant', private.grant_result(v_grant, v_outcome = 'replayed'),
    'payment', v_settled
  ));
end
$_$;


-- Revocations: without a named grant, every grant in burn-down order, then the overage room.
create or replace function private.revoke_credits(p_org_id uuid, p_amount bigint, p_reason text, p_external_ref text, p_grant_id uuid, p_metadata jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_revocation public.credit_revocations;
  v_grant public.credit_grants;
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  v_allocations jsonb := '[]';
  v_balance public.credit_balances;
  v_debt bigint := 0;
  v_restored bigint := 0;
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
  select * into v_balance from public.credit_balances b where b.org_id = p_org_id;

  if p_grant_id is null then
    -- Every grant's credits (available + overage), whatever their scope, then the overage room.
    v_take := least(p_amount, v_balance.available + v_balance.overage);
    v_allocations := private.burn_grants(p_org_id, v_take);
    v_debt := least(p_amount - v_take, greatest(v_balance.overage_limit - v_balance.overage, 0));
  else
    select * into v_grant from public.credit_grants g where g.id = p_grant_id for update;
    v_take := case when v_grant.status = 'active' then least(p_amount, v_grant.remaining) else 0 end;
    if v_take > 0 then
      update public.credit_grants set remaining = remaining - v_take where id = p_grant_id;
      v_allocations := jsonb_build_array(jsonb_build_object('grant_id', p_grant_id, 'amount', v_take));
    end if;
    -- Credits of this grant that paid the org's debt were spent on it: taking them back (its
    -- payment refunded or disputed) brings that debt back, whatever the limit.
    v_restored := least(p_amount - v_take, v_grant.overage_repaid);
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
  if v_restored > 0 then
    update public.credit_grants
    set overage_repaid = overage_repaid - v_restored, revoked_amount = revoked_amount + v_restored
    where id = p_grant_id;
    perform private.apply_balance_change(p_org_id, 'revoke', -v_restored, 0, null, p_grant_id,
      coalesce(p_metadata, '{}') || jsonb_build_object('external_ref', p_external_ref, 'reason', p_reason, 'overage_restored', v_restored),
      v_restored);
    v_revoked := v_revoked + v_restored;
  end if;
  if v_debt > 0 then
    -- Beyond the grants, within the overage limit: the org owes it, like an overage charge.
    perform private.apply_balance_change(p_org_id, 'revoke', -v_debt, 0, null, null,
      coalesce(p_metadata, '{}') || jsonb_build_object('external_ref', p_external_ref, 'reason', p_reason, 'overage', v_debt), v_debt);
    v_revoked := v_revoked + v_debt;
  end if;

  insert into public.credit_revocations (
    org_id, external_ref, amount, grant_id, reason, revoked, shortfall, allocations, balance_after,
    actor_user_id, actor_role, metadata, overage, overage_restored
  ) values (
    p_org_id, p_external_ref, p_amount, p_grant_id, p_reason, v_revoked, p_amount - v_revoked, v_allocations,
    (select b.available from public.credit_balances b where b.org_id = p_org_id),
    (v_claims ->> 'sub')::uuid, coalesce(v_claims ->> 'role', 'system'), coalesce(p_metadata, '{}'), v_debt, v_restored
  )
  returning * into v_revocation;
  return private.revocation_result(v_revocation, false);
end
$$;
comment on function private.revoke_credits(uuid, bigint, text, text, uuid, jsonb) is
  'Takes credits back once per (org, external_ref): from one grant (its remaining credits, then the debt it repaid comes back), or from every grant in burn-down order and then as overage debt within the limit; never beyond. Balance locked by the caller. Internal.';

create or replace function private.revocation_result(p_revocation public.credit_revocations, p_replayed boolean)
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
  ) || case when p_revocation.overage > 0 then jsonb_build_object('overage', p_revocation.overage) else '{}' end
    || case when p_revocation.overage_restored > 0 then jsonb_build_object('overage_restored', p_revocation.overage_restored) else '{}' end;
end
$$;
comment on function private.revocation_result(public.credit_revocations, boolean) is
  'JSON answer for a revocation (overage: the part of revoked taken as debt). Internal.';

-- Alerts: the payload says how deep in overage the org is.
create or replace function private.record_low_balance_alerts() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
        'overage', new.overage,
        'overage_limit', new.overage_limit,
        'occurred_at', now()
      ))
      on conflict (org_id, grant_id, threshold) where status <> 'cancelled' do nothing;
      new.alert_threshold_next := case v_threshold when 50 then 75 when 75 then 90 when 90 then 100 end;
    else
      exit;
    end if;
  end loop;
  return new;
end
$$;


-- Reads and settings --------------------------------------------------------------------------

create or replace function public.get_credit_balance(p_org_id uuid default null)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_org_id uuid := private.caller_org(p_org_id);
  v_balance public.credit_balances;
  v_due bigint;
  v_next record;
  v_scheduled bigint;
  v_start record;
  v_scopes jsonb;
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
  select coalesce(sum(g.amount), 0) into v_scheduled
  from public.credit_grants g
  where g.org_id = v_org_id and g.status = 'scheduled';
  select g.effective_at, sum(g.amount) as amount into v_start
  from public.credit_grants g
  where g.org_id = v_org_id and g.status = 'scheduled'
  group by g.effective_at
  order by g.effective_at
  limit 1;
  -- Spendable credits by scope (null: any operation), the unscoped group first.
  select coalesce(jsonb_agg(jsonb_build_object('operations', s.operations, 'available', s.available)
                            order by s.operations is not null, s.operations), '[]')
  into v_scopes
  from (
    select g.operations, sum(g.remaining) as available
    from public.credit_grants g
    where g.org_id = v_org_id and g.status = 'active' and g.remaining > 0
      and (g.expires_at is null or g.expires_at > now())
    group by g.operations
  ) s;
  return jsonb_build_object(
    'org_id', v_org_id,
    'available', v_balance.available - v_due,
    'held', v_balance.held,
    'overage', v_balance.overage,
    'overage_limit', v_balance.overage_limit,
    'scopes', v_scopes,
    'next_expiry_at', v_next.expires_at,
    'next_expiry_amount', v_next.amount,
    'scheduled', v_scheduled,
    'next_start_at', v_start.effective_at,
    'next_start_amount', v_start.amount
  );
end
$$;
comment on function public.get_credit_balance(uuid) is
  'User RPC: {org_id, available, held, overage, overage_limit, scopes, next_expiry_at, next_expiry_amount, scheduled, next_start_at, next_start_amount} for the caller''s org (default: personal). available = Σ scopes.available − overage (below zero in overage); scopes: [{operations (null: any), available}]; scheduled: credits of grants that start later (not in available).';

-- Why: the spend cap is the service's decision (it is credit extended to a customer).
-- Who: service_role (backends, PostgREST).
create function public.set_overage_limit(p_org_id uuid, p_limit bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_balance public.credit_balances;
begin
  perform private.check_credits(p_limit, 'limit', 'invalid_limit', 0, 'a number of credits from 0 (no overage) to 10^12');
  v_balance := private.lock_balance(p_org_id);
  if v_balance.overage_limit <> p_limit then
    update public.credit_balances b set overage_limit = p_limit, updated_at = now()
    where b.org_id = p_org_id
    returning b.* into v_balance;
  end if;
  return jsonb_build_object(
    'org_id', p_org_id,
    'overage_limit', v_balance.overage_limit,
    'overage', v_balance.overage,
    'available', v_balance.available,
    'has_usage_credits', (select o.has_usage_credits from public.orgs o where o.id = p_org_id)
  );
end
$$;
revoke all on function public.set_overage_limit(uuid, bigint) from public, anon, authenticated;
grant execute on function public.set_overage_limit(uuid, bigint) to service_role;
comment on function public.set_overage_limit(uuid, bigint) is
  'Server RPC: how far below zero the org''s available may go (0 by default); may be set below the current debt (nothing new is charged beyond it). Answers {org_id, overage_limit, overage, available, has_usage_credits}. Errors: invalid_limit 22023, unknown_org PT404.';

-- Reconciliation: the debt against the ledger and against its sources; grants count what they repaid.
create or replace function public.reconcile_credits() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_run_id bigint;
  v_issues integer;
  v_exceptions integer;
  v_orgs integer;
begin
  insert into public.credit_reconciliation_runs default values returning id into v_run_id;

  with balances as (
    select b.org_id, b.available, b.held, b.overage, o.has_usage_credits,
      private.can_spend(b.org_id, b.available, b.overage, b.overage_limit) as can_spend,
      coalesce((select sum(g.remaining) from public.credit_grants g where g.org_id = b.org_id and g.status = 'active'), 0) as grants_remaining,
      l.ledger_available, l.ledger_held, l.ledger_revoked,
      coalesce((select sum(r.reserved) from public.credit_requests r where r.org_id = b.org_id and r.status = 'held'), 0) as open_holds,
      coalesce((select sum(v.revoked) from public.credit_revocations v where v.org_id = b.org_id), 0) as revocations_revoked,
      l.ledger_overage,
      -- Where the debt came from (requests' debt pieces, revocations) and where it went (grants).
      coalesce((select sum((a.value ->> 'amount')::bigint) from public.credit_requests r, jsonb_array_elements(r.allocations) a
                where r.org_id = b.org_id and r.allocations @> '[{"grant_id": null}]' and a.value -> 'grant_id' = 'null'::jsonb), 0)
        + coalesce((select sum(v.overage) from public.credit_revocations v where v.org_id = b.org_id), 0) as debt_incurred,
      coalesce((select sum(g.overage_repaid) from public.credit_grants g where g.org_id = b.org_id and g.overage_repaid > 0), 0) as debt_repaid
    from public.credit_balances b
    join public.orgs o on o.id = b.org_id
    -- One pass over the org's ledger for all three sums.
    cross join lateral (
      select coalesce(sum(x.amount), 0) as ledger_available,
        coalesce(sum(x.held_delta), 0) as ledger_held,
        coalesce(-sum(x.amount) filter (where x.kind = 'revoke'), 0) as ledger_revoked,
        coalesce(sum(x.overage_delta), 0) as ledger_overage
      from public.credit_ledger x
      where x.org_id = b.org_id
    ) l
  ),
  balance_issues as (
    select org_id, 'available_vs_grants' as check_name, grants_remaining - overage as expected, available as actual from balances where available <> grants_remaining - overage
    union all
    select org_id, 'available_vs_ledger', ledger_available, available from balances where available <> ledger_available
    union all
    select org_id, 'held_vs_ledger', ledger_held, held from balances where held <> ledger_held
    union all
    select org_id, 'held_vs_open_holds', open_holds, held from balances where held <> open_holds
    union all
    select org_id, 'flag_vs_available', can_spend::int, has_usage_credits::int from balances where has_usage_credits <> can_spend
    union all
    select org_id, 'overage_vs_ledger', ledger_overage, overage from balances where overage <> ledger_overage
    union all
    -- Debt outstanding plus debt repaid is exactly the debt taken on.
    select org_id, 'overage_vs_allocations', debt_incurred, overage + debt_repaid from balances where overage + debt_repaid <> debt_incurred
    union all
    select org_id, 'revocations_vs_ledger', revocations_revoked, ledger_revoked from balances where revocations_revoked <> ledger_revoked
  ),
  -- Requests with a charge or capture entry, as one set joined below: linear in the ledger
  -- (a hash that spills to disk when it must), never one ledger lookup per request.
  charged_requests as (
    select distinct l.org_id, l.request_id from public.credit_ledger l
    where l.kind in ('charge', 'capture') and l.request_id is not null
  ),
  request_ledger as (
    select r.org_id, r.request_id, r.status, r.charged - r.refunded as net_charged,
      case when r.status = 'held' then r.reserved else r.charged - r.refunded end as expected_allocated,
      coalesce((select sum((a.value ->> 'amount')::bigint) from jsonb_array_elements(r.allocations) a), 0) as allocated,
      c.request_id is not null as has_charge_entry
    from public.credit_requests r
    left join charged_requests c on c.org_id = r.org_id and c.request_id = r.request_id
  ),
  request_issues as (
    select org_id, 'request_without_ledger' as check_name, net_charged as expected, 0 as actual, jsonb_build_object('request_id', request_id) as detail
    from request_ledger where net_charged > 0 and not has_charge_entry
    union all
    select org_id, 'allocations_vs_request', expected_allocated, allocated, jsonb_build_object('request_id', request_id)
    from request_ledger where allocated <> expected_allocated
    union all
    select l.org_id, 'ledger_without_request', 0, -l.amount, jsonb_build_object('request_id', l.request_id, 'ledger_id', l.id)
    from public.credit_ledger l
    where l.kind in ('charge', 'hold', 'capture', 'release', 'refund')
      and not exists (select 1 from public.credit_requests r where r.org_id = l.org_id and r.request_id = l.request_id)
  ),
  grant_issues as (
    -- What a grant has given away (beyond expiry, revocation and debt) must be exactly what
    -- requests still hold of it.
    select g.org_id, 'grant_vs_allocations' as check_name, g.amount - g.remaining - g.expired_amount - g.revoked_amount - g.overage_repaid as expected,
      coalesce(a.allocated, 0) as actual, jsonb_build_object('grant_id', g.id) as detail
    from public.credit_grants g
    left join (
      select (x.value ->> 'grant_id')::uuid as grant_id, sum((x.value ->> 'amount')::bigint) as allocated
      from public.credit_requests r, jsonb_array_elements(r.allocations) x
      where x.value -> 'grant_id' <> 'null'::jsonb
      group by 1
    ) a on a.grant_id = g.id
    where g.status in ('active', 'expired')
      and g.amount - g.remaining - g.expired_amount - g.revoked_amount - g.overage_repaid <> coalesce(a.allocated, 0)
  ),
  schedule_issues as (
    -- A grant that has not started has not been credited: no ledger entry names it.
    select g.org_id, 'scheduled_grant_in_ledger' as check_name, 0::numeric as expected, sum(l.amount)::numeric as actual,
      jsonb_build_object('grant_id', g.id) as detail
    from public.credit_grants g
    join public.credit_ledger l on l.grant_id = g.id
    where g.status = 'scheduled'
    group by g.org_id, g.id
    union all
    -- A grant that started later was credited when it started, not before (epoch seconds).
    select g.org_id, 'grant_credited_before_start', extract(epoch from g.effective_at), extract(epoch from l.created_at),
      jsonb_build_object('grant_id', g.id, 'ledger_id', l.id)
    from public.credit_grants g
    join public.credit_ledger l on l.grant_id = g.id and l.kind = 'grant'
    where g.effective_at is not null and l.created_at < g.effective_at
  ),
  found as (
    select org_id, check_name, expected, actual, '{}'::jsonb as detail from balance_issues
    union all select org_id, check_name, expected, actual, detail from request_issues
    union all select org_id, check_name, expected, actual, detail from grant_issues
    union all select org_id, check_name, expected, actual, detail from schedule_issues
  )
  insert into public.credit_reconciliation_issues (run_id, org_id, check_name, expected, actual, detail)
  select v_run_id, org_id, check_name, expected, actual, detail from found;
  get diagnostics v_issues = row_count;

  -- Open payment exceptions: listed (a shortfall with its numbers), not counted as discrepancies.
  insert into public.credit_reconciliation_issues (run_id, org_id, check_name, expected, actual, detail)
  select v_run_id, e.org_id, 'payment_exception',
    (e.detail ->> 'credits_target')::numeric, (e.detail ->> 'credits_revoked')::numeric,
    jsonb_build_object('exception_id', e.id, 'event_id', e.event_id, 'event_type', e.event_type,
      'object_id', e.object_id, 'reason', e.reason, 'recorded_at', e.created_at)
  from public.payment_exceptions e
  where e.resolved_at is null
  order by e.id;
  get diagnostics v_exceptions = row_count;

  select count(*) into v_orgs from public.credit_balances;
  update public.credit_reconciliation_runs
  set finished_at = clock_timestamp(), orgs_checked = v_orgs, issues_found = v_issues, payment_exceptions = v_exceptions
  where id = v_run_id;
  if v_issues > 0 then
    raise warning 'reconcile_credits: % discrepancies (run %): see public.credit_reconciliation_issues', v_issues, v_run_id;
  end if;
  if v_exceptions > 0 then
    raise warning 'reconcile_credits: % open payment exceptions (run %): see public.payment_exceptions', v_exceptions, v_run_id;
  end if;
  return v_issues;
end
$$;
comment on function public.reconcile_credits() is
  'Cron (daily) / service_role: cross-check balances, grants, ledger, holds, flag, requests, revocations, overage debt (ledger and sources) and scheduled grants (none credited before its start); record and count discrepancies; list open payment exceptions (not counted).';

-- Reinstating revoked credits (a dispute won): they arrive on the grant like new credits, so an
-- unscoped grant pays the org's debt with them first.
create or replace function private.reinstate_revoked(p_org_id uuid, p_grant_id uuid, p_amount bigint, p_metadata jsonb)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_grant public.credit_grants;
  v_paid bigint;
begin
  select * into v_grant from public.credit_grants g where g.id = p_grant_id and g.org_id = p_org_id for update;
  if not found or v_grant.revoked_amount < p_amount then
    perform private.fail('allocation_out_of_sync', 'XX000',
      jsonb_build_object('grant_id', p_grant_id, 'reinstate', p_amount, 'revoked_amount', v_grant.revoked_amount),
      'the grant has not had this many credits revoked; run reconcile_credits()');
  end if;
  if v_grant.status = 'active' then
    update public.credit_grants set remaining = remaining + p_amount, revoked_amount = revoked_amount - p_amount where id = p_grant_id;
    v_paid := private.repay_debt(p_grant_id, (select b.overage from public.credit_balances b where b.org_id = p_org_id), p_amount);
    perform private.apply_balance_change(p_org_id, 'reinstate', p_amount, 0, null, p_grant_id,
      coalesce(p_metadata, '{}') || case when v_paid > 0 then jsonb_build_object('overage_repaid', v_paid) else '{}' end, -v_paid);
    return p_amount;
  end if;
  update public.credit_grants set revoked_amount = revoked_amount - p_amount, expired_amount = expired_amount + p_amount where id = p_grant_id;
  return 0;
end
$$;
comment on function private.reinstate_revoked(uuid, uuid, bigint, jsonb) is
  'Gives revoked credits back to their grant (an unscoped grant pays the org''s debt with them first), or lets them expire with it. Balance locked by the caller. Internal.';

-- The alerts' reference is the last credited grant that can be spent on anything: a small
-- scoped promotion must not silence the alerts about the main balance.
drop trigger set_alert_reference_on_insert on public.credit_grants;
create trigger set_alert_reference_on_insert
after insert on public.credit_grants
for each row
when (new.status = 'active' and new.source <> 'refund' and new.operations is null)
execute function private.set_alert_reference();
drop trigger set_alert_reference_on_activation on public.credit_grants;
create trigger set_alert_reference_on_activation
after update of status on public.credit_grants
for each row
when (old.status in ('pending', 'scheduled') and new.status = 'active' and new.operations is null)
execute function private.set_alert_reference();
