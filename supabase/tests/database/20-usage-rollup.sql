-- The usage rollup: get_usage_stats and get_daily_usage answer exactly what a full scan of
-- credit_requests answers, whether the calls are in the tail (not rolled up yet), in the rollup,
-- or rolled up and changed afterwards (settled, refunded); windows starting anywhere in a minute
-- and at the edges of UTC days; the within-day running totals (credit_usage_prefix) agree with
-- the day rows; roll_up_credit_usage's batches and a rebuild from scratch agree; pruning; who
-- may call what.
begin;
\ir helpers/setup.psql
select plan(52);

-- The reference: get_usage_stats as it was, a full scan of the org's requests.
create function tests.usage_stats_full_scan(p_org_id uuid, p_days integer)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'period_days', p_days,
    'total_calls', count(*),
    'successful_calls', count(*) filter (where r.success),
    'failed_calls', count(*) filter (where not r.success),
    'total_credits_used', coalesce(sum(r.charged - r.refunded), 0),
    'avg_latency_ms', coalesce(round(avg(r.latency_ms), 2), 0)
  ) || jsonb_build_object('top_operations', coalesce((
    select jsonb_agg(jsonb_build_object('operation', t.operation, 'calls', t.calls, 'credits', t.credits) order by t.calls desc, t.operation)
    from (
      select r2.operation, count(*) as calls, coalesce(sum(r2.charged - r2.refunded), 0) as credits
      from public.credit_requests r2
      where r2.org_id = p_org_id and r2.created_at > now() - make_interval(days => p_days)
      group by r2.operation
      order by calls desc, r2.operation
      limit 10
    ) t
  ), '[]'))
  from public.credit_requests r
  where r.org_id = p_org_id and r.created_at > now() - make_interval(days => p_days)
$$;

-- The daily answer by full scan: per UTC day and operation, today and the p_days - 1 before.
create function tests.daily_usage_full_scan(p_org_id uuid, p_days integer)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object(
           'day', d.day, 'operation', d.operation, 'calls', d.calls, 'successful_calls', d.ok,
           'failed_calls', d.failed, 'credits_used', d.credits) order by d.day, d.operation), '[]')
  from (
    select (r.created_at at time zone 'UTC')::date as day, r.operation, count(*) as calls,
           count(*) filter (where r.success) as ok, count(*) filter (where not r.success) as failed,
           sum(r.charged - r.refunded) as credits
    from public.credit_requests r
    where r.org_id = p_org_id and r.created_at >= ((now() at time zone 'UTC')::date - (p_days - 1))::timestamp at time zone 'UTC'
    group by 1, 2
  ) d
$$;

grant execute on all functions in schema tests to authenticated;

-- Compares both RPCs with the full scan for alice, over windows that end inside a minute, an
-- hour and a day, and returns the mismatches (none is the only good answer).
create function tests.usage_mismatches(p_user uuid, p_org_id uuid)
returns text[]
language plpgsql
set search_path = ''
as $$
declare
  v_days integer;
  v_bad text[] := '{}';
begin
  perform tests.authenticate_as(p_user);
  foreach v_days in array array[1, 2, 7, 29, 30, 31, 90, 366] loop
    if public.get_usage_stats(v_days) is distinct from tests.usage_stats_full_scan(p_org_id, v_days)
       or public.get_usage_stats(v_days)::text <> tests.usage_stats_full_scan(p_org_id, v_days)::text then
      v_bad := v_bad || format('stats %s: %s <> %s', v_days, public.get_usage_stats(v_days), tests.usage_stats_full_scan(p_org_id, v_days));
    end if;
    if public.get_daily_usage(v_days) -> 'days' is distinct from tests.daily_usage_full_scan(p_org_id, v_days) then
      v_bad := v_bad || format('daily %s: %s <> %s', v_days, public.get_daily_usage(v_days) -> 'days', tests.daily_usage_full_scan(p_org_id, v_days));
    end if;
  end loop;
  perform tests.clear_authentication();
  return v_bad;
end
$$;

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset
insert into public.credit_prices (operation, credits) values ('op_a', 2), ('op_b', 5), ('op_c', 1), ('op_free', 0);
select public.grant_credits(:'alice_org', 100000, 'purchase', 'alice-big');

