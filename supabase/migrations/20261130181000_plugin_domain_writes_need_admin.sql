-- Apps, versions and channels: every member reads them, only owners and admins change them.
--
-- What a version's bundle URL says is what every device on its channel downloads, and deleting
-- a channel drops the owner's device pins with it. Pinning a device is for owners and admins
-- (pin_device_channel); writing the rows that decide what devices run must not be easier. Plain
-- members keep read access.

-- The orgs in which the caller is an owner or admin. Policies call it as
-- `(select private.manageable_org_ids())`, evaluated once per statement. SECURITY DEFINER, like
-- readable_org_ids, because it reads org_members, whose own policy calls readable_org_ids.
create function private.manageable_org_ids()
returns uuid[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(m.org_id), '{}')
  from public.org_members m
  where m.user_id = (select auth.uid()) and m.role in ('owner', 'admin')
$$;

revoke all on function private.manageable_org_ids() from public;
grant execute on function private.manageable_org_ids() to authenticated;
comment on function private.manageable_org_ids() is
  'RLS helper: org ids in which the caller (auth.uid()) is an owner or admin. Called by authenticated through policies only.';

drop policy apps_members on public.apps;
drop policy app_versions_members on public.app_versions;
drop policy channels_members on public.channels;

create policy apps_members_read on public.apps for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));
create policy apps_admins_insert on public.apps for insert to authenticated
with check (org_id = any ((select private.manageable_org_ids())::uuid[]));
create policy apps_admins_update on public.apps for update to authenticated
using (org_id = any ((select private.manageable_org_ids())::uuid[]))
with check (org_id = any ((select private.manageable_org_ids())::uuid[]));
create policy apps_admins_delete on public.apps for delete to authenticated
using (org_id = any ((select private.manageable_org_ids())::uuid[]));

create policy app_versions_members_read on public.app_versions for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));
create policy app_versions_admins_insert on public.app_versions for insert to authenticated
with check (org_id = any ((select private.manageable_org_ids())::uuid[]));
create policy app_versions_admins_update on public.app_versions for update to authenticated
using (org_id = any ((select private.manageable_org_ids())::uuid[]))
with check (org_id = any ((select private.manageable_org_ids())::uuid[]));
create policy app_versions_admins_delete on public.app_versions for delete to authenticated
using (org_id = any ((select private.manageable_org_ids())::uuid[]));

create policy channels_members_read on public.channels for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));
create policy channels_admins_insert on public.channels for insert to authenticated
with check (org_id = any ((select private.manageable_org_ids())::uuid[]));
create policy channels_admins_update on public.channels for update to authenticated
using (org_id = any ((select private.manageable_org_ids())::uuid[]))
with check (org_id = any ((select private.manageable_org_ids())::uuid[]));
create policy channels_admins_delete on public.channels for delete to authenticated
using (org_id = any ((select private.manageable_org_ids())::uuid[]));
