-- reconcile_credits() learns about revocations and payment exceptions.
--
-- 1. A grant's used credits are amount - remaining - expired_amount - revoked_amount: what
--    revoke_credits() took back is no longer "used by requests".
-- 2. Every revocation's revoked credits are in the ledger: per org, the credits the revocation
--    records say were taken equal the ledger's 'revoke' entries.
-- 3. Open payment exceptions (events that could not be applied, shortfalls) are listed in each
--    run as check 'payment_exception' until resolved, and counted in the run's
--    payment_exceptions. They are business events, not broken invariants: the return value
--    stays the number of discrepancies in the books (0 is the only good answer), so a paid
--    purchase for an unknown org never makes the ledger look corrupt, and a corrupt ledger is
--    never hidden among refunds.

alter table public.credit_reconciliation_runs add column payment_exceptions integer;

comment on column public.credit_reconciliation_runs.payment_exceptions is
  'Open payment exceptions listed by the run (check_name payment_exception); not counted in issues_found.';

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
  found as (
    select org_id, check_name, expected, actual, '{}'::jsonb as detail from balance_issues
    union all select org_id, check_name, expected, actual, detail from request_issues
    union all select org_id, check_name, expected, actual, detail from grant_issues
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
  'Cron (daily) / service_role: cross-check balances, grants, ledger, holds, flag, requests and revocations; record and count discrepancies; list open payment exceptions (not counted).';