-- Phase 1: history, all of it in the tail ----------------------------------------------------------

-- 120 plain charges spread over 40 days, at odd seconds, several operations and quantities.
select tests.authenticate_as(:'alice');
select public.consume_credits((array['op_a', 'op_b', 'op_c', 'op_free'])[1 + i % 4], 'c-' || i, 1 + i % 3) from generate_series(1, 120) i;
select tests.clear_authentication();
update public.credit_requests
set created_at = now() - make_interval(secs => (split_part(request_id, '-', 2)::int * 28837) % (40 * 86400))
where org_id = :'alice_org' and request_id like 'c-%';
-- Calls right at the edges of the windows: 30 days ago give or take seconds (inside the edge
-- minute), a minute, an hour.
select tests.authenticate_as(:'alice');
select public.consume_credits('op_b', 'edge-' || s, 1) from unnest(array[-3600, -61, -20, -1, 1, 20, 61, 3600]) s;
select tests.clear_authentication();
update public.credit_requests
set created_at = now() - interval '30 days' + make_interval(secs => split_part(request_id, 'edge-', 2)::int)
where org_id = :'alice_org' and request_id like 'edge-%';
-- Holds: captured (in part), released by a backend error with latency, released as the
-- caller's choice but recorded as a success, expired, and some still open.
select tests.authenticate_as_service_role();
select public.reserve_credits(:'alice_org', :'alice', 'op_b', 'h-' || i, 3) from generate_series(1, 12) i;
select public.capture_credits(:'alice_org', 'h-1', 2, '{"latency_ms": 120}');
select public.capture_credits(:'alice_org', 'h-2', null, '{"latency_ms": 80}');
select public.capture_credits(:'alice_org', 'h-3', 0, '{"latency_ms": 7, "success": false}');
select public.release_credits(:'alice_org', 'h-4', true, '{"latency_ms": 301, "error_code": "upstream_500"}');
select public.release_credits(:'alice_org', 'h-5', false, '{"latency_ms": 45, "success": true}');
select public.refund_credits(:'alice_org', 'h-2', 'backend failed after capture');
select public.refund_credits(:'alice_org', 'c-5', 'backend failed');
select tests.clear_authentication();
update public.credit_requests set hold_expires_at = now() - interval '1 second' where org_id = :'alice_org' and request_id = 'h-6';
select public.expire_stale_holds(100);
update public.credit_requests
set created_at = now() - make_interval(days => split_part(request_id, '-', 2)::int * 2, secs => 17)
where org_id = :'alice_org' and request_id like 'h-%';

select results_eq(
  format($$select status from public.credit_requests where org_id = %L and request_id in ('h-1', 'h-2', 'h-4', 'h-6', 'h-9', 'c-5') order by request_id$$, :'alice_org'),
  $$values ('refunded'), ('captured'), ('refunded'), ('released'), ('expired'), ('held')$$,
  'setup: charges, captures, releases, an expired hold, open holds and refunds'
);
select is(tests.usage_mismatches(:'alice', :'alice_org'), '{}', 'all in the tail: both RPCs equal the full scan');

-- Phase 2: rolled up -----------------------------------------------------------------------------

select max(id) as newest from public.credit_ledger \gset
select cmp_ok(public.roll_up_credit_usage(), '>', 0, 'roll_up_credit_usage folds the entries past the watermark');
select is((select rolled_through from private.credit_usage_rollup_state), :'newest'::bigint, 'the watermark is the newest ledger id');
select is(public.roll_up_credit_usage(), 0, 'a second run has nothing to fold');
select is(tests.usage_mismatches(:'alice', :'alice_org'), '{}', 'all rolled up: both RPCs equal the full scan');
select ok(
  (select count(*) from public.credit_usage_rollup where org_id = :'alice_org' and grain = 'day')
    = (select count(distinct ((created_at at time zone 'UTC')::date, operation)) from public.credit_requests where org_id = :'alice_org'),
  'one day row per day and operation with calls'
);
select is(
  (select sum(calls)::bigint from public.credit_usage_rollup where org_id = :'alice_org'),
  (select count(*) from public.credit_requests where org_id = :'alice_org'),
  'the day rows count every call once'
);
-- The running totals: the last row of each day and operation is that day's row.
create function tests.prefix_mismatches(p_org_id uuid)
returns bigint
language sql
set search_path = ''
as $$
  select count(*)
  from public.credit_usage_rollup u
  full join (
    select distinct on (x.operation, date_bin('1 day', x.bucket_start, timestamptz '2000-01-01 00:00:00+00'))
           x.operation, date_bin('1 day', x.bucket_start, timestamptz '2000-01-01 00:00:00+00') as day,
           x.calls, x.successful_calls, x.failed_calls, x.credits_used, x.latency_ms_sum, x.latency_count
    from public.credit_usage_prefix x
    where x.org_id = p_org_id
    order by x.operation, date_bin('1 day', x.bucket_start, timestamptz '2000-01-01 00:00:00+00'), x.bucket_start desc
  ) p on p.operation = u.operation and p.day = u.bucket_start
  where (u.org_id = p_org_id or u.org_id is null)
    and (u.org_id is null or p.operation is null
         or (u.calls, u.successful_calls, u.failed_calls, u.credits_used, u.latency_ms_sum, u.latency_count)
            is distinct from (p.calls, p.successful_calls, p.failed_calls, p.credits_used, p.latency_ms_sum, p.latency_count))
