-- Demo data for the local stack (applied once by `supabase db push --include-seed`).
-- The demo user gets a personal org from the auth.users trigger, like any signed-up user.
insert into auth.users (instance_id, id, aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
values (
  '00000000-0000-0000-0000-000000000000',
  '5eed0000-0000-4000-8000-000000000001',
  'authenticated',
  'authenticated',
  'demo@tollgate.local',
  now(),
  '{"provider": "email", "providers": ["email"]}',
  '{"full_name": "Demo"}'
)
on conflict (id) do nothing;

-- A demo app in the demo user's personal org, with one version on its default channel and a
-- beta channel devices may pick themselves (see README "Plugin endpoints").
insert into public.apps (app_id, org_id, name)
select 'com.tollgate.demo', o.id, 'Demo app' from public.orgs o where o.personal_user_id = '5eed0000-0000-4000-8000-000000000001'
on conflict do nothing;

insert into public.app_versions (app_id, org_id, name, bundle_url, checksum)
select a.app_id, a.org_id, v.name, 'https://example.com/bundles/com.tollgate.demo/' || v.name || '.zip', encode(sha256(convert_to(v.name, 'UTF8')), 'hex')
from public.apps a, (values ('1.0.0'), ('1.1.0-beta.1')) v (name)
where a.app_id = 'com.tollgate.demo'
on conflict do nothing;

insert into public.channels (app_id, org_id, name, version_id, is_default, allow_device_self_set)
select a.app_id, a.org_id, c.name, v.id, c.is_default, c.self_set
from public.apps a
join (values ('production', '1.0.0', true, false), ('beta', '1.1.0-beta.1', false, true)) c (name, version, is_default, self_set) on true
join public.app_versions v on v.app_id = a.app_id and v.name = c.version
where a.app_id = 'com.tollgate.demo'
on conflict do nothing;

-- Demo credits, so the demo app's devices get updates out of the box.
select public.grant_credits(o.id, 1000, 'promotion', 'demo-seed')
from public.orgs o where o.personal_user_id = '5eed0000-0000-4000-8000-000000000001';

-- Local development only: webhooks and meter backends may be http://127.0.0.1:<port> (local
-- receivers). Production never runs this seed; the edge functions need the matching
-- TOLLGATE_OUTBOUND_ALLOW_LOCAL_HTTP=true (README "Outbound requests").
update private.outbound_settings set allow_local_http = true, updated_at = now() where not allow_local_http;
