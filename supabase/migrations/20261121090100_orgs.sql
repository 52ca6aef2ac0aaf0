-- Organisations and their members: the billing owners.
--
-- Every credit belongs to an org. Each user gets a personal org (they are its owner) the moment
-- their auth.users row is created, so a single-user app never has to think about orgs: RPCs
-- default to the caller's personal org.

create table public.orgs (
  id uuid primary key default gen_random_uuid(),
  name text not null check (char_length(name) between 1 and 200),
  -- Set only on a personal org: the user it was created for (one personal org per user).
  personal_user_id uuid unique references auth.users (id) on delete set null,
  -- Replicated gate flag (publication plugin_read): true exactly when the org's spendable
  -- balance is > 0. Maintained by the credit engine in the same transaction as the balance.
  has_usage_credits boolean not null default false,
  created_at timestamptz not null default now()
);

comment on table public.orgs is 'Billing owners. Every user has a personal org (personal_user_id).';
comment on column public.orgs.has_usage_credits is
  'Replica-safe gate: spendable balance > 0. Written only when it flips; read by plugin endpoints on the read replica.';

create table public.org_members (
  org_id uuid not null references public.orgs (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null check (role in ('owner', 'admin', 'member')),
  created_at timestamptz not null default now(),
  primary key (org_id, user_id)
);

-- Membership lookups go by user (RLS, personal-org resolution).
create index org_members_user_id_idx on public.org_members (user_id);

comment on table public.org_members is 'Who belongs to which org, and with what role.';

-- RLS helpers ---------------------------------------------------------------------------------

-- The orgs the calling user belongs to. Policies call it as `(select private.readable_org_ids())`
-- so it is evaluated once per statement, not once per row (the cast
-- keeps the scalar subquery an array expression for `= any`). SECURITY DEFINER because it reads
-- org_members, whose own policy calls this function (no recursion through RLS).
create function private.readable_org_ids()
returns uuid[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(m.org_id), '{}')
  from public.org_members m
  where m.user_id = (select auth.uid())
$$;

revoke all on function private.readable_org_ids() from public;
grant execute on function private.readable_org_ids() to authenticated;
comment on function private.readable_org_ids() is
  'RLS helper: org ids the caller (auth.uid()) is a member of. Called by authenticated through policies only.';

-- Personal org on sign-up ---------------------------------------------------------------------

-- Runs as the table owner because GoTrue (supabase_auth_admin) inserts auth.users rows and has
-- no rights on public tables.
create function private.create_personal_org()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid;
begin
  insert into public.orgs (name, personal_user_id)
  values (
    left(coalesce(nullif(new.raw_user_meta_data ->> 'full_name', ''), nullif(split_part(new.email, '@', 1), ''), 'Personal'), 200),
    new.id
  )
  returning id into v_org_id;

  insert into public.org_members (org_id, user_id, role)
  values (v_org_id, new.id, 'owner');

  return new;
end
$$;

revoke all on function private.create_personal_org() from public;
comment on function private.create_personal_org() is
  'Trigger on auth.users: gives every new user a personal org they own. Not callable by any API role.';

create trigger create_personal_org
after insert on auth.users
for each row execute function private.create_personal_org();

-- RLS -------------------------------------------------------------------------------------------

alter table public.orgs enable row level security;
alter table public.org_members enable row level security;

revoke all on public.orgs, public.org_members from anon, authenticated;
grant select on public.orgs, public.org_members to authenticated;

create policy orgs_select_members on public.orgs
for select to authenticated
using (id = any ((select private.readable_org_ids())::uuid[]));

create policy org_members_select_members on public.org_members
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

-- RPC -------------------------------------------------------------------------------------------

-- The caller's orgs with their role, personal org first. SECURITY INVOKER: RLS does the scoping.
create function public.list_my_orgs()
returns table (org_id uuid, name text, role text, is_personal boolean, has_usage_credits boolean)
language sql
stable
security invoker
set search_path = ''
as $$
  select o.id, o.name, m.role, coalesce(o.personal_user_id = m.user_id, false), o.has_usage_credits
  from public.org_members m
  join public.orgs o on o.id = m.org_id
  where m.user_id = (select auth.uid())
  order by coalesce(o.personal_user_id = m.user_id, false) desc, o.created_at, o.id
$$;

revoke all on function public.list_my_orgs() from public;
grant execute on function public.list_my_orgs() to authenticated;
comment on function public.list_my_orgs() is
  'The calling user''s orgs with their role; personal org first. Callable by authenticated.';
