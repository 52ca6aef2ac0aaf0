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

-- Usage page demo data ---------------------------------------------------------------------------
-- Prices of the demo operations, a second member and a team org, grants with different expiries
-- (one expiring soon, one expired, one pending purchase, one scheduled), and 30 days of calls over several
-- operations made through the RPCs (so the ledger, the grants and the rollup stay exact), then
-- dated back across the 30 days. Every step is idempotent: request ids and payment references
-- are fixed, so a second run replays instead of charging again.

insert into public.credit_prices (operation, credits, description) values
  ('search', 1, 'Full-text search'),
  ('embed', 2, 'Embedding of one document'),
  ('chat.completion', 5, 'One chat completion'),
  ('ocr', 3, 'Text from one image'),
  ('translate', 2, 'Translation of one document')
on conflict (operation) do nothing;

insert into auth.users (instance_id, id, aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
values ('00000000-0000-0000-0000-000000000000', '5eed0000-0000-4000-8000-000000000002', 'authenticated', 'authenticated',
        'member@tollgate.local', now(), '{"provider": "email", "providers": ["email"]}', '{"full_name": "Demo member"}')
on conflict (id) do nothing;

insert into public.orgs (id, name) values ('5eed0000-0000-4000-8000-00000000000a', 'Demo Team') on conflict (id) do nothing;
insert into public.org_members (org_id, user_id, role) values
  ('5eed0000-0000-4000-8000-00000000000a', '5eed0000-0000-4000-8000-000000000001', 'owner'),
  ('5eed0000-0000-4000-8000-00000000000a', '5eed0000-0000-4000-8000-000000000002', 'member')
on conflict do nothing;

-- Grants: a paid purchase (a year), a promotion that expires in 6 days and burns after the
-- purchase (priority 150), a purchase still waiting for its payment, the team's purchase, and a
-- promotion that starts in 30 days.
select public.grant_credits(o.id, 20000, 'purchase', 'cs_test_demo_paid', now() + interval '300 days')
from public.orgs o where o.personal_user_id = '5eed0000-0000-4000-8000-000000000001';
select public.grant_credits(o.id, 600, 'promotion', 'demo-spring', now() + interval '6 days', '{}', 150)
from public.orgs o where o.personal_user_id = '5eed0000-0000-4000-8000-000000000001';
select public.grant_credits(o.id, 5000, 'purchase', 'cs_test_demo_pending', null, '{}', 100, true)
from public.orgs o where o.personal_user_id = '5eed0000-0000-4000-8000-000000000001';
select public.grant_credits('5eed0000-0000-4000-8000-00000000000a', 3000, 'purchase', 'cs_test_demo_team', now() + interval '200 days');
-- Next month's allowance, scheduled: not in the balance until it starts. Seeded once (a replay
-- with another start would be an idempotency conflict).
select public.grant_credits(o.id, 2000, 'promotion', 'demo-next-month', p_effective_at => now() + interval '30 days')
from public.orgs o
where o.personal_user_id = '5eed0000-0000-4000-8000-000000000001'
  and not exists (select 1 from public.credit_grants g where g.org_id = o.id and g.source = 'promotion' and g.external_ref = 'demo-next-month');

-- 30 days of calls, in one transaction (the rollup job never sees them undated). Chat
-- completions go through holds (captured with their latency, 1 in 6 released as a backend
-- failure); 1 in 40 OCR calls is refunded; two holds are still open.
do $$
declare
  v_demo constant uuid := '5eed0000-0000-4000-8000-000000000001';
  v_org uuid;
  v_ops constant text[] := array['search', 'embed', 'chat.completion', 'ocr', 'translate'];
  v_base constant int[] := array[30, 14, 8, 4, 6];
  v_team boolean;
  v_day int;
  v_op int;
  v_n int;
  v_i int;
  v_id text;
  v_at timestamptz;
begin
  perform set_config('request.jwt.claims', json_build_object('sub', v_demo, 'role', 'authenticated')::text, true);
  foreach v_team in array array[false, true] loop
    v_org := case when v_team then '5eed0000-0000-4000-8000-00000000000a'::uuid
                  else (select o.id from public.orgs o where o.personal_user_id = v_demo) end;
    for v_day in 0..29 loop
      for v_op in 1..5 loop
        -- Busier lately and on weekdays, with a little deterministic noise.
        v_n := greatest(0, round(v_base[v_op] * (case when v_team then 0.15 else 1 end)
                 * (1 + (29 - v_day) / 45.0)
                 * (case when extract(isodow from now() - make_interval(days => v_day)) >= 6 then 0.45 else 1 end)
                 * (0.75 + (abs(hashtext(v_ops[v_op] || v_day)) % 50) / 100.0))::int);
        for v_i in 1..v_n loop
          v_id := format('demo-%s-%s-%s-%s', case when v_team then 'team' else 'own' end, v_ops[v_op], v_day, v_i);
          v_at := now() - make_interval(days => v_day) - make_interval(secs => (v_i - 0.5) * 86000.0 / v_n);
          if v_ops[v_op] = 'chat.completion' then
            perform public.reserve_credits(v_org, v_demo, 'chat.completion', v_id, 1, 86400);
            if v_day = 0 and v_i <= 2 and not v_team then
              null; -- still open
            elsif (abs(hashtext(v_id)) % 6) = 0 then
              perform public.release_credits(v_org, v_id, true,
                jsonb_build_object('latency_ms', 2000 + abs(hashtext(v_id)) % 900, 'error_code', 'upstream_503'));
            else
              perform public.capture_credits(v_org, v_id, null, jsonb_build_object('latency_ms', 280 + abs(hashtext(v_id)) % 700));
            end if;
          else
            perform public.consume_credits(v_ops[v_op], v_id, 1, v_org);
            if v_ops[v_op] = 'ocr' and (abs(hashtext(v_id)) % 40) = 0 then
              perform public.refund_credits(v_org, v_id, 'OCR backend returned an empty page');
            end if;
          end if;
          update public.credit_requests set created_at = v_at
          where org_id = v_org and request_id = v_id and created_at is distinct from v_at;
        end loop;
      end loop;
    end loop;
  end loop;
end
$$;

-- An onboarding grant that has expired: granted, then dated past its expiry and expired.
select public.grant_onboarding_credits('5eed0000-0000-4000-8000-000000000001', 300, now() + interval '1 day');
update public.credit_grants set expires_at = now() - interval '12 days'
where source = 'onboarding' and external_ref = '5eed0000-0000-4000-8000-000000000001' and status = 'active';
select public.expire_credit_grants(100);
