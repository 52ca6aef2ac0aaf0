-- Scheduled grants: credits that start later (next month's allowance, a promotion that opens on
-- a date).
--
-- A grant given `p_effective_at` in the future is stored with status 'scheduled':
--   - it is neither spendable nor counted in `available` (the burn-down, the expiry and every
--     balance read see only 'active' grants), so the gate flag does not move;
--   - it has no ledger entry until it starts: the cron job `activate_scheduled_grants()` (every
--     minute, a bounded batch, balances locked in org order like `expire_credit_grants()`) makes
--     it 'active' and credits it with its 'grant' ledger entry at that moment; the flag follows
--     `available` by trigger, so it flips then and only then;
--   - its activation makes it the low-balance alerts' reference, like any newly credited grant;
--   - `void_credit_grant()` cancels it before it starts (status 'voided', nothing was credited);
--   - a start at or before now is no schedule: the grant is active at once.
-- Idempotency on (org, source, external_ref) is unchanged; a replay must carry the same start.
-- Refused at creation (invalid_effective_at, 22023): a start that is not finite, a start on or
-- after the grant's expiry, and a future start on a pending grant (its payment decides when it
-- is credited).

-- Table -------------------------------------------------------------------------------------------

alter table public.credit_grants add column effective_at timestamptz;

comment on column public.credit_grants.effective_at is
  'When the grant starts, if the caller gave a start. A grant whose start was in the future is created ''scheduled'' and credited by activate_scheduled_grants() at or after this time.';

alter table public.credit_grants drop constraint credit_grants_status_check;
alter table public.credit_grants
  add constraint credit_grants_status_check check (status in ('pending', 'scheduled', 'active', 'expired', 'voided'));
-- A scheduled grant waits whole, for a known start.
alter table public.credit_grants
  add constraint credit_grants_scheduled_check check (status <> 'scheduled' or (effective_at is not null and remaining = amount));
-- A grant never expires before it starts.
alter table public.credit_grants
  add constraint credit_grants_starts_before_expiry check (effective_at is null or expires_at is null or expires_at > effective_at);

-- The activation job's scan (soonest start first), and a balance read's scan of one org.
create index credit_grants_scheduled_idx on public.credit_grants (effective_at) where status = 'scheduled';
create index credit_grants_scheduled_org_idx on public.credit_grants (org_id, effective_at) where status = 'scheduled';

-- Error catalog -------------------------------------------------------------------------------------

insert into private.error_catalog (key, sqlstate, http_status, meaning, raised_by) values
  ('invalid_effective_at', '22023', 400, 'A grant start that is not a finite time, not before the grant''s expiry, or in the future on a pending grant (details: effective_at, expires_at, pending).', 'database');

update private.error_catalog
set meaning = 'The grant is no longer pending (activation) or no longer pending or scheduled (voiding), so it cannot be activated or voided (details: status).'
where key = 'grant_not_pending';

-- Grants ------------------------------------------------------------------------------------------

-- The JSON answer for a grant, now with its start. Called by every grant RPC.
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
    'balance_after', (select b.available from public.credit_balances b where b.org_id = p_grant.org_id),
    'replayed', p_replayed
  );
end
$$;

comment on function private.grant_result(public.credit_grants, boolean) is 'JSON answer for a grant (with effective_at). Internal.';

-- Inserts a grant once per (org, source, external_ref); the balance row is locked by the caller.
-- Callers: grant_credits, grant_onboarding_credits, the top-up and checkout paths. A grant
-- starting in the future is inserted 'scheduled' and not credited: activate_scheduled_grants()
-- credits it when it starts.
create function private.insert_grant(
  p_org_id uuid,
  p_amount bigint,
  p_source text,
  p_external_ref text,
  p_expires_at timestamptz,
  p_metadata jsonb,
  p_priority integer,
  p_pending boolean,
  p_effective_at timestamptz default null
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
      -- A retried payment is the same payment: the amount must match, and so must the start (a
      -- different start is a different schedule). The expiry is often computed at receipt time
      -- ("now + 30 days") and legitimately differs.
      if v_grant.amount <> p_amount or v_grant.effective_at is distinct from p_effective_at then
        perform private.fail('idempotency_conflict',
          jsonb_build_object('source', p_source, 'external_ref', p_external_ref, 'amount', v_grant.amount,
                             'effective_at', v_grant.effective_at),
          'this external reference was granted with another amount or start');
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
                                    pending_since, activated_at, effective_at)
  values (p_org_id, p_amount, p_amount, p_source, p_external_ref,
          case when p_pending then 'pending' when v_scheduled then 'scheduled' else 'active' end,
          p_priority, p_expires_at, p_metadata,
          case when p_pending then now() end,
          case when not p_pending and not coalesce(v_scheduled, false) then now() end,
          p_effective_at)
  returning * into v_grant;

  if v_grant.status = 'active' then
    perform private.apply_balance_change(p_org_id, 'grant', p_amount, 0, null, v_grant.id,
      jsonb_build_object('source', p_source, 'external_ref', p_external_ref));
  end if;
  return private.grant_result(v_grant, false);
end
$$;

