-- The replica heartbeat's minute-long run ends before the next minute starts, however late the
-- run began: pg_cron skips a run while the previous one is still going, so a run that started a
-- few seconds late (a busy primary) and beat for a full 59 seconds made the next minute's run
-- be skipped — a minute without beats, read as a minute of replica lag. Same job name, so
-- cron.schedule replaces the old definition.
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
