-- Usage rollup: usage reads cost O(days × operations), not O(calls).
--
-- get_usage_stats used to aggregate every request of the period (0.6–0.8 s at 1M calls in 30
-- days, linear beyond). Now a per-bucket, per-operation rollup answers it:
--
--   credit_usage_rollup        sums per (org, grain, bucket, operation), at three grains: day,
--                              hour and minute (the finer grains serve the edge of a sliding
--                              window that does not start on a day boundary)
--   credit_usage_rollup_state  the watermark: every ledger entry with id <= rolled_through is
--                              in the rollup, no later one is
--
-- The charge path writes nothing more. The ledger is the change stream: every change to a
-- request's counted fields (its creation, its settlement, its refund) writes a ledger entry
-- that names the request, in the same transaction. roll_up_credit_usage() (pg_cron, every
-- 10 seconds, or every minute with pg_cron < 1.5) folds the entries past the watermark into
-- the rollup; a reader adds the entries past the watermark itself (the tail), so its answer
-- is exactly what a full scan of
-- credit_requests gives, however far behind the rollup is. How each entry counts is defined
-- once, in the view private.credit_usage_deltas.
--
-- The watermark only advances over ledger ids that can no longer appear: a ledger id is drawn
-- by a transaction that already has a transaction id (every ledger writer locks the org's
-- balance row first, which assigns one), so once every transaction that was running when the
-- newest visible id was read has ended, no smaller id can still commit.

-- Tables ------------------------------------------------------------------------------------

create table public.credit_usage_rollup (
  org_id uuid not null references public.orgs (id),
  grain text not null check (grain in ('minute', 'hour', 'day')),
  -- Start of the UTC bucket the requests were created in.
  bucket_start timestamptz not null,
  operation text not null,
  calls bigint not null default 0,
  successful_calls bigint not null default 0,
  failed_calls bigint not null default 0,
  -- Charged minus refunded.
  credits_used bigint not null default 0,
  latency_ms_sum bigint not null default 0,
  latency_count bigint not null default 0,
  primary key (org_id, grain, bucket_start, operation)
);

comment on table public.credit_usage_rollup is
  'Per-bucket, per-operation usage sums (minute, hour, day; UTC), kept by roll_up_credit_usage() from the ledger. Read through get_usage_stats and get_daily_usage.';

create table private.credit_usage_rollup_state (
  id boolean primary key default true check (id),
  rolled_through bigint not null default 0,
  rolled_at timestamptz
);

insert into private.credit_usage_rollup_state default values;

comment on table private.credit_usage_rollup_state is
  'The rollup watermark: ledger entries with id <= rolled_through are in credit_usage_rollup, later ones are read from the ledger.';

alter table public.credit_usage_rollup enable row level security;
alter table private.credit_usage_rollup_state enable row level security;

revoke all on public.credit_usage_rollup, private.credit_usage_rollup_state from anon, authenticated, service_role;
grant select on public.credit_usage_rollup to authenticated, service_role;
grant select on private.credit_usage_rollup_state to authenticated, service_role;

create policy credit_usage_rollup_select_members on public.credit_usage_rollup
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

-- One row, a ledger id: nothing about any org.
create policy credit_usage_rollup_state_select_all on private.credit_usage_rollup_state
for select to authenticated
using (true);

-- What each ledger entry adds to its request's usage ---------------------------------------------
--
-- Summed over all the entries of a request, this is the request's contribution to a full
-- scan: one call; success or failure and latency once it is settled; credits charged minus
-- refunded. Entries that settle a request: a plain charge (success from the start), a
-- capture, and the release of a hold that ends released or expired (a captured hold's
-- releases only return the uncaptured rest). success and latency_ms are set once, by the
-- settling transaction, and never change afterwards. Invoker: readers see their orgs' rows.
create view private.credit_usage_deltas
with (security_invoker = true)
as
select
  e.id as ledger_id,
  e.org_id,
  r.operation,
  r.created_at as called_at,
  case when e.kind in ('charge', 'hold') then 1 else 0 end as calls,
  case when s.settles and r.success then 1 else 0 end as successful_calls,
  case when s.settles and not r.success then 1 else 0 end as failed_calls,
  case e.kind when 'charge' then -e.amount when 'refund' then -e.amount when 'capture' then -e.held_delta else 0 end as credits_used,
  case when s.settles then coalesce(r.latency_ms, 0) else 0 end as latency_ms_sum,
  case when s.settles and r.latency_ms is not null then 1 else 0 end as latency_count