revoke all on function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz) from public;
comment on function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz) is
  'Inserts a grant idempotently on (org, source, external_ref, with the same amount and start) and credits it unless pending or scheduled. Internal.';

drop function private.insert_grant(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean);

-- Adds credits to an org: a purchase, promotion, adjustment... Idempotent on
-- (org, source, external_ref): a repeated payment reference returns the first grant.
-- p_pending: credits wait for activate_credit_grant (payment confirmed) or void_credit_grant.
-- p_effective_at: credits start then (scheduled until activate_scheduled_grants() reaches them).
-- Replaces the eight-parameter grant_credits: every call of it, by position or by name, is a
-- call of this one.
create function public.grant_credits(
  p_org_id uuid,
  p_amount bigint,
  p_source text,
  p_external_ref text default null,
  p_expires_at timestamptz default null,
  p_metadata jsonb default '{}',
  p_priority integer default 100,
  p_pending boolean default false,
  p_effective_at timestamptz default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_metadata jsonb := private.check_metadata(p_metadata);
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
  perform private.lock_balance(p_org_id);
  return private.insert_grant(p_org_id, p_amount, p_source, p_external_ref, p_expires_at, v_metadata, p_priority,
    coalesce(p_pending, false), p_effective_at);
end
$$;

revoke all on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz) from public;
grant execute on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz) to service_role;
comment on function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean, timestamptz) is
  'Server RPC: add credits to an org, idempotent on (org, source, external_ref); p_pending waits for activate_credit_grant; p_effective_at in the future schedules the grant (not spendable, not in available, until activate_scheduled_grants() credits it). Errors: idempotency_conflict PT409, invalid_* 22023.';

drop function public.grant_credits(uuid, bigint, text, text, timestamptz, jsonb, integer, boolean);

-- Activation: one rule -------------------------------------------------------------------------------

-- Activates an org's scheduled grants whose start has come (all of them, or those of
-- p_grant_ids), soonest start first: each becomes 'active' and is credited with its 'grant'
-- ledger entry now. A grant whose expiry also passed before the job reached it is credited and
-- expired at once (private.expire_grants), as a pending grant activated late is. The caller
-- holds the org's balance lock. Returns how many grants it activated.
create function private.activate_grants(p_org_id uuid, p_grant_ids uuid[] default null)
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
    perform private.apply_balance_change(p_org_id, 'grant', v_grant.amount, 0, null, v_grant.id,
      jsonb_build_object('source', v_grant.source, 'external_ref', v_grant.external_ref, 'effective_at', v_grant.effective_at));
    v_activated := v_activated || v_grant.id;
  end loop;
  if cardinality(v_activated) > 0 then
    perform private.expire_grants(p_org_id, v_activated);
  end if;
  return cardinality(v_activated);
end
$$;

revoke all on function private.activate_grants(uuid, uuid[]) from public;
comment on function private.activate_grants(uuid, uuid[]) is
  'The activation rule: credits an org''s scheduled grants whose start has come (all, or the listed ones) with one ledger entry each. Balance row locked by the caller. Internal.';

