-- Replica heartbeat: how stale the read replica's answers may be.
--
-- The plugin endpoints answer devices from the logical read replica and say, in
-- x-replication-lag-ms, how old that answer may be. The subscription statistics measure the
-- transit delay of the last message and disappear while the subscription is stopped, so they
-- read 0 (or nothing) exactly when the replica is stale. Staleness needs a clock that travels
-- with the data: pg_cron stamps this one-row table on the primary every 2 seconds, the stamp
-- replicates through publication plugin_read like any published row, and on the replica
-- `now() - beat_at` is how old its newest data may be. Healthy, that reads between 0 and the
-- heartbeat period (plus apply delay); when replication stalls it grows by a second per second.
--
-- Clock assumption: the primary's and the replica's clocks agree (both NTP-synchronised, as on
-- any hosted Postgres). Skew between them adds to or subtracts from the figure; the edge
-- functions clamp it at 0.

create table public.replica_heartbeat (
  -- One row: the table is a single clock.
  id boolean primary key default true check (id),
  beat_at timestamptz not null
);

comment on table public.replica_heartbeat is
  'One row stamped every 2 s by pg_cron on the primary and replicated through plugin_read: on the replica, now() - beat_at is its staleness (README "Replica data contract").';

insert into public.replica_heartbeat (id, beat_at) values (true, now()) on conflict (id) do nothing;

-- Nothing reads it through the API; the plugin path reads the replica's copy with its own connection.
alter table public.replica_heartbeat enable row level security;
revoke all on public.replica_heartbeat from anon, authenticated, service_role;
create policy replica_heartbeat_no_user_access on public.replica_heartbeat as restrictive
for all to anon, authenticated
using (false);

-- One beat: stamp the heartbeat row with the primary's clock. Called by the pg_cron job below
-- (as the job's owner), one beat per transaction so that each one replicates on its own.
create function private.beat_replica_heartbeat()
returns void
language sql
set search_path = ''
as $$
  update public.replica_heartbeat set beat_at = pg_catalog.clock_timestamp() where id;
$$;

revoke all on function private.beat_replica_heartbeat() from public;
comment on function private.beat_replica_heartbeat() is
  'pg_cron (tollgate-replica-heartbeat): stamp the replicated heartbeat row with the primary''s clock. Internal.';

-- The replica data contract grows by the heartbeat (built-in types only).
alter publication plugin_read add table public.replica_heartbeat (id, beat_at);

-- Every 2 seconds. pg_cron schedules in seconds only from 1.5 on, and the Debian package for
-- PostgreSQL 15 ships 1.4; so one job starts every minute and beats every 2 seconds for that
-- minute, committing each beat (a top-level DO block may commit; each beat is its own
-- transaction, the sleeps hold no locks). One run is logged per minute, not 30. pg_cron never
-- runs a job twice at once, so a late run cannot double the beat; and it skips a run while the
-- previous one is still going, so each run stops two seconds before the next minute is due,
-- however late it began.
select cron.schedule('tollgate-replica-heartbeat', '* * * * *', $job$
do $beat$
declare
  -- Two seconds before the next minute's run is due, whenever this run started.
  v_until timestamptz := pg_catalog.date_trunc('minute', pg_catalog.clock_timestamp()) + interval '58 seconds';
begin
  loop
    perform private.beat_replica_heartbeat();
    commit;
    exit when pg_catalog.clock_timestamp() + interval '2 seconds' > v_until;
    perform pg_catalog.pg_sleep(2);
  end loop;
end
$beat$
$job$);