from public.credit_ledger e
join public.credit_requests r on r.org_id = e.org_id and r.request_id = e.request_id
cross join lateral (
  select e.kind in ('charge', 'capture') or (e.kind = 'release' and r.status in ('released', 'expired')) as settles
) s
where e.request_id is not null;

revoke all on private.credit_usage_deltas from anon, authenticated, service_role;
grant select on private.credit_usage_deltas to authenticated, service_role;

comment on view private.credit_usage_deltas is
  'What each ledger entry adds to its request''s usage; summed per request it equals the full-scan contribution. Used by the rollup job and by readers for the tail.';

-- Reading ----------------------------------------------------------------------------------------

-- Usage of the org's requests created after p_since, per UTC day and operation, exactly as a
-- full scan of credit_requests would count it, from O(buckets) rows:
--   * whole days from day rows; the partial day before them from hour rows, the partial hour
--     before those from minute rows, the first partial minute from the requests themselves
--     (as they are now), all rollup rows as of the watermark;
--   * each partial piece is read from whichever side is smaller: the part inside the window,
--     or its enclosing bucket minus the part outside (e.g. an hour row minus 12 minute rows
--     instead of 48 minute rows), so at most 30 minutes, 12 hours and half a minute of calls;
--   * plus the ledger entries past the watermark (the tail).
-- Every subtraction stays inside one UTC day, so the per-day answer is exact too. plpgsql so
-- that its plan is cached. Invoker: RLS limits every piece to the caller's orgs; callers check
-- membership first for a clear error.
create function private.usage_by_day(p_org_id uuid, p_since timestamptz)
returns table (
  day date,
  operation text,
  calls bigint,
  successful_calls bigint,
  failed_calls bigint,
  credits_used bigint,
  latency_ms_sum bigint,
  latency_count bigint
)
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
  -- The window (p_since, ∞) in buckets: (p_since, v_m1) the partial minute, [v_m1, v_h1) whole
  -- minutes, [v_h1, v_d1) whole hours, [v_d1, ∞) whole days. v_m0, v_h0, v_d0: the minute, hour
  -- and day that enclose the partial pieces.
  v_m0 timestamptz := date_bin('1 minute', p_since, v_origin);
  v_m1 timestamptz := v_m0 + interval '1 minute';
  v_h1 timestamptz := date_bin('1 hour', v_m1 - interval '1 microsecond', v_origin) + interval '1 hour';
  v_h0 timestamptz := v_h1 - interval '1 hour';
  v_d1 timestamptz := date_bin('1 day', v_h1 - interval '1 microsecond', v_origin) + interval '1 day';
  v_d0 timestamptz := v_d1 - interval '1 day';
  -- Read the enclosing bucket minus the outside part where that is fewer rows.
  v_minute_outside boolean := p_since - v_m0 < v_m1 - p_since;
  v_hour_outside boolean := v_h1 > v_m1 and v_m1 - v_h0 < v_h1 - v_m1;
  v_day_outside boolean := v_d1 > v_h1 and v_h1 - v_d0 < v_d1 - v_h1;
  v_watermark bigint := (select s.rolled_through from private.credit_usage_rollup_state s);
