-- Usage reads at a fixed number of rollup rows per operation, however busy the org.
--
-- The rollup read a window's first, partial day from hour rows and its first partial hour from
-- minute rows, then up to half a minute of requests: a busy org, whose buckets are all full, read
-- up to 13 hour and 31 minute rows per operation and ~116 requests more than a quiet one. Now
-- the partial day is a difference of two rows per operation:
--
--   credit_usage_rollup   day rows only, as before (hour and minute rows are gone)
--   credit_usage_prefix   running totals within a UTC day: for each 10-second bucket in which an
--                         operation had calls, its sums from the day's midnight through the end
--                         of that bucket (a prefix sum, reset every day)
--
-- A window that starts at v_from reads, per operation: the day rows from v_from's day on, and
-- one prefix row, the last one before v_from's bucket (or through it), subtracted from that
-- day's row. What remains: the calls of the first partial bucket, read from credit_requests from
-- whichever side of v_from is shorter (at most 5 seconds of calls), and the ledger entries past
-- the watermark (the tail). Answers stay identical to a full scan; the charge path still writes
-- nothing more; roll_up_credit_usage still feeds both tables from the watermark.
--
-- Cost of the running totals: a change to a request created in bucket b adds to every prefix
-- row of its operation from b to the end of that UTC day. For new calls that is one row (b is
-- the newest bucket); a late refund or capture touches at most the rest of its day (8,640 rows
-- per operation at most). Size: at most 8,640 rows per operation and day with calls (a busy
-- org, ~4 calls a second over 5 operations, fills them all: 43,200 rows a day, about an eighth
-- of its requests). Prefix rows are kept for whole UTC days back to the oldest day a window can
-- start in (366 days) plus one; older ones are pruned, day rows stay.

-- Tables ------------------------------------------------------------------------------------

create table public.credit_usage_prefix (
  org_id uuid not null references public.orgs (id),
  operation text not null,
  -- Start of a 10-second UTC bucket in which this operation had calls.
  bucket_start timestamptz not null,
  -- Sums over this operation's requests created from the start of bucket_start's UTC day up to
  -- the end of this bucket.
  calls bigint not null default 0,
  successful_calls bigint not null default 0,
  failed_calls bigint not null default 0,
  -- Charged minus refunded.
  credits_used bigint not null default 0,
  latency_ms_sum bigint not null default 0,
  latency_count bigint not null default 0,
  -- (org, operation, bucket): "the last row before a bucket" is one descent of this key.
  primary key (org_id, operation, bucket_start)
);

comment on table public.credit_usage_prefix is
  'Running usage totals within each UTC day, per org and operation, at every 10-second bucket with calls (kept by roll_up_credit_usage() from the ledger). Read through get_usage_stats and get_daily_usage.';

alter table public.credit_usage_prefix enable row level security;
revoke all on public.credit_usage_prefix from anon, authenticated, service_role;
grant select on public.credit_usage_prefix to authenticated, service_role;

create policy credit_usage_prefix_select_members on public.credit_usage_prefix
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

-- Day rows only from now on.
delete from public.credit_usage_rollup where grain <> 'day';
alter table public.credit_usage_rollup drop constraint credit_usage_rollup_grain_check;
alter table public.credit_usage_rollup add constraint credit_usage_rollup_grain_check check (grain = 'day');
comment on table public.credit_usage_rollup is
  'Per-day, per-operation usage sums (UTC), kept by roll_up_credit_usage() from the ledger; credit_usage_prefix holds the running totals within each day. Read through get_usage_stats and get_daily_usage.';

-- The oldest UTC day whose prefix rows are kept: the day a 366-day window can start in, and one
-- more for a reader whose transaction began the day before.
create function private.usage_prefix_horizon()
returns timestamptz
language sql
stable
set search_path = ''
as $$
  select date_bin('1 day', now() - interval '367 days', timestamptz '2000-01-01 00:00:00+00')
$$;

revoke all on function private.usage_prefix_horizon() from public;
comment on function private.usage_prefix_horizon() is
  'Start of the oldest UTC day whose usage prefix rows are kept (367 days back). Internal: fold_usage_deltas, roll_up_credit_usage, rebuild_credit_usage_rollup.';

