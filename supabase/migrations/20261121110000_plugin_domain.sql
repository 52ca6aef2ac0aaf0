-- Plugin domain: over-the-air updates for apps owned by orgs, read by devices through the
-- /updates, /stats and /channel_self edge functions.
--
-- Devices never touch these tables: the edge functions read the replicated tables on the read
-- replica and write (device events, channel overrides) on the primary with the service
-- connection. Members of an org manage its apps through the API (RLS below).
-- Published columns use built-in types only (the replica has none of our types).

create table public.apps (
  -- Reverse-domain identifier the plugin sends, e.g. com.example.app
  app_id text primary key check (app_id ~ '^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$' and char_length(app_id) <= 128),
  org_id uuid not null references public.orgs (id),
  name text not null check (char_length(name) between 1 and 200),
  created_at timestamptz not null default now(),
  unique (app_id, org_id)
);

create index apps_org_idx on public.apps (org_id);

create table public.app_versions (
  id bigint generated always as identity primary key,
  app_id text not null,
  org_id uuid not null,
  -- Semantic version of the bundle, e.g. 1.4.2 or 2.0.0-beta.1
  name text not null check (name ~ '^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$' and char_length(name) <= 64),
  bundle_url text not null check (bundle_url ~ '^https?://' and char_length(bundle_url) <= 1000),
  checksum text not null check (checksum ~ '^[0-9a-f]{64}$'),
  created_at timestamptz not null default now(),
  unique (app_id, name),
  unique (id, app_id),
  foreign key (app_id, org_id) references public.apps (app_id, org_id) on delete cascade
);

create index app_versions_org_idx on public.app_versions (org_id);

create table public.channels (
  id bigint generated always as identity primary key,
  app_id text not null,
  org_id uuid not null,
  name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
  version_id bigint,
  is_default boolean not null default false,
  allow_device_self_set boolean not null default false,
  created_at timestamptz not null default now(),
  unique (app_id, name),
  unique (id, app_id),
  foreign key (app_id, org_id) references public.apps (app_id, org_id) on delete cascade,
  -- A channel points at a version of its own app.
  foreign key (version_id, app_id) references public.app_versions (id, app_id)
);

create unique index channels_one_default_per_app on public.channels (app_id) where is_default;
create index channels_org_idx on public.channels (org_id);
create index channels_version_idx on public.channels (version_id, app_id);

-- A device's channel override (set by the device via /channel_self, or by a member).
create table public.channel_devices (
  app_id text not null,
  device_id text not null check (char_length(device_id) between 1 and 128),
  org_id uuid not null,
  channel_id bigint not null,
  updated_at timestamptz not null default now(),
  primary key (app_id, device_id),
  foreign key (app_id, org_id) references public.apps (app_id, org_id) on delete cascade,
  -- An override names a channel of the same app.
  foreign key (channel_id, app_id) references public.channels (id, app_id) on delete cascade
);

create index channel_devices_channel_idx on public.channel_devices (channel_id, app_id);
create index channel_devices_org_idx on public.channel_devices (org_id);

-- Device events from /stats: written on the primary only (not replicated), after the gate.
create table public.device_events (
  id bigint generated always as identity primary key,
  app_id text not null references public.apps (app_id) on delete cascade,
  device_id text not null,
  action text not null check (action ~ '^[a-z][a-z0-9_]{0,63}$'),
  version_name text not null,
  version_build text not null,
  platform text not null check (platform in ('android', 'ios', 'electron')),
  plugin_version text not null,
  is_emulator boolean not null,
  is_prod boolean not null,
  created_at timestamptz not null default now()
);

create index device_events_app_created_idx on public.device_events (app_id, created_at);

-- Row-level security: members read and manage their orgs' apps; devices have no API access.
alter table public.apps enable row level security;
alter table public.app_versions enable row level security;
alter table public.channels enable row level security;
alter table public.channel_devices enable row level security;
alter table public.device_events enable row level security;

revoke all on public.apps, public.app_versions, public.channels, public.channel_devices, public.device_events from anon, authenticated;
grant select, insert, update, delete on public.apps, public.app_versions, public.channels, public.channel_devices to authenticated;
grant select on public.device_events to authenticated;

create policy apps_members on public.apps
for all to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]))
with check (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy app_versions_members on public.app_versions
for all to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]))
with check (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy channels_members on public.channels
for all to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]))
with check (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy channel_devices_members on public.channel_devices
for all to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]))
with check (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy device_events_members_read on public.device_events
for select to authenticated
using (app_id in (select a.app_id from public.apps a));

-- The replica data contract grows by exactly what the plugin read path needs.
alter publication plugin_read add table
  public.apps (app_id, org_id),
  public.app_versions (id, app_id, name, bundle_url, checksum),
  public.channels (id, app_id, name, version_id, is_default, allow_device_self_set),
  public.channel_devices (app_id, device_id, channel_id);