begin
  return query
  with pieces as (
    -- The partial minute, as the requests are now: inside the window, or (subtracted) outside it.
    select r.created_at as at, r.operation, s.sign * 1::bigint as calls,
           s.sign * (r.success is true)::int::bigint as successful_calls, s.sign * (r.success is false)::int::bigint as failed_calls,
           s.sign * (r.charged - r.refunded) as credits_used,
           s.sign * coalesce(r.latency_ms, 0)::bigint as latency_ms_sum, s.sign * (r.latency_ms is not null)::int::bigint as latency_count
    from (select case when v_minute_outside then -1 else 1 end as sign) s
    join public.credit_requests r on r.org_id = p_org_id
      -- (p_since, v_m1) or [v_m0, p_since]; timestamps count microseconds
      and r.created_at >= case when v_minute_outside then v_m0 else p_since + interval '1 microsecond' end
      and r.created_at < case when v_minute_outside then p_since + interval '1 microsecond' else v_m1 end
    union all
    -- Rollup rows: [from, to) of a grain, added or subtracted.
    select u.bucket_start, u.operation, b.sign * u.calls, b.sign * u.successful_calls, b.sign * u.failed_calls,
           b.sign * u.credits_used, b.sign * u.latency_ms_sum, b.sign * u.latency_count
    from (values
      -- the enclosing minute of the partial one, when it is read from outside
      ('minute', v_m0, case when v_minute_outside then v_m1 else v_m0 end, 1),
      -- whole minutes up to the hour: [v_m1, v_h1), or the hour minus [v_h0, v_m1)
      ('minute', v_m1, case when v_hour_outside then v_m1 else v_h1 end, 1),
      ('minute', v_h0, case when v_hour_outside then v_m1 else v_h0 end, -1),
      ('hour', v_h0, case when v_hour_outside then v_h1 else v_h0 end, 1),
      -- whole hours up to the day: [v_h1, v_d1), or the day minus [v_d0, v_h1)
      ('hour', v_h1, case when v_day_outside then v_h1 else v_d1 end, 1),
      ('hour', v_d0, case when v_day_outside then v_h1 else v_d0 end, -1),
      ('day', v_d0, case when v_day_outside then v_d1 else v_d0 end, 1),
      -- whole days
      ('day', v_d1, 'infinity'::timestamptz, 1)
    ) b (grain, from_at, to_at, sign)
    -- One primary-key range scan per line, never a scan of all the org's rows (offset 0 keeps
    -- the planner from flattening the lateral subquery into a hash join).
    cross join lateral (
      select * from public.credit_usage_rollup x
      where x.org_id = p_org_id and x.grain = b.grain and x.bucket_start >= b.from_at and x.bucket_start < b.to_at
      offset 0
    ) u
    union all
    -- The tail: ledger entries the rollup has not folded in yet, for every request the rollup
    -- rows above count (from the partial minute's start when it is read from outside).
    select d.called_at, d.operation, d.calls::bigint, d.successful_calls::bigint, d.failed_calls::bigint, d.credits_used,
           d.latency_ms_sum::bigint, d.latency_count::bigint
    from private.credit_usage_deltas d
    where d.org_id = p_org_id and d.ledger_id > v_watermark
      and d.called_at >= case when v_minute_outside then v_m0 else v_m1 end
  )
  select (p.at at time zone 'UTC')::date, p.operation,
         sum(p.calls)::bigint, sum(p.successful_calls)::bigint, sum(p.failed_calls)::bigint, sum(p.credits_used)::bigint,
         sum(p.latency_ms_sum)::bigint, sum(p.latency_count)::bigint
  from pieces p
  group by 1, 2
  -- A subtracted bucket can leave an operation with nothing in the window.
  having sum(p.calls) <> 0;
end
$$;

revoke all on function private.usage_by_day(uuid, timestamptz) from public;
grant execute on function private.usage_by_day(uuid, timestamptz) to authenticated;
comment on function private.usage_by_day(uuid, timestamptz) is
  'Usage of an org''s requests created after p_since per UTC day and operation (rollup + tail, identical to a full scan). Called by authenticated through get_usage_stats and get_daily_usage.';

-- get_usage_stats: same signature and answer as before (a public contract), now from the
-- rollup. avg_latency_ms is round(Σ latency / count, 2), which is what round(avg(), 2) computes.
create or replace function public.get_usage_stats(p_days integer default 30, p_org_id uuid default null)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_org_id uuid;
  v_since timestamptz;