-- Reading ----------------------------------------------------------------------------------------

-- Usage of the org's requests created after p_since, per UTC day and operation, exactly as a
-- full scan of credit_requests would count it. With v_from = p_since + 1 µs (the first instant
-- in the window), d0 its UTC day and m0 its 10-second bucket, per operation:
--   * day rows from d0 on;
--   * minus d0's part before v_from: the last prefix row before m0, then minus the requests in
--     [m0, v_from) as they are now (v_from in the first half of its bucket); or the last prefix
--     row through m0, then plus the requests in [v_from, m0 + 10 s) (second half);
--   * plus the ledger entries past the watermark (the tail) for requests created from m0 (or
--     m0 + 10 s) on, which brings every rollup row above up to date.
-- So both a quiet and a busy org read the same rollup rows per operation (one per day and one
-- prefix row); only the 5 seconds of requests and the tail grow with traffic. plpgsql so that
-- its plan is cached, and always the generic plan (plan_cache_mode): the same plan for every
-- org, instead of a custom plan made per call for the org's numbers, which cost more than
-- running it.
-- SECURITY DEFINER, with the membership check done once up front (caller_org): as an invoker,
-- every table it reads applied its RLS policy, and each policy looked the caller's orgs up
-- again (a readable_org_ids() call per table read, and only for the reads that found rows: the
-- tail's two tables cost a busy org two lookups more than a quiet one, more than the rows).
create or replace function private.usage_by_day(p_org_id uuid, p_since timestamptz)
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
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  v_origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
  -- Timestamps count microseconds: "created after p_since" is "created at or after v_from".
  v_from timestamptz := p_since + interval '1 microsecond';
  v_d0 timestamptz := date_bin('1 day', v_from, v_origin);
  v_m0 timestamptz := date_bin('10 seconds', v_from, v_origin);
  v_m1 timestamptz := v_m0 + interval '10 seconds';
  -- First half of the bucket: prefix before m0, minus [m0, v_from); else prefix through m0,
  -- plus [v_from, m1).
  v_early boolean := v_from - v_m0 <= v_m1 - v_from;
  v_watermark bigint := (select s.rolled_through from private.credit_usage_rollup_state s);
begin
  -- Only a member's orgs (not_a_member 42501 otherwise; forbidden without a signed-in user).
  p_org_id := private.caller_org(coalesce(p_org_id, '00000000-0000-0000-0000-000000000000'::uuid));
  return query
  with pieces as (
    -- Whole days, d0 included.
    select u.bucket_start as at, u.operation, u.calls, u.successful_calls, u.failed_calls, u.credits_used,
           u.latency_ms_sum, u.latency_count
    from public.credit_usage_rollup u
    where u.org_id = p_org_id and u.grain = 'day' and u.bucket_start >= v_d0
    union all
    -- d0 before m0 (or through m0), subtracted: one primary-key descent per operation of d0
    -- (an operation without a d0 row has no prefix row in d0 either).
    select v_d0, p.operation, -p.calls, -p.successful_calls, -p.failed_calls, -p.credits_used,
           -p.latency_ms_sum, -p.latency_count
    from public.credit_usage_rollup u
    cross join lateral (
      select * from public.credit_usage_prefix x
      where x.org_id = p_org_id and x.operation = u.operation
        and x.bucket_start >= v_d0 and x.bucket_start < case when v_early then v_m0 else v_m1 end
      order by x.bucket_start desc
      limit 1
    ) p
    where u.org_id = p_org_id and u.grain = 'day' and u.bucket_start = v_d0
    union all
    -- The partial bucket, as the requests are now: [m0, v_from) subtracted, or [v_from, m1) added.
    select r.created_at, r.operation, s.sign * 1::bigint,
           s.sign * (r.success is true)::int::bigint, s.sign * (r.success is false)::int::bigint,
           s.sign * (r.charged - r.refunded),
           s.sign * coalesce(r.latency_ms, 0)::bigint, s.sign * (r.latency_ms is not null)::int::bigint
    from (select case when v_early then -1 else 1 end as sign) s
    join public.credit_requests r on r.org_id = p_org_id
      and r.created_at >= case when v_early then v_m0 else v_from end
      and r.created_at < case when v_early then v_from else v_m1 end
    union all
    -- The tail: ledger entries not folded in yet, for every request the rows above count.
    select d.called_at, d.operation, d.calls::bigint, d.successful_calls::bigint, d.failed_calls::bigint, d.credits_used,
           d.latency_ms_sum::bigint, d.latency_count::bigint
    from private.credit_usage_deltas d
    where d.org_id = p_org_id and d.ledger_id > v_watermark
      and d.called_at >= case when v_early then v_m0 else v_m1 end
  )
  select (p.at at time zone 'UTC')::date, p.operation,
         sum(p.calls)::bigint, sum(p.successful_calls)::bigint, sum(p.failed_calls)::bigint, sum(p.credits_used)::bigint,
         sum(p.latency_ms_sum)::bigint, sum(p.latency_count)::bigint
  from pieces p
  group by 1, 2
  -- d0 less its prefix can leave an operation with nothing in the window.
  having sum(p.calls) <> 0;
end
$$;

revoke all on function private.usage_by_day(uuid, timestamptz) from public;
grant execute on function private.usage_by_day(uuid, timestamptz) to authenticated;
comment on function private.usage_by_day(uuid, timestamptz) is
  'Usage of an org''s requests created after p_since per UTC day and operation (day rows, one prefix row per operation, at most 5 s of requests and the tail; identical to a full scan). Definer: checks membership once instead of RLS per table. Called by authenticated through get_usage_stats and get_daily_usage.';

-- The two RPCs over it: the same generic plan for every org, not one planned per call.
alter function public.get_usage_stats(integer, uuid) set plan_cache_mode = force_generic_plan;
alter function public.get_daily_usage(integer, uuid) set plan_cache_mode = force_generic_plan;

-- Keeping it current -------------------------------------------------------------------------------

-- Folds ledger entries (p_from, p_through] into the day rows and the prefix rows. Per org,
-- operation and UTC day, the entries' sums by 10-second bucket are accumulated (c_i up to bucket
-- m_i); every existing prefix row in [m_i, m_i+1) gains c_i, and a bucket without a row gets one:
-- the last row before it in that day (as it was) plus c_i. One statement, so the new rows are
-- computed from the old values and the updated rows never include them. Buckets before the
-- prefix horizon change day rows only.
create or replace function private.fold_usage_deltas(p_from bigint, p_through bigint)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
  v_horizon timestamptz := private.usage_prefix_horizon();