$$;
select is(tests.prefix_mismatches(:'alice_org'), 0::bigint, 'each day''s last running total equals its day row');

-- Phase 3: rolled up, then changed: the tail corrects the rollup ------------------------------------

select tests.authenticate_as_service_role();
select public.capture_credits(:'alice_org', 'h-7', 1, '{"latency_ms": 999}');
select public.release_credits(:'alice_org', 'h-8', true, '{"latency_ms": 12}');
select public.refund_credits(:'alice_org', 'h-1', 'late refund of a rolled-up capture');
select public.refund_credits(:'alice_org', 'c-6', 'late refund of a rolled-up charge');
select public.refund_credits(:'alice_org', 'edge-20', 'late refund at the window edge');
select public.reserve_credits(:'alice_org', :'alice', 'op_c', 'h-new', 1);
select tests.clear_authentication();
update public.credit_requests set hold_expires_at = now() - interval '1 second' where org_id = :'alice_org' and request_id = 'h-10';
select public.expire_stale_holds(100);
select tests.authenticate_as(:'alice');
select public.consume_credits('op_a', 'new-' || i) from generate_series(1, 5) i;
select tests.clear_authentication();

select is(tests.usage_mismatches(:'alice', :'alice_org'), '{}', 'rolled up and changed since (captures, releases, expiry, refunds, new calls): equal to the full scan');
select cmp_ok(
  (select count(*) from private.credit_usage_deltas where org_id = :'alice_org' and ledger_id > (select rolled_through from private.credit_usage_rollup_state)),
  '>=', 10::bigint, 'setup: those changes are in the tail'
);

-- Small batches: the watermark moves by at most the batch size, and stays exact.
select is(public.roll_up_credit_usage(3), 3, 'a batch folds at most p_batch_size entries');
select is(tests.usage_mismatches(:'alice', :'alice_org'), '{}', 'part rolled up, part tail: equal to the full scan');
select public.roll_up_credit_usage(1000);
select is(tests.usage_mismatches(:'alice', :'alice_org'), '{}', 'rolled up again: equal to the full scan');

-- Windows that start anywhere in a minute, an hour and a day, and at the edges of a UTC day
-- (the microsecond before midnight, midnight, just after, the second half of the day's last
-- 10-second bucket, whose next bucket is the next day, and the exact middle of a bucket): the
-- partial day is its day row less a running total before (or through) the window's bucket,
-- less (or plus) that bucket's requests; all of them must give the full scan per day.
create function tests.window_mismatches(p_org_id uuid)
returns text[]
language plpgsql
set search_path = ''
as $$
declare
  v_anchor timestamptz := date_bin('1 day', now() - interval '3 days', timestamptz '2000-01-01 00:00:00+00');
  v_since timestamptz;
  v_bad text[] := '{}';
