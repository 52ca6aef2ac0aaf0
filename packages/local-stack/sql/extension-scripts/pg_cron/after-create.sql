-- Run by pgextwlist as the superuser right after `postgres` creates pg_cron (or re-runs
-- `create extension if not exists pg_cron`): what hosted Supabase grants `postgres` on schema
-- cron. Source (supabase/postgres): ansible/files/postgresql_extension_custom_scripts/pg_cron/after-create.sql
-- and migrations/db/migrations/20260730000000_revoke_trigger_on_cron_tables_from_postgres.sql.
-- postgres schedules jobs with cron.schedule and reads cron.job and cron.job_run_details; it
-- cannot write cron.job directly.
grant usage on schema cron to postgres with grant option;
grant all on all functions in schema cron to postgres with grant option;

alter default privileges for user supabase_admin in schema cron grant all
    on sequences to postgres with grant option;
alter default privileges for user supabase_admin in schema cron grant all
    on tables to postgres with grant option;
alter default privileges for user supabase_admin in schema cron grant all
    on functions to postgres with grant option;

grant all privileges on all tables in schema cron to postgres with grant option;
revoke all on table cron.job from postgres;
grant select on table cron.job to postgres with grant option;
revoke trigger on cron.job_run_details from postgres;