begin
  if p_days is null or p_days not between 1 and 366 then
    perform private.fail('invalid_days', '22023', jsonb_build_object('days', p_days, 'min', 1, 'max', 366));
  end if;
  v_org_id := private.caller_org(p_org_id);
  v_since := now() - make_interval(days => p_days);

  return (
    with per_operation as (
      select u.operation, sum(u.calls) as calls, sum(u.successful_calls) as successful_calls, sum(u.failed_calls) as failed_calls,
             sum(u.credits_used) as credits, sum(u.latency_ms_sum) as latency_ms_sum, sum(u.latency_count) as latency_count
      from private.usage_by_day(v_org_id, v_since) u
      group by u.operation
    ),
    totals as (
      select coalesce(sum(o.calls), 0) as calls, coalesce(sum(o.successful_calls), 0) as successful_calls,
             coalesce(sum(o.failed_calls), 0) as failed_calls, coalesce(sum(o.credits), 0) as credits,
             sum(o.latency_ms_sum) as latency_ms_sum, sum(o.latency_count) as latency_count
      from per_operation o
    )
    select jsonb_build_object(
      'period_days', p_days,
      'total_calls', t.calls,
      'successful_calls', t.successful_calls,
      'failed_calls', t.failed_calls,
      'total_credits_used', t.credits,
      'avg_latency_ms', case when t.latency_count > 0 then round(t.latency_ms_sum::numeric / t.latency_count::numeric, 2) else 0 end,
      'top_operations', coalesce((
        select jsonb_agg(jsonb_build_object('operation', top.operation, 'calls', top.calls, 'credits', top.credits) order by top.calls desc, top.operation)
        from (
          select o.operation, o.calls, o.credits from per_operation o where o.calls > 0
          order by o.calls desc, o.operation
          limit 10
        ) top
      ), '[]')
    )
    from totals t
  );
end
$$;

revoke all on function public.get_usage_stats(integer, uuid) from public;
grant execute on function public.get_usage_stats(integer, uuid) to authenticated;
comment on function public.get_usage_stats(integer, uuid) is
  'User RPC: calls, successes, failures, credits used (net of refunds), average latency and top 10 operations over p_days (1..366). Reads the usage rollup plus its tail: O(days × operations).';

-- Usage per UTC day and operation over the last p_days calendar days (today included), for
-- charts. Invoker: RLS does the reading; membership is checked explicitly for a clear error.
create function public.get_daily_usage(p_days integer default 30, p_org_id uuid default null)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_org_id uuid;
  v_from date;
begin
  if p_days is null or p_days not between 1 and 366 then
    perform private.fail('invalid_days', '22023', jsonb_build_object('days', p_days, 'min', 1, 'max', 366));
  end if;
  v_org_id := private.caller_org(p_org_id);
  v_from := (now() at time zone 'UTC')::date - (p_days - 1);

  return jsonb_build_object(
    'period_days', p_days,
    'from', v_from,
    'to', (now() at time zone 'UTC')::date,
    'days', coalesce((
      select jsonb_agg(jsonb_build_object(
               'day', u.day,
               'operation', u.operation,
               'calls', u.calls,
               'successful_calls', u.successful_calls,
               'failed_calls', u.failed_calls,
               'credits_used', u.credits_used
             ) order by u.day, u.operation)
      -- "created after" one microsecond before midnight: created at or after midnight.
      from private.usage_by_day(v_org_id, (v_from::timestamp at time zone 'UTC') - interval '1 microsecond') u
    ), '[]')
  );
end
$$;

revoke all on function public.get_daily_usage(integer, uuid) from public;
grant execute on function public.get_daily_usage(integer, uuid) to authenticated;
comment on function public.get_daily_usage(integer, uuid) is
  'User RPC: {period_days, from, to, days: [{day, operation, calls, successful_calls, failed_calls, credits_used}]} per UTC day over the last p_days (1..366) calendar days, today included.';

-- Keeping it current -------------------------------------------------------------------------------

