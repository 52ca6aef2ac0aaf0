-- Credit engine maintenance: expiry, stale holds, the flag safety net and reconciliation,
-- scheduled with pg_cron. All batches are bounded; every money change takes the org's balance
-- lock first (orgs in id order within a batch, so two batches can never deadlock).

-- Grant expiry ----------------------------------------------------------------------------------

-- Expires up to p_batch_size grants past expires_at and returns how many. Set-based: the
-- batch's balances are locked in org order (the lock order of every money path), then one
-- statement expires the grants, debits each balance once and writes one ledger entry per
-- grant, so the locks are held for milliseconds, not for a row-by-row loop.
create function public.expire_credit_grants(p_batch_size integer default 2000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_count integer;
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

  perform 1 from public.credit_balances b
  where b.org_id in (select g.org_id from public.credit_grants g where g.id = any (v_ids))
  order by b.org_id
  for update;

  with due as (
    -- Re-read under the locks: a charge may have expired some of them meanwhile.
    select g.id, g.org_id, g.remaining from public.credit_grants g
    where g.id = any (v_ids) and g.status = 'active' and g.expires_at <= now()
    for update
  ),
  expired as (
    update public.credit_grants g
    set status = 'expired', expired_amount = g.expired_amount + d.remaining, remaining = 0, expired_at = now()
    from due d
    where g.id = d.id
    returning d.id, d.org_id, d.remaining
  ),
  per_org as (
    select e.org_id, sum(e.remaining) as amount from expired e where e.remaining > 0 group by e.org_id
  ),
  balances as (
    update public.credit_balances b
    set available = b.available - p.amount, updated_at = now()
    from per_org p
    where b.org_id = p.org_id
    returning b.org_id, b.available, b.held, p.amount
  ),
  ledger as (
    insert into public.credit_ledger (org_id, kind, amount, held_delta, balance_after, held_after, grant_id, actor_role, metadata)
    select e.org_id, 'expire', -e.remaining, 0,
           b.available + b.amount - sum(e.remaining) over (partition by e.org_id order by e.id),
           b.held, e.id, 'system', '{}'::jsonb
    from expired e
    join balances b on b.org_id = e.org_id
    where e.remaining > 0
  )
  select count(*) into v_count from expired;
  return v_count;
end
$$;

revoke all on function public.expire_credit_grants(integer) from public;
grant execute on function public.expire_credit_grants(integer) to service_role;
comment on function public.expire_credit_grants(integer) is
  'Cron (every minute) / service_role: expire due grants in a bounded batch; returns the number expired.';

-- Stale holds -----------------------------------------------------------------------------------

-- Holds past their TTL are released (status 'expired'): a request that never came back is not
-- charged. Returns how many holds it released.
create function public.expire_stale_holds(p_batch_size integer default 500)
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
    v_released := private.release_hold(v_request, 'hold_expired');
    perform private.settle_request(v_hold.org_id, v_hold.request_id, 'expired', 0, v_released.allocations, v_released.balance_after,
      '{}', false, false);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

revoke all on function public.expire_stale_holds(integer) from public;
grant execute on function public.expire_stale_holds(integer) to service_role;
comment on function public.expire_stale_holds(integer) is
  'Cron (every minute) / service_role: release holds past their TTL (status expired, nothing charged); returns the number released.';

-- Flag safety net -------------------------------------------------------------------------------

-- The trigger on credit_balances keeps orgs.has_usage_credits exact; this repairs any drift
-- (a manual fix, a restore) and writes only rows that differ: zero writes when all is well.
-- Drifting balance rows are locked (skipping ones a charge holds right now) so the value
-- written is the committed one.
create function public.refresh_orgs_has_usage_credits(p_batch_size integer default 10000)
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
    select b.org_id, b.available > 0 as flag
    from public.credit_balances b
    join public.orgs o on o.id = b.org_id
    where o.has_usage_credits is distinct from (b.available > 0)
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

revoke all on function public.refresh_orgs_has_usage_credits(integer) from public;
grant execute on function public.refresh_orgs_has_usage_credits(integer) to service_role;
comment on function public.refresh_orgs_has_usage_credits(integer) is
  'Cron (every minute) / service_role: repair orgs.has_usage_credits drift; writes only changed rows; returns their number.';

-- Reconciliation (seed 004) -----------------------------------------------------------------------

create table public.credit_reconciliation_runs (
  id bigint generated always as identity primary key,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  orgs_checked integer,
  issues_found integer
);

create table public.credit_reconciliation_issues (
  id bigint generated always as identity primary key,
  run_id bigint not null references public.credit_reconciliation_runs (id),
  org_id uuid,
  check_name text not null,
  expected numeric,
  actual numeric,
  detail jsonb not null default '{}',
  detected_at timestamptz not null default now()
);

create index credit_reconciliation_issues_run_idx on public.credit_reconciliation_issues (run_id);

alter table public.credit_reconciliation_runs enable row level security;
alter table public.credit_reconciliation_issues enable row level security;
revoke all on public.credit_reconciliation_runs, public.credit_reconciliation_issues from anon, authenticated, service_role;
grant select on public.credit_reconciliation_runs, public.credit_reconciliation_issues to service_role;

-- Service role only (it bypasses RLS); stated as policies so the intent is explicit.
create policy credit_reconciliation_runs_no_user_access on public.credit_reconciliation_runs as restrictive
for all to anon, authenticated
using (false);

create policy credit_reconciliation_issues_no_user_access on public.credit_reconciliation_issues as restrictive
for all to anon, authenticated
using (false);

comment on table public.credit_reconciliation_issues is
  'Discrepancies found by reconcile_credits(): every row is an alert. Readable by service_role only.';

-- Cross-checks every org's balance against its grants, its ledger and its holds, the gate
-- flag, and every request against the ledger and its grants. Writes one run row and one row per
-- discrepancy; returns the number of discrepancies (0 is the only good answer). Read-only on
-- the money tables: it reports, it never "fixes".
create function public.reconcile_credits()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_run_id bigint;
  v_issues integer;
  v_orgs integer;
begin
  insert into public.credit_reconciliation_runs default values returning id into v_run_id;

  with balances as (
    select b.org_id, b.available, b.held, o.has_usage_credits,
      coalesce((select sum(g.remaining) from public.credit_grants g where g.org_id = b.org_id and g.status = 'active'), 0) as grants_remaining,
      coalesce((select sum(l.amount) from public.credit_ledger l where l.org_id = b.org_id), 0) as ledger_available,
      coalesce((select sum(l.held_delta) from public.credit_ledger l where l.org_id = b.org_id), 0) as ledger_held,
      coalesce((select sum(r.reserved) from public.credit_requests r where r.org_id = b.org_id and r.status = 'held'), 0) as open_holds
    from public.credit_balances b
    join public.orgs o on o.id = b.org_id
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
  ),
  request_ledger as (
    select r.org_id, r.request_id, r.status, r.charged - r.refunded as net_charged,
      case when r.status = 'held' then r.reserved else r.charged - r.refunded end as expected_allocated,
      coalesce((select sum((a.value ->> 'amount')::bigint) from jsonb_array_elements(r.allocations) a), 0) as allocated,
      exists (select 1 from public.credit_ledger l where l.org_id = r.org_id and l.request_id = r.request_id and l.kind in ('charge', 'capture')) as has_charge_entry
    from public.credit_requests r
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
    select g.org_id, 'grant_vs_allocations' as check_name, g.amount - g.remaining - g.expired_amount as expected,
      coalesce(a.allocated, 0) as actual, jsonb_build_object('grant_id', g.id) as detail
    from public.credit_grants g
    left join (
      select (x.value ->> 'grant_id')::uuid as grant_id, sum((x.value ->> 'amount')::bigint) as allocated
      from public.credit_requests r, jsonb_array_elements(r.allocations) x
      group by 1
    ) a on a.grant_id = g.id
    where g.status in ('active', 'expired')
      and g.amount - g.remaining - g.expired_amount <> coalesce(a.allocated, 0)
  ),
  found as (
    select org_id, check_name, expected, actual, '{}'::jsonb as detail from balance_issues
    union all select org_id, check_name, expected, actual, detail from request_issues
    union all select org_id, check_name, expected, actual, detail from grant_issues
  )
  insert into public.credit_reconciliation_issues (run_id, org_id, check_name, expected, actual, detail)
  select v_run_id, org_id, check_name, expected, actual, detail from found;
  get diagnostics v_issues = row_count;

  select count(*) into v_orgs from public.credit_balances;
  update public.credit_reconciliation_runs set finished_at = clock_timestamp(), orgs_checked = v_orgs, issues_found = v_issues where id = v_run_id;
  if v_issues > 0 then
    raise warning 'reconcile_credits: % discrepancies (run %): see public.credit_reconciliation_issues', v_issues, v_run_id;
  end if;
  return v_issues;
end
$$;

revoke all on function public.reconcile_credits() from public;
grant execute on function public.reconcile_credits() to service_role;
comment on function public.reconcile_credits() is
  'Cron (daily) / service_role: cross-check balances, grants, ledger, holds, flag and requests; record and count discrepancies.';

-- Scheduling ------------------------------------------------------------------------------------

-- Every minute, each job one bounded batch in its own transaction, so no balance lock is held
-- longer than one batch (measured by npm run bench: about half a second for 1,000 grants under
-- load): a grant expires and a stale hold is released within a minute of its time, and a
-- larger backlog (more than 1,000 grants due in the same minute) drains batch by batch. Until
-- then a charge expires its own org's due grants itself and get_credit_balance leaves them
-- out, so no expired credit is ever spent or shown; only the replicated flag can lag. The
-- jobs lock balances in org order, so running side by side they cannot deadlock.
create extension if not exists pg_cron with schema pg_catalog;

-- cron.schedule upserts by job name, so pushing this migration again changes nothing.
select cron.schedule('tollgate-expire-credit-grants', '* * * * *', 'select public.expire_credit_grants(1000)');
select cron.schedule('tollgate-expire-stale-holds', '* * * * *', 'select public.expire_stale_holds(2000)');
select cron.schedule('tollgate-refresh-credit-flags', '* * * * *', 'select public.refresh_orgs_has_usage_credits(10000)');
select cron.schedule('tollgate-reconcile-credits', '17 3 * * *', 'select public.reconcile_credits()');