-- Activates up to p_batch_size scheduled grants whose start has come and returns how many. The
-- batch's balances are locked in org order (the lock order of every money path and of
-- expire_credit_grants(), so the two jobs never deadlock), then private.activate_grants credits
-- each org's share. Scheduled by pg_cron every minute; service_role may run it too.
create function public.activate_scheduled_grants(p_batch_size integer default 2000)
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
    perform private.fail('invalid_batch_size', jsonb_build_object('batch_size', p_batch_size, 'min', 1, 'max', 10000));
  end if;
  select array_agg(d.id) into v_ids
  from (
    select g.id from public.credit_grants g
    where g.status = 'scheduled' and g.effective_at <= now()
    order by g.effective_at
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
    -- Re-read under the lock: a grant may have been voided meanwhile.
    v_count := v_count + private.activate_grants(v_org_id, v_ids);
  end loop;
  return v_count;
end
$$;

revoke all on function public.activate_scheduled_grants(integer) from public;
grant execute on function public.activate_scheduled_grants(integer) to service_role;
comment on function public.activate_scheduled_grants(integer) is
  'Cron (every minute) / service_role: credit scheduled grants whose start has come, in a bounded batch (private.activate_grants per org, balances locked in org order); returns the number activated. Definer: it writes every org''s grants and balances.';

-- The alerts' reference: a scheduled grant that starts is a newly credited grant.
drop trigger set_alert_reference_on_activation on public.credit_grants;
create trigger set_alert_reference_on_activation
after update of status on public.credit_grants
for each row
when (old.status in ('pending', 'scheduled') and new.status = 'active')
execute function private.set_alert_reference();

-- Voiding: a pending grant (payment failed) or a scheduled one (cancelled before it starts) ----------

create or replace function public.void_credit_grant(p_org_id uuid, p_source text, p_external_ref text)
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
  if v_grant.status not in ('pending', 'scheduled') then
    perform private.fail('grant_not_pending', jsonb_build_object('status', v_grant.status));
  end if;
  -- Neither kind was ever credited: nothing to take out of the balance or the ledger.
  update public.credit_grants set status = 'voided', remaining = 0 where id = v_grant.id returning * into v_grant;
  return private.grant_result(v_grant, false);
end
$$;

comment on function public.void_credit_grant(uuid, text, text) is
  'Server RPC: a pending grant''s payment failed, or a scheduled grant is cancelled before it starts; void it (idempotent, nothing was credited). Errors: unknown_grant PT404, grant_not_pending PT409.';

-- Balance -----------------------------------------------------------------------------------------

-- O(1): the balance row, the org's due-but-not-yet-expired grants (normally none) and its
-- scheduled grants (few). Invoker: RLS lets members read their balance; membership is checked
-- explicitly for a clear error. `scheduled` is not in `available`: those credits start later.
create or replace function public.get_credit_balance(p_org_id uuid default null)
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
  v_scheduled bigint;
  v_start record;
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
  return jsonb_build_object(
    'org_id', v_org_id,
    'available', v_balance.available - v_due,
    'held', v_balance.held,
    'next_expiry_at', v_next.expires_at,
    'next_expiry_amount', v_next.amount,
    'scheduled', v_scheduled,
    'next_start_at', v_start.effective_at,
    'next_start_amount', v_start.amount
  );
end
$$;

comment on function public.get_credit_balance(uuid) is
  'User RPC: {org_id, available, held, next_expiry_at, next_expiry_amount, scheduled, next_start_at, next_start_amount} for the caller''s org (default: personal). scheduled: credits of grants that start later (not in available).';

-- Reconciliation -------------------------------------------------------------------------------------

-- As before, plus two checks on scheduled grants:
--   scheduled_grant_in_ledger     a grant still scheduled has a ledger entry (it was credited
--                                 before it started);
--   grant_credited_before_start   a grant's 'grant' ledger entry is older than its start.
-- (A scheduled grant is not active, so the balance checks already leave it out of available.)
create or replace function public.reconcile_credits()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run_id bigint;
  v_issues integer;
  v_exceptions integer;
  v_orgs integer;
begin
  insert into public.credit_reconciliation_runs default values returning id into v_run_id;

  with balances as (
    select b.org_id, b.available, b.held, o.has_usage_credits,
      coalesce((select sum(g.remaining) from public.credit_grants g where g.org_id = b.org_id and g.status = 'active'), 0) as grants_remaining,
      l.ledger_available, l.ledger_held, l.ledger_revoked,
      coalesce((select sum(r.reserved) from public.credit_requests r where r.org_id = b.org_id and r.status = 'held'), 0) as open_holds,
      coalesce((select sum(v.revoked) from public.credit_revocations v where v.org_id = b.org_id), 0) as revocations_revoked
    from public.credit_balances b
    join public.orgs o on o.id = b.org_id
    -- One pass over the org's ledger for all three sums.
    cross join lateral (
      select coalesce(sum(x.amount), 0) as ledger_available,
        coalesce(sum(x.held_delta), 0) as ledger_held,
        coalesce(-sum(x.amount) filter (where x.kind = 'revoke'), 0) as ledger_revoked
      from public.credit_ledger x
      where x.org_id = b.org_id
    ) l
  ),
  balance_issues as (
    select org_id, 'available_vs_grants' as check_name, grants_remaining as expected, available as actual from balances where available <> grants_remaining
    union all
    select org_id, 'available_vs_ledger', ledger_available, available from balances where available <> ledger_available
    union all
    select org_id, 'held_vs_ledger', ledger_held, held from balances where held <> ledger_held
    union all
    select org_id, 'held_vs_open_holds', open_holds, held from balances where held <> open_holds
    union all
    select org_id, 'flag_vs_available', (available > 0)::int, has_usage_credits::int from balances where has_usage_credits <> (available > 0)
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
    -- What a grant has given away must be exactly what requests still hold of it.
    select g.org_id, 'grant_vs_allocations' as check_name, g.amount - g.remaining - g.expired_amount - g.revoked_amount as expected,
      coalesce(a.allocated, 0) as actual, jsonb_build_object('grant_id', g.id) as detail
    from public.credit_grants g
    left join (
      select (x.value ->> 'grant_id')::uuid as grant_id, sum((x.value ->> 'amount')::bigint) as allocated
      from public.credit_requests r, jsonb_array_elements(r.allocations) x
      group by 1
    ) a on a.grant_id = g.id
    where g.status in ('active', 'expired')
      and g.amount - g.remaining - g.expired_amount - g.revoked_amount <> coalesce(a.allocated, 0)
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
  'Cron (daily) / service_role: cross-check balances, grants, ledger, holds, flag, requests, revocations and scheduled grants (none credited before its start); record and count discrepancies; list open payment exceptions (not counted).';

-- Scheduling ------------------------------------------------------------------------------------------

-- Every minute, one bounded batch in its own transaction, like the expiry job: a scheduled grant
-- is credited (and the flag flips) within a minute of its start; a larger backlog drains batch by
-- batch. cron.schedule upserts by job name, so pushing this migration again changes nothing.
select cron.schedule('tollgate-activate-scheduled-grants', '* * * * *', 'select public.activate_scheduled_grants(1000)');