begin
  for v_since in
    select v_anchor + make_interval(hours => h, mins => m, secs => sec)
    from unnest(array[2, 21]) h, unnest(array[7, 52]) m, unnest(array[3.25, 56.5]) sec
    union all select v_anchor + x from unnest(array[interval '0', interval '5 hours', interval '5 hours 17 minutes', interval '-1 microsecond',
      interval '1 microsecond', interval '-2 microseconds', interval '-20 seconds', interval '-40 seconds', interval '-60 seconds',
      interval '30 seconds', interval '7 minutes 30 seconds', interval '1 day -1 microsecond', interval '1 day -15 seconds',
      interval '-2 seconds', interval '-3 seconds', interval '4.999999 seconds', interval '1 hour 14.999999 seconds']) x
  loop
    if exists (
      (select * from private.usage_by_day(p_org_id, v_since)
       except
       select (r.created_at at time zone 'UTC')::date, r.operation, count(*), count(*) filter (where r.success), count(*) filter (where not r.success),
              sum(r.charged - r.refunded), coalesce(sum(r.latency_ms), 0), count(r.latency_ms)
       from public.credit_requests r where r.org_id = p_org_id and r.created_at > v_since group by 1, 2)
      union all
      (select (r.created_at at time zone 'UTC')::date, r.operation, count(*), count(*) filter (where r.success), count(*) filter (where not r.success),
              sum(r.charged - r.refunded), coalesce(sum(r.latency_ms), 0), count(r.latency_ms)
       from public.credit_requests r where r.org_id = p_org_id and r.created_at > v_since group by 1, 2
       except
       select * from private.usage_by_day(p_org_id, v_since))
    ) then
      v_bad := v_bad || v_since::text;
    end if;
  end loop;
  return v_bad;
end
$$;
grant execute on function tests.window_mismatches(uuid) to authenticated;

select tests.authenticate_as(:'alice');
select public.consume_credits((array['op_a', 'op_b', 'op_c'])[1 + (i + 150) % 3], 'grid-' || i) from generate_series(-150, 450) i;
select tests.clear_authentication();
-- A call every 7 min 13 s around midnight three days ago, some refunded.
update public.credit_requests
set created_at = date_bin('1 day', now() - interval '3 days', timestamptz '2000-01-01 00:00:00+00') + make_interval(secs => split_part(request_id, 'grid-', 2)::int * 433)
where org_id = :'alice_org' and request_id like 'grid-%';
select public.refund_credits(:'alice_org', 'grid-' || i, 'grid refund') from generate_series(-140, 440, 37) i;
select tests.authenticate_as(:'alice');
select is(tests.window_mismatches(:'alice_org'), '{}', 'windows starting anywhere in a minute, hour and day and at day edges (in the tail): equal to the full scan per day');
select tests.clear_authentication();
select public.roll_up_credit_usage(100000);
select tests.authenticate_as(:'alice');
select is(tests.window_mismatches(:'alice_org'), '{}', 'the same windows, rolled up: equal to the full scan per day');
select tests.clear_authentication();

-- The in-flight tail at the window's edge: calls in the edge minutes around midnight, changed
-- after the rollup took them (refunds), and new calls landing in a minute that is already
-- rolled up and in a minute between two rolled-up ones (a transaction that began there and
-- committed late), all read through the tail, then folded.
select tests.authenticate_as(:'alice');
select public.consume_credits('op_b', 'late-' || i) from generate_series(1, 4) i;
select tests.clear_authentication();
update public.credit_requests
set created_at = date_bin('1 day', now() - interval '3 days', timestamptz '2000-01-01 00:00:00+00')
                 + (array[interval '-1 microsecond', interval '0', interval '1 minute 1 second', interval '-2 hours 3 minutes 4 seconds'])[split_part(request_id, '-', 2)::int]
