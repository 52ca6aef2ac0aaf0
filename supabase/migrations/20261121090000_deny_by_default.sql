-- Deny by default.
--
-- Hosted Supabase grants EXECUTE on every new function in `public` to anon, authenticated and
-- service_role, and PostgreSQL grants EXECUTE on every function to PUBLIC. Tollgate exposes
-- money-moving functions, so nothing is callable until its own migration grants it to the role
-- that may call it. Tables keep Supabase's grant to service_role; anon and authenticated get
-- explicit per-table grants next to each table's RLS policies.

alter default privileges for role postgres revoke execute on functions from public;
alter default privileges for role postgres in schema public revoke execute on functions from anon, authenticated, service_role;
alter default privileges for role postgres in schema public revoke all on tables from anon, authenticated;
alter default privileges for role postgres in schema public revoke all on sequences from anon, authenticated;

-- `private` holds helpers that RLS policies and triggers call. PostgREST does not expose it, so
-- nothing in it is reachable as an RPC; roles get USAGE only where a policy needs a helper.
create schema if not exists private;
revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;

alter default privileges for role postgres in schema private revoke execute on functions from public;