-- Folds ledger entries (p_from, p_through] into the rollup, at all three grains.
create function private.fold_usage_deltas(p_from bigint, p_through bigint)
returns void
language sql
set search_path = ''
as $$
  with minutes as (
    select d.org_id, d.operation, date_bin('1 minute', d.called_at, timestamptz '2000-01-01 00:00:00+00') as bucket_start,
           sum(d.calls) as calls, sum(d.successful_calls) as successful_calls, sum(d.failed_calls) as failed_calls,
           sum(d.credits_used) as credits_used, sum(d.latency_ms_sum) as latency_ms_sum, sum(d.latency_count) as latency_count
    from private.credit_usage_deltas d
    where d.ledger_id > p_from and d.ledger_id <= p_through
    group by 1, 2, 3
  )
  insert into public.credit_usage_rollup as u (org_id, grain, bucket_start, operation, calls, successful_calls, failed_calls, credits_used, latency_ms_sum, latency_count)
  select m.org_id, g.grain, date_bin(g.stride, m.bucket_start, timestamptz '2000-01-01 00:00:00+00'), m.operation,
         sum(m.calls), sum(m.successful_calls), sum(m.failed_calls), sum(m.credits_used), sum(m.latency_ms_sum), sum(m.latency_count)
  from minutes m
  cross join (values ('minute', interval '1 minute'), ('hour', interval '1 hour'), ('day', interval '1 day')) g (grain, stride)
  group by 1, 2, 3, 4
  on conflict (org_id, grain, bucket_start, operation) do update
  set calls = u.calls + excluded.calls,
      successful_calls = u.successful_calls + excluded.successful_calls,
      failed_calls = u.failed_calls + excluded.failed_calls,
      credits_used = u.credits_used + excluded.credits_used,
      latency_ms_sum = u.latency_ms_sum + excluded.latency_ms_sum,
      latency_count = u.latency_count + excluded.latency_count
$$;

revoke all on function private.fold_usage_deltas(bigint, bigint) from public;
comment on function private.fold_usage_deltas(bigint, bigint) is
  'Adds the usage deltas of ledger entries (p_from, p_through] to the rollup (minute, hour and day rows). Internal: roll_up_credit_usage.';

