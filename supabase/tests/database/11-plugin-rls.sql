-- Plugin domain: owners and admins manage their orgs' apps, plain members read them; nobody else
-- sees or touches them; the
-- composite keys keep versions, channels and overrides inside one app.
begin;
\ir helpers/setup.psql
select plan(20);

select tests.create_user('owner@example.test') as owner \gset
select tests.create_user('stranger@example.test') as stranger \gset
select tests.create_user('member@example.test') as member \gset
select tests.personal_org(:'owner') as owner_org \gset
select tests.personal_org(:'stranger') as stranger_org \gset

-- Owner: manages the app of their org through the API
select tests.authenticate_as(:'owner');
select lives_ok(
  format($$insert into public.apps (app_id, org_id, name) values ('com.owner.app', %L, 'mine')$$, :'owner_org'),
  'an owner creates an app in their org'
);
select lives_ok(
  format($$insert into public.app_versions (app_id, org_id, name, bundle_url, checksum) values ('com.owner.app', %L, '1.0.0', 'https://x/1.zip', %L)$$, :'owner_org', repeat('a', 64)),
  'an owner adds a version'
);
select lives_ok(
  format($$insert into public.channels (app_id, org_id, name, version_id, is_default) select 'com.owner.app', %L, 'production', id, true from public.app_versions where app_id = 'com.owner.app'$$, :'owner_org'),
  'an owner adds a default channel'
);
select throws_ok(
  format($$insert into public.apps (app_id, org_id, name) values ('com.stolen.app', %L, 'theirs')$$, :'stranger_org'),
  '42501', null, 'an owner cannot create an app in an org they do not belong to'
);
select throws_ok(
  format($$insert into public.channels (app_id, org_id, name, is_default) values ('com.owner.app', %L, 'second', true)$$, :'owner_org'),
  '23505', null, 'an app has at most one default channel'
);
select throws_ok(
  $$insert into public.device_events (app_id, device_id, action, version_name, version_build, platform, plugin_version, is_emulator, is_prod)
    values ('com.owner.app', 'd', 'app_ready', '1', '1', 'ios', '1', false, true)$$,
  '42501', null, 'members cannot forge device events'
);
select tests.clear_authentication();

-- Plain member: reads the app, changes nothing (the bundle URL is what every device downloads)
insert into public.org_members (org_id, user_id, role) values (:'owner_org', :'member', 'member');
select tests.authenticate_as(:'member');
select results_eq($$select name from public.channels where app_id = 'com.owner.app'$$, array['production'], 'a plain member reads the org''s channels');
select results_eq($$with u as (update public.app_versions set bundle_url = 'https://evil/x.zip' where app_id = 'com.owner.app' returning 1) select count(*)::int from u$$,
  array[0], 'a plain member cannot change a version''s bundle URL');
select results_eq($$with d as (delete from public.channels where app_id = 'com.owner.app' returning 1) select count(*)::int from d$$,
  array[0], 'a plain member cannot delete a channel');
select throws_ok(format($$insert into public.apps (app_id, org_id, name) values ('com.member.app', %L, 'x')$$, :'owner_org'), '42501', null,
  'a plain member cannot create an app');
select tests.clear_authentication();
update public.org_members set role = 'admin' where org_id = :'owner_org' and user_id = :'member';
select tests.authenticate_as(:'member');
select results_eq($$with u as (update public.channels set allow_device_self_set = true where app_id = 'com.owner.app' returning 1) select count(*)::int from u$$,
  array[1], 'an admin changes a channel');
select tests.clear_authentication();
select is((select bundle_url from public.app_versions where app_id = 'com.owner.app'), 'https://x/1.zip', 'the bundle URL is unchanged');

-- Non-member and anon
select tests.authenticate_as(:'stranger');
select is_empty($$select 1 from public.apps where app_id = 'com.owner.app'$$, 'a non-member cannot see the app');
select is_empty($$select 1 from public.channels where app_id = 'com.owner.app'$$, 'a non-member cannot see its channels');
select results_eq($$with d as (delete from public.apps where app_id = 'com.owner.app' returning 1) select count(*)::int from d$$, array[0], 'a non-member cannot delete the app');
select tests.clear_authentication();

select tests.authenticate_as_anon();
select throws_ok('select * from public.apps', '42501', null, 'anon cannot read apps');
select throws_ok('select * from public.channel_devices', '42501', null, 'anon cannot read device overrides');
select tests.clear_authentication();

-- Integrity: a channel cannot point at another app's version; an override names a channel of its app
insert into public.apps (app_id, org_id, name) values ('com.other.app', :'owner_org', 'other');
select throws_ok(
  format($$insert into public.channels (app_id, org_id, name, version_id) select 'com.other.app', %L, 'x', id from public.app_versions where app_id = 'com.owner.app'$$, :'owner_org'),
  '23503', null, 'a channel cannot use a version of another app'
);
select throws_ok(
  format($$insert into public.channel_devices (app_id, device_id, org_id, channel_id, set_by) select 'com.other.app', 'd1', %L, id, 'owner' from public.channels where app_id = 'com.owner.app'$$, :'owner_org'),
  '23503', null, 'a device override cannot name a channel of another app'
);

select set_eq(
  $$select tablename::text from pg_publication_tables where pubname = 'plugin_read'$$,
  array['orgs', 'apps', 'app_versions', 'channels', 'channel_devices', 'replica_heartbeat'],
  'publication plugin_read holds exactly the tables of the replica data contract'
);

select * from finish();
rollback;