where org_id = :'alice_org' and request_id like 'late-%';
select public.refund_credits(:'alice_org', 'grid-' || i, 'late refund at the day edge') from unnest(array[-1, 0, 1, 2]) i
where not exists (select 1 from public.credit_requests where org_id = :'alice_org' and request_id = 'grid-' || i and status = 'refunded');
select cmp_ok(
  (select count(*) from private.credit_usage_deltas
   where org_id = :'alice_org' and ledger_id > (select rolled_through from private.credit_usage_rollup_state)
     and called_at between date_bin('1 day', now() - interval '3 days', timestamptz '2000-01-01 00:00:00+00') - interval '3 hours'
                       and date_bin('1 day', now() - interval '3 days', timestamptz '2000-01-01 00:00:00+00') + interval '10 minutes'),
  '>=', 6::bigint, 'setup: calls and refunds at the day edge are in the tail'
);
select tests.authenticate_as(:'alice');
select is(tests.window_mismatches(:'alice_org'), '{}', 'day-edge windows with an in-flight tail there: equal to the full scan per day');
select tests.clear_authentication();
select is(tests.usage_mismatches(:'alice', :'alice_org'), '{}', 'and both RPCs equal the full scan');
select public.roll_up_credit_usage(100000);
select tests.authenticate_as(:'alice');
select is(tests.window_mismatches(:'alice_org'), '{}', 'the same, folded (rows inserted between rolled-up minutes): equal to the full scan per day');
select tests.clear_authentication();
select is(tests.prefix_mismatches(:'alice_org'), 0::bigint, 'after late calls and refunds, each day''s last running total still equals its day row');
select tests.authenticate_as(:'alice');
select ok(
  (select count(*) from private.usage_by_day(:'alice_org', date_bin('1 day', now() - interval '3 days', timestamptz '2000-01-01 00:00:00+00') + interval '21 hours 52 minutes 56.5 seconds')) > 0,
  'setup: the windows hold calls'
);
select tests.clear_authentication();

-- Folding entry by entry and rebuilding from the requests give the same rollup.
create temporary table folded on commit drop as select * from public.credit_usage_rollup where org_id = :'alice_org';
create temporary table folded_prefix on commit drop as select * from public.credit_usage_prefix where org_id = :'alice_org';
select ok(private.rebuild_credit_usage_rollup() > 0, 'rebuild_credit_usage_rollup writes the rollup from the requests');
select set_eq(
  format('select * from public.credit_usage_rollup where org_id = %L', :'alice_org'),
  'select * from folded',
  'folding the ledger and rebuilding from the requests give the same day rows'
);
select set_eq(
  format('select * from public.credit_usage_prefix where org_id = %L', :'alice_org'),
  'select * from folded_prefix',
  'folding the ledger and rebuilding from the requests give the same running totals'
);
select is((select rolled_through from private.credit_usage_rollup_state), (select max(id) from public.credit_ledger), 'a rebuild sets the watermark to the newest entry');
select is(tests.usage_mismatches(:'alice', :'alice_org'), '{}', 'after a rebuild: equal to the full scan');

-- The daily answer's shape.
select tests.authenticate_as(:'alice');
select public.get_daily_usage(7) as daily \gset
select is(
  :'daily'::jsonb - 'days',
  jsonb_build_object('period_days', 7, 'from', (now() at time zone 'UTC')::date - 6, 'to', (now() at time zone 'UTC')::date),
  'get_daily_usage: period, first and last day (UTC)'
);
select ok(
  (select bool_and((d ->> 'day')::date between (now() at time zone 'UTC')::date - 6 and (now() at time zone 'UTC')::date) from jsonb_array_elements(:'daily'::jsonb -> 'days') d),
  'get_daily_usage: only days in the period'
);
select ok(
  exists (select 1 from jsonb_array_elements(public.get_daily_usage(1) -> 'days') x
          where x ->> 'operation' = 'op_a' and (x ->> 'day')::date = (now() at time zone 'UTC')::date and (x ->> 'calls')::int >= 5),
  'get_daily_usage(1): today''s calls, e.g. the 5 new op_a charges'
);
select tests.clear_authentication();

-- Pruning: running totals of days before the oldest day a window can start in (plus one) go,
-- day rows stay.
insert into public.credit_usage_rollup (org_id, grain, bucket_start, operation, calls)
values (:'alice_org', 'day', date_bin('1 day', now() - interval '400 days', timestamptz '2000-01-01 00:00:00+00'), 'op_a', 1);
insert into public.credit_usage_prefix (org_id, operation, bucket_start, calls)
values (:'alice_org', 'op_a', date_bin('1 minute', now() - interval '400 days', timestamptz '2000-01-01 00:00:00+00'), 1),
       (:'alice_org', 'op_a', date_bin('1 day', now() - interval '367 days', timestamptz '2000-01-01 00:00:00+00') - interval '1 minute', 1),
       (:'alice_org', 'op_a', date_bin('1 day', now() - interval '367 days', timestamptz '2000-01-01 00:00:00+00'), 1),
       (:'alice_org', 'op_a', date_bin('1 minute', now() - interval '366 days', timestamptz '2000-01-01 00:00:00+00'), 1);
