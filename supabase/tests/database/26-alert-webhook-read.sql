-- Reading the alert webhook: owners and admins see the URL their org's low-balance alerts go to
-- (get_alert_webhook), never the signing secret; members and strangers see nothing.
begin;
\ir helpers/setup.psql
select plan(9);

select tests.create_user('owner@example.test') as owner \gset
select tests.create_user('admin@example.test') as admin \gset
select tests.create_user('member@example.test') as member \gset
select tests.create_user('stranger@example.test') as stranger \gset
select tests.personal_org(:'owner') as org \gset
insert into public.org_members (org_id, user_id, role) values (:'org', :'admin', 'admin'), (:'org', :'member', 'member');

select tests.authenticate_as(:'owner');
select is(public.get_alert_webhook() - 'updated_at', jsonb_build_object('org_id', :'org'::uuid, 'url', null),
  'no webhook yet: url null (the caller''s personal org by default)');
select public.set_alert_webhook('https://example.com/hooks/credits', :'org') ->> 'secret' as secret \gset
select is(public.get_alert_webhook(:'org') ->> 'url', 'https://example.com/hooks/credits', 'the owner reads the URL');
select ok((public.get_alert_webhook(:'org') ->> 'updated_at') is not null, 'and when it was set');
select ok(not (public.get_alert_webhook(:'org') ? 'secret') and strpos(public.get_alert_webhook(:'org')::text, :'secret') = 0,
  'the signing secret is never in the answer');

select tests.authenticate_as(:'admin');
select is(public.get_alert_webhook(:'org') ->> 'url', 'https://example.com/hooks/credits', 'an admin reads the URL');
select tests.authenticate_as(:'member');
select throws_ok(format('select public.get_alert_webhook(%L)', :'org'), '42501', 'forbidden', 'a plain member cannot: forbidden');
select tests.authenticate_as(:'stranger');
select throws_ok(format('select public.get_alert_webhook(%L)', :'org'), '42501', 'not_a_member', 'a stranger cannot: not_a_member');
select tests.authenticate_as_anon();
select throws_ok(format('select public.get_alert_webhook(%L)', :'org'), '42501', null, 'anon cannot call it');
select tests.clear_authentication();
select is((select secret from public.org_alert_webhooks where org_id = :'org'), :'secret', 'setup: the secret stays where it was, for the dispatcher');

select * from finish();
rollback;