begin
  insert into public.credit_usage_rollup as u (org_id, grain, bucket_start, operation, calls, successful_calls, failed_calls, credits_used, latency_ms_sum, latency_count)
  select d.org_id, 'day', date_bin('1 day', d.called_at, v_origin), d.operation,
         sum(d.calls), sum(d.successful_calls), sum(d.failed_calls), sum(d.credits_used), sum(d.latency_ms_sum), sum(d.latency_count)
  from private.credit_usage_deltas d
  where d.ledger_id > p_from and d.ledger_id <= p_through
  group by 1, 2, 3, 4
  on conflict (org_id, grain, bucket_start, operation) do update
  set calls = u.calls + excluded.calls,
      successful_calls = u.successful_calls + excluded.successful_calls,
      failed_calls = u.failed_calls + excluded.failed_calls,
      credits_used = u.credits_used + excluded.credits_used,
      latency_ms_sum = u.latency_ms_sum + excluded.latency_ms_sum,
      latency_count = u.latency_count + excluded.latency_count;

  with buckets as (
    select d.org_id, d.operation, date_bin('10 seconds', d.called_at, v_origin) as bucket,
           sum(d.calls) as calls, sum(d.successful_calls) as successful_calls, sum(d.failed_calls) as failed_calls,
           sum(d.credits_used) as credits_used, sum(d.latency_ms_sum) as latency_ms_sum, sum(d.latency_count) as latency_count
    from private.credit_usage_deltas d
    where d.ledger_id > p_from and d.ledger_id <= p_through and d.called_at >= v_horizon
    group by 1, 2, 3
  ),
  running as (
    select m.org_id, m.operation, m.bucket,
           -- [bucket, until): the prefix rows this running total applies to
           coalesce(lead(m.bucket) over w, date_bin('1 day', m.bucket, v_origin) + interval '1 day') as until,
           sum(m.calls) over w as calls, sum(m.successful_calls) over w as successful_calls, sum(m.failed_calls) over w as failed_calls,
           sum(m.credits_used) over w as credits_used, sum(m.latency_ms_sum) over w as latency_ms_sum, sum(m.latency_count) over w as latency_count
    from buckets m
    window w as (partition by m.org_id, m.operation, date_bin('1 day', m.bucket, v_origin) order by m.bucket)
  ),
  updated as (
    update public.credit_usage_prefix x
    set calls = x.calls + c.calls,
        successful_calls = x.successful_calls + c.successful_calls,
        failed_calls = x.failed_calls + c.failed_calls,
        credits_used = x.credits_used + c.credits_used,
        latency_ms_sum = x.latency_ms_sum + c.latency_ms_sum,
        latency_count = x.latency_count + c.latency_count
    from running c
    where x.org_id = c.org_id and x.operation = c.operation and x.bucket_start >= c.bucket and x.bucket_start < c.until
  )
  insert into public.credit_usage_prefix (org_id, operation, bucket_start, calls, successful_calls, failed_calls, credits_used, latency_ms_sum, latency_count)
  select c.org_id, c.operation, c.bucket,
         coalesce(b.calls, 0) + c.calls, coalesce(b.successful_calls, 0) + c.successful_calls, coalesce(b.failed_calls, 0) + c.failed_calls,
         coalesce(b.credits_used, 0) + c.credits_used, coalesce(b.latency_ms_sum, 0) + c.latency_ms_sum, coalesce(b.latency_count, 0) + c.latency_count
  from running c
  left join lateral (
    select * from public.credit_usage_prefix x
    where x.org_id = c.org_id and x.operation = c.operation
      and x.bucket_start >= date_bin('1 day', c.bucket, v_origin) and x.bucket_start < c.bucket
    order by x.bucket_start desc
    limit 1
  ) b on true
  where not exists (
    select 1 from public.credit_usage_prefix x
    where x.org_id = c.org_id and x.operation = c.operation and x.bucket_start = c.bucket
  );