select tests.authenticate_as(:'alice');
select public.consume_credits('op_a', 'prune-trigger');
select tests.clear_authentication();
select public.roll_up_credit_usage();
select results_eq(
  format($$select bucket_start from public.credit_usage_prefix where org_id = %L and bucket_start < now() - interval '365 days' order by 1$$, :'alice_org'),
  $$values (date_bin('1 day', now() - interval '367 days', timestamptz '2000-01-01 00:00:00+00')),
           (date_bin('1 minute', now() - interval '366 days', timestamptz '2000-01-01 00:00:00+00'))$$,
  'running totals of days before the 367th are pruned, that day and later stay'
);
select is(
  (select count(*) from public.credit_usage_rollup where org_id = :'alice_org' and bucket_start < now() - interval '399 days'),
  1::bigint, 'day rows are never pruned'
);

-- Who may read and call --------------------------------------------------------------------------

select tests.authenticate_as(:'bob');
select is_empty(format('select 1 from public.credit_usage_rollup where org_id = %L', :'alice_org'), 'RLS: bob sees none of alice''s rollup rows');
select is_empty(format('select 1 from public.credit_usage_prefix where org_id = %L', :'alice_org'), 'RLS: bob sees none of alice''s running totals');
select throws_ok(format('select * from private.usage_by_day(%L, now() - interval ''30 days'')', :'alice_org'), '42501', 'not_a_member',
  'usage_by_day (definer) of another org: not_a_member');
select is_empty(format('select 1 from private.credit_usage_deltas where org_id = %L', :'alice_org'), 'RLS: bob sees none of alice''s usage deltas');
select throws_ok(format('select public.get_daily_usage(30, %L)', :'alice_org'), '42501', 'not_a_member', 'get_daily_usage of another org: not_a_member');
select is(
  public.get_daily_usage(30) - 'from' - 'to',
  '{"period_days": 30, "days": []}'::jsonb,
  'an org without calls: no days'
);
select throws_ok(format('select public.get_daily_usage(%s)', d), '22023', 'invalid_days', format('get_daily_usage invalid_days: %s', d))
from unnest(array['0', '367', 'null']) d;
select throws_ok('select public.roll_up_credit_usage()', '42501', null, 'authenticated cannot run the rollup');
select throws_ok('select private.rebuild_credit_usage_rollup()', '42501', null, 'authenticated cannot rebuild the rollup');
select throws_ok('insert into public.credit_usage_rollup (org_id, grain, bucket_start, operation) values (gen_random_uuid(), ''day'', now(), ''x'')', '42501', null,
  'authenticated cannot write the rollup');
select throws_ok('insert into public.credit_usage_prefix (org_id, operation, bucket_start) values (gen_random_uuid(), ''x'', now())', '42501', null,
  'authenticated cannot write the running totals');
select tests.authenticate_as_anon();
select throws_ok('select public.get_daily_usage()', '42501', null, 'anon cannot read daily usage');
select throws_ok('select 1 from public.credit_usage_rollup', '42501', null, 'anon cannot read the rollup');
select throws_ok('select 1 from public.credit_usage_prefix', '42501', null, 'anon cannot read the running totals');
select tests.authenticate_as_service_role();
select throws_ok('select public.roll_up_credit_usage(0)', '22023', 'invalid_batch_size', 'roll_up_credit_usage: invalid_batch_size');
select throws_ok('select public.roll_up_credit_usage(10, -1)', '22023', 'invalid_wait', 'roll_up_credit_usage: invalid_wait');
select tests.clear_authentication();

-- One run a minute that rolls up every second, committing each round (pg_cron 1.4 has no
-- seconds schedules).
select results_eq(
  $$select schedule, active, command ~ 'perform public\.roll_up_credit_usage\(100000, 1000\);\s+commit;' and command ~ 'pg_sleep\(1\)'
    from cron.job where jobname = 'tollgate-roll-up-credit-usage'$$,
  $$values ('* * * * *'::text, true, true)$$,
  'pg_cron rolls usage up every second (a minutely run that loops, committing each round)'
);
select is(public.reconcile_credits(), 0, 'the books still balance');

select * from finish();
rollback;