-- Moves the watermark forward by at most p_batch_size ledger entries and returns how many it
-- folded in. One runner folds at a time (an advisory lock; another returns 0). It reads the
-- newest ledger id, waits (up to p_wait_ms) until every transaction running at that moment
-- has ended, so that no smaller id can still appear, then folds. Minute and hour rows older
-- than any window (367 days) are pruned for the orgs in the batch. Runs in READ COMMITTED: each
-- statement must see what committed during the wait.
create function public.roll_up_credit_usage(p_batch_size integer default 100000, p_wait_ms integer default 5000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_from bigint;
  v_newest bigint;
  v_snapshot pg_snapshot;
  v_through bigint;
  v_count integer;
  v_deadline timestamptz;
begin
  if p_batch_size is null or p_batch_size not between 1 and 1000000 then
    perform private.fail('invalid_batch_size', '22023', jsonb_build_object('batch_size', p_batch_size, 'min', 1, 'max', 1000000));
  end if;
  if p_wait_ms is null or p_wait_ms not between 0 and 60000 then
    perform private.fail('invalid_wait', '22023', jsonb_build_object('wait_ms', p_wait_ms, 'min', 0, 'max', 60000));
  end if;
  if current_setting('transaction_isolation') <> 'read committed' then
    perform private.fail('invalid_isolation', '25000', jsonb_build_object('isolation', current_setting('transaction_isolation')),
      'run roll_up_credit_usage in a READ COMMITTED transaction');
  end if;
  select s.rolled_through into v_from from private.credit_usage_rollup_state s;
  select coalesce(max(l.id), v_from), pg_current_snapshot() into v_newest, v_snapshot from public.credit_ledger l;
  if v_newest <= v_from then
    return 0;
  end if;
  -- Nothing written before this wait: a transaction id of our own would be waited for by a
  -- concurrent runner.
  v_deadline := clock_timestamp() + make_interval(secs => p_wait_ms / 1000.0);
  while exists (select 1 from pg_snapshot_xip(v_snapshot) x where pg_xact_status(x) = 'in progress') loop
    if clock_timestamp() >= v_deadline then
      -- A transaction is still open: readers keep reading the longer tail; the next run retries.
      return 0;
    end if;
    perform pg_sleep(0.01);
  end loop;
  -- One runner folds at a time; taken after the wait, so a runner waiting for someone else's
  -- transaction never keeps another from folding.
  if not pg_try_advisory_xact_lock(hashtext('tollgate.roll_up_credit_usage')) then
    return 0;
  end if;
  select s.rolled_through into v_from from private.credit_usage_rollup_state s;
  if v_newest <= v_from then
    return 0;
  end if;

  -- The batch: at most p_batch_size entries past the watermark, ending at the newest id read.
  select max(b.id), count(*) into v_through, v_count
  from (
    select l.id from public.credit_ledger l
    where l.id > v_from and l.id <= v_newest
    order by l.id
    limit p_batch_size
  ) b;
  if v_count < p_batch_size then
    v_through := v_newest;
  end if;

  perform private.fold_usage_deltas(v_from, v_through);
  update private.credit_usage_rollup_state set rolled_through = v_through, rolled_at = now();

  -- Minute and hour rows past any window, of the orgs that were just active (one primary-key
  -- range per org and grain).
  delete from public.credit_usage_rollup u
  using (select distinct l.org_id from public.credit_ledger l where l.id > v_from and l.id <= v_through) a,
        (values ('minute'), ('hour')) g (grain)
  where u.org_id = a.org_id and u.grain = g.grain and u.bucket_start < now() - interval '367 days';
  return v_count;
end
$$;

revoke all on function public.roll_up_credit_usage(integer, integer) from public;
grant execute on function public.roll_up_credit_usage(integer, integer) to service_role;
comment on function public.roll_up_credit_usage(integer, integer) is
  'Cron (every 10 s; every minute with pg_cron < 1.5) / service_role: fold up to p_batch_size ledger entries into the usage rollup (waiting up to p_wait_ms for open transactions); returns how many. Errors: invalid_batch_size, invalid_wait 22023, invalid_isolation 25000.';

-- Builds the rollup from scratch from credit_requests (each request as it is now, which is the
-- sum of its ledger entries' deltas) and sets the watermark to the newest ledger id. Takes
-- the ledger's EXCLUSIVE lock for the duration, so no entry can commit meanwhile: charges
-- wait. For this migration (history loaded before it) and repairs; not granted to any API
-- role.
create function private.rebuild_credit_usage_rollup()
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_rows bigint;
begin
  lock table public.credit_ledger in exclusive mode;
  delete from public.credit_usage_rollup;
  with minutes as (
    select r.org_id, r.operation, date_bin('1 minute', r.created_at, timestamptz '2000-01-01 00:00:00+00') as bucket_start,
           count(*) as calls, count(*) filter (where r.success) as successful_calls, count(*) filter (where not r.success) as failed_calls,
           sum(r.charged - r.refunded) as credits_used, coalesce(sum(r.latency_ms), 0) as latency_ms_sum, count(r.latency_ms) as latency_count
    from public.credit_requests r
    group by 1, 2, 3
  )
  insert into public.credit_usage_rollup (org_id, grain, bucket_start, operation, calls, successful_calls, failed_calls, credits_used, latency_ms_sum, latency_count)
  select m.org_id, g.grain, date_bin(g.stride, m.bucket_start, timestamptz '2000-01-01 00:00:00+00'), m.operation,
         sum(m.calls), sum(m.successful_calls), sum(m.failed_calls), sum(m.credits_used), sum(m.latency_ms_sum), sum(m.latency_count)
  from minutes m
  cross join (values ('minute', interval '1 minute'), ('hour', interval '1 hour'), ('day', interval '1 day')) g (grain, stride)
  where g.grain = 'day' or m.bucket_start >= now() - interval '367 days'
  group by 1, 2, 3, 4;
  get diagnostics v_rows = row_count;
  update private.credit_usage_rollup_state
  set rolled_through = coalesce((select max(l.id) from public.credit_ledger l), 0), rolled_at = now();
  return v_rows;
end
$$;

revoke all on function private.rebuild_credit_usage_rollup() from public;
comment on function private.rebuild_credit_usage_rollup() is
  'Rebuilds the usage rollup from credit_requests under the ledger''s EXCLUSIVE lock; returns the rows written. Migration and repairs only (postgres).';

select private.rebuild_credit_usage_rollup();

-- As often as pg_cron allows, so the tail a reader adds stays short: every 10 seconds with
-- pg_cron >= 1.5 (hosted Supabase; at 10M calls a month the tail is then about 40 ledger
-- entries), every minute with older pg_cron (Debian's 1.4, the local stack). Reads are exact
-- either way. cron.schedule upserts by name.
do $$
begin
  perform cron.schedule('tollgate-roll-up-credit-usage',
    case when (select (regexp_match(e.extversion, '^(\d+)\.(\d+)'))::int[] >= array[1, 5] from pg_extension e where e.extname = 'pg_cron')
         then '10 seconds' else '* * * * *' end,
    'select public.roll_up_credit_usage(100000, 1000)');
end
$$;