end
$$;

revoke all on function private.fold_usage_deltas(bigint, bigint) from public;
comment on function private.fold_usage_deltas(bigint, bigint) is
  'Adds the usage deltas of ledger entries (p_from, p_through] to the day rows and the within-day running totals (credit_usage_prefix). Internal: roll_up_credit_usage.';

-- As before (see its first migration), but pruning prefix rows past the horizon instead of the
-- minute and hour rows that are gone.
create or replace function public.roll_up_credit_usage(p_batch_size integer default 100000, p_wait_ms integer default 5000)
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

  -- Prefix rows of days past the horizon, of the orgs that were just active (one primary-key
  -- range per org and operation).
  delete from public.credit_usage_prefix x
  using (select distinct l.org_id from public.credit_ledger l where l.id > v_from and l.id <= v_through) a
  where x.org_id = a.org_id and x.bucket_start < private.usage_prefix_horizon();
  return v_count;
end
$$;

revoke all on function public.roll_up_credit_usage(integer, integer) from public;
grant execute on function public.roll_up_credit_usage(integer, integer) to service_role;
comment on function public.roll_up_credit_usage(integer, integer) is
  'Cron (every second: a minutely run that loops) / service_role: fold up to p_batch_size ledger entries into the usage rollup and its within-day running totals (waiting up to p_wait_ms for open transactions); returns how many. Errors: invalid_batch_size, invalid_wait 22023, invalid_isolation 25000.';

