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
