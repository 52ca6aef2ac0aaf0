-- Supabase platform baseline for the docker-free local stack.
--
-- Recreates only what every hosted Supabase project already has before its first migration:
-- the roles and their attributes, grants and default privileges, schema `auth` with
-- `auth.users` and the JWT helpers, schema `extensions`, schema `graphql_public`. Nothing of
-- Tollgate lives here; the project's own schema comes from supabase/migrations via
-- `supabase db push`, run as `postgres`.
--
-- Applied by the bootstrap superuser `supabase_admin` to a new cluster (and again only when
-- this file changes), so every statement is idempotent.
-- Sources (supabase/postgres): migrations/db/init-scripts (initial-schema, auth-schema,
-- post-setup) and migrations/db/migrations (10000000000000_demote-postgres,
-- 20240627101908_revoke_supabase_auth_admin_from_postgres, 20250421084701_revoke_admin_roles_from_postgres,
-- 20251105172723_grant_pg_reload_conf_to_postgres), migrations/tests/database/privs.sql, and the
-- role memberships `pg_dumpall --roles-only` shows for a hosted project.

-- Roles -------------------------------------------------------------------------------------
do $roles$
begin
  if not exists (select from pg_roles where rolname = 'postgres') then
    create role postgres;
  end if;
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit password 'postgres';
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin login noinherit createrole password 'postgres';
  end if;
end
$roles$;

-- `postgres` as hosted Supabase demotes it: not a superuser, but CREATEDB, CREATEROLE,
-- REPLICATION (it can feed a logical subscriber) and BYPASSRLS.
alter role postgres with nosuperuser inherit createdb createrole login replication bypassrls password 'postgres';
-- The API roles, with ADMIN OPTION (postgres may grant them on, and SET ROLE to them), and
-- the predefined roles hosted projects give it. PostgreSQL 15 has no pg_create_subscription
-- (hosted projects on 16+ also get that); we run no Realtime, so no supabase_realtime_admin.
grant anon, authenticated, service_role, authenticator to postgres with admin option;
grant pg_monitor, pg_read_all_data, pg_signal_backend to postgres with admin option;
-- Hosted projects took supabase_auth_admin away from postgres.
revoke supabase_auth_admin from postgres;
grant execute on function pg_catalog.pg_reload_conf() to postgres;

grant anon, authenticated, service_role to authenticator;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
alter role postgres set search_path = "$user", public, extensions;
alter role supabase_admin set search_path = "$user", public, auth, extensions;

-- The database and schema public belong to the platform; postgres may create in both.
grant all on database postgres to postgres;
grant create, usage on schema public to postgres;

-- Schemas -----------------------------------------------------------------------------------
create schema if not exists extensions;
create schema if not exists graphql_public;
create schema if not exists auth;

create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;

grant usage on schema public, extensions, graphql_public to postgres, anon, authenticated, service_role;
grant all on schema extensions to postgres;
-- postgres may use auth and its tables (a trigger on auth.users, a lookup by id) but no longer
-- create objects in it.
grant usage on schema auth to postgres, anon, authenticated, service_role;
revoke create on schema auth from postgres;
grant all on schema auth to supabase_auth_admin;

-- Supabase's default privileges: every table, function and sequence that postgres (or the
-- platform) creates in public is granted to the API roles (RLS and explicit revokes are the
-- project's business).
alter default privileges for role supabase_admin in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;

-- auth.users as GoTrue creates it (the columns apps and triggers use) ----------------------
create table if not exists auth.users (
  instance_id uuid,
  id uuid not null primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  phone text unique default null,
  phone_confirmed_at timestamptz,
  banned_until timestamptz,
  is_sso_user boolean not null default false,
  deleted_at timestamptz,
  is_anonymous boolean not null default false
);
alter table auth.users owner to supabase_auth_admin;
create index if not exists users_instance_id_email_idx on auth.users (instance_id, lower(email));
grant all on auth.users to postgres;

-- JWT helpers, as hosted Supabase defines them ----------------------------------------------
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt()
  to postgres, anon, authenticated, service_role;