-- Builds the day rows and the prefix rows from scratch from credit_requests (each request as it
-- is now, which is the sum of its ledger entries' deltas) and sets the watermark to the newest
-- ledger id. Takes the ledger's EXCLUSIVE lock for the duration, so no entry can commit
-- meanwhile (charges wait), and the roll-up job's lock, so no fold runs beside it. For
-- migrations and repairs; not granted to any API role.
create or replace function private.rebuild_credit_usage_rollup()
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_origin constant timestamptz := timestamptz '2000-01-01 00:00:00+00';
  v_horizon timestamptz := private.usage_prefix_horizon();
  v_rows bigint;
begin
  lock table public.credit_ledger in exclusive mode;
  perform pg_advisory_xact_lock(hashtext('tollgate.roll_up_credit_usage'));
  delete from public.credit_usage_rollup;
  delete from public.credit_usage_prefix;
  -- One pass over the requests (the CTE is computed once), both tables written from it.
  with buckets as (
    select r.org_id, r.operation, date_bin('10 seconds', r.created_at, v_origin) as bucket,
           count(*) as calls, count(*) filter (where r.success) as successful_calls, count(*) filter (where not r.success) as failed_calls,
           sum(r.charged - r.refunded) as credits_used, coalesce(sum(r.latency_ms), 0) as latency_ms_sum, count(r.latency_ms) as latency_count
    from public.credit_requests r
    group by 1, 2, 3
  ),
  days as (
    insert into public.credit_usage_rollup (org_id, grain, bucket_start, operation, calls, successful_calls, failed_calls, credits_used, latency_ms_sum, latency_count)
    select m.org_id, 'day', date_bin('1 day', m.bucket, v_origin), m.operation,
           sum(m.calls), sum(m.successful_calls), sum(m.failed_calls), sum(m.credits_used), sum(m.latency_ms_sum), sum(m.latency_count)
    from buckets m
    group by 1, 2, 3, 4
    returning 1
  ),
  running as (
    insert into public.credit_usage_prefix (org_id, operation, bucket_start, calls, successful_calls, failed_calls, credits_used, latency_ms_sum, latency_count)
    select m.org_id, m.operation, m.bucket,
           sum(m.calls) over w, sum(m.successful_calls) over w, sum(m.failed_calls) over w,
           sum(m.credits_used) over w, sum(m.latency_ms_sum) over w, sum(m.latency_count) over w
    from buckets m
    where m.bucket >= v_horizon
    window w as (partition by m.org_id, m.operation, date_bin('1 day', m.bucket, v_origin) order by m.bucket)
    returning 1
  )
  select (select count(*) from days) + (select count(*) from running) into v_rows;

  update private.credit_usage_rollup_state
  set rolled_through = coalesce((select max(l.id) from public.credit_ledger l), 0), rolled_at = now();
  return v_rows;
end
$$;

revoke all on function private.rebuild_credit_usage_rollup() from public;
comment on function private.rebuild_credit_usage_rollup() is
  'Rebuilds the usage day rows and within-day running totals from credit_requests under the ledger''s EXCLUSIVE lock; returns the rows written. Migrations and repairs only (postgres).';

select private.rebuild_credit_usage_rollup();

-- Every second, so the tail a reader adds stays short (at 10M calls a month, about 4 ledger
-- entries; every 10 seconds it was about 40, and each costs a reader ~5 µs, a lookup of its
-- request). A round with nothing new reads the newest ledger id and returns. pg_cron schedules
-- in seconds only from 1.5 on (Debian's package for PostgreSQL 15 ships 1.4), so, as the replica
-- heartbeat does, one run starts every minute and rolls up every second for that minute,
-- committing each round (each is its own transaction; the sleeps hold no locks, and
-- roll_up_credit_usage takes its advisory lock per transaction). One run is logged per minute.
-- pg_cron never runs a job twice at once and skips a run while the previous one is still going,
-- so each run stops 2 seconds before the next minute is due. cron.schedule upserts by name: this
-- replaces the 10-second (or minutely) schedule.
select cron.schedule('tollgate-roll-up-credit-usage', '* * * * *', $job$
do $roll$
declare
  v_until timestamptz := pg_catalog.date_trunc('minute', pg_catalog.clock_timestamp()) + interval '58 seconds';
begin
  loop
    perform public.roll_up_credit_usage(100000, 1000);
    commit;
    exit when pg_catalog.clock_timestamp() + interval '1 second' > v_until;
    perform pg_catalog.pg_sleep(1);
  end loop;
end
$roll$
$job$);
