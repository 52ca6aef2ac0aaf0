-- Channel overrides record who set them (owners pin through pin_device_channel only), and the
-- replicated heartbeat the plugin endpoints measure staleness with.
begin;
\ir helpers/setup.psql
select plan(33);

select tests.create_user('pin-owner@example.test') as owner \gset
select tests.create_user('pin-admin@example.test') as admin \gset
select tests.create_user('pin-member@example.test') as member \gset
select tests.create_user('pin-stranger@example.test') as stranger \gset
select tests.personal_org(:'owner') as org \gset
insert into public.org_members (org_id, user_id, role) values (:'org', :'admin', 'admin'), (:'org', :'member', 'member');

insert into public.apps (app_id, org_id, name) values ('com.pin.app', :'org', 'pins');
insert into public.app_versions (app_id, org_id, name, bundle_url, checksum)
values ('com.pin.app', :'org', '1.0.0', 'https://x/1.zip', repeat('a', 64)), ('com.pin.app', :'org', '1.1.0', 'https://x/2.zip', repeat('b', 64));
insert into public.channels (app_id, org_id, name, version_id, is_default, allow_device_self_set)
select 'com.pin.app', :'org', c.name, v.id, c.is_default, c.self_set
from (values ('production', '1.1.0', true, false), ('beta', '1.0.0', false, true)) c (name, version, is_default, self_set)
join public.app_versions v on v.app_id = 'com.pin.app' and v.name = c.version;

-- set_by: who set the override ----------------------------------------------------------------

select col_not_null('public', 'channel_devices', 'set_by', 'channel_devices.set_by is required');
select col_hasnt_default('public', 'channel_devices', 'set_by', 'set_by has no default: every writer says who it is');
select throws_ok(
  $$insert into public.channel_devices (app_id, device_id, org_id, channel_id, set_by)
    select app_id, 'd0', org_id, id, 'robot' from public.channels where app_id = 'com.pin.app' and name = 'beta'$$,
  '23514', null, 'set_by is device or owner'
);

-- pin_device_channel: owners and admins --------------------------------------------------------

select tests.authenticate_as(:'owner');
select is(
  public.pin_device_channel('com.pin.app', 'd1', 'production'),
  '{"app_id": "com.pin.app", "device_id": "d1", "channel": "production", "set_by": "owner"}'::jsonb,
  'an owner pins a device to a channel devices may not pick'
);
select results_eq(
  $$select c.name, d.set_by from public.channel_devices d join public.channels c on c.id = d.channel_id where d.device_id = 'd1'$$,
  $$values ('production'::text, 'owner'::text)$$,
  'the pin is recorded as the owner''s, and members read it'
);
select throws_ok(
  $$insert into public.channel_devices (app_id, device_id, org_id, channel_id, set_by)
    select app_id, 'd9', org_id, id, 'device' from public.channels where app_id = 'com.pin.app' and name = 'beta'$$,
  '42501', null, 'members cannot write overrides directly (set_by cannot be forged)'
);
select throws_ok($$update public.channel_devices set set_by = 'device' where device_id = 'd1'$$, '42501', null, 'nor update them');
select throws_ok($$delete from public.channel_devices where device_id = 'd1'$$, '42501', null, 'nor delete them');
select throws_ok($$select public.pin_device_channel('com.pin.app', 'd1', 'nightly')$$, 'PT404', 'unknown_channel', 'unknown channel');
select throws_ok($$select public.pin_device_channel('com.pin.app', 'bad id', 'beta')$$, '22023', 'invalid_device_id', 'a device id the plugin could not send');
select throws_ok($$select public.pin_device_channel('com.pin.app', repeat('d', 129), 'beta')$$, '22023', 'invalid_device_id', 'a device id over 128 characters');
select throws_ok($$select public.pin_device_channel('com.pin.app', null, 'beta')$$, '22023', 'invalid_device_id', 'no device id');
select throws_ok($$select public.pin_device_channel('com.nobody.app', 'd1', 'beta')$$, 'PT404', 'unknown_app', 'an app that does not exist');
select tests.clear_authentication();

-- A device-chosen override (as /channel_self writes it) is replaced by an owner's pin.
insert into public.channel_devices (app_id, device_id, org_id, channel_id, set_by)
select app_id, 'd2', org_id, id, 'device' from public.channels where app_id = 'com.pin.app' and name = 'beta';
select tests.authenticate_as(:'admin');
select lives_ok($$select public.pin_device_channel('com.pin.app', 'd2', 'production')$$, 'an admin pins too');
select tests.clear_authentication();
select results_eq(
  $$select c.name, d.set_by from public.channel_devices d join public.channels c on c.id = d.channel_id where d.device_id = 'd2'$$,
  $$values ('production'::text, 'owner'::text)$$,
  'the pin replaced the device''s own choice'
);

select tests.authenticate_as(:'member');
select throws_ok($$select public.pin_device_channel('com.pin.app', 'd3', 'beta')$$, '42501', 'forbidden', 'a plain member may not pin');
select tests.clear_authentication();

select tests.authenticate_as(:'stranger');
select throws_ok($$select public.pin_device_channel('com.pin.app', 'd1', 'beta')$$, 'PT404', 'unknown_app', 'a stranger: unknown_app (the app''s existence is not revealed)');
select is_empty($$select 1 from public.channel_devices where app_id = 'com.pin.app'$$, 'a stranger sees no overrides');
select tests.clear_authentication();

select tests.authenticate_as_anon();
select throws_ok($$select public.pin_device_channel('com.pin.app', 'd1', 'beta')$$, '42501', null, 'anon cannot pin');
select tests.clear_authentication();

select tests.authenticate_as(:'owner');
select is(
  public.pin_device_channel('com.pin.app', 'd1', null),
  '{"app_id": "com.pin.app", "device_id": "d1", "channel": null, "removed": true}'::jsonb,
  'p_channel null removes the override'
);
select is(public.pin_device_channel('com.pin.app', 'd1', null) ->> 'removed', 'false', 'removing again removes nothing');
select tests.clear_authentication();
select is_empty($$select 1 from public.channel_devices where device_id = 'd1'$$, 'd1 has no override left');

-- replica_heartbeat ---------------------------------------------------------------------------

select ok((select relrowsecurity from pg_class where oid = 'public.replica_heartbeat'::regclass), 'RLS is on');
select ok(
  not has_table_privilege('anon', 'public.replica_heartbeat', 'select, insert, update, delete, truncate')
  and not has_table_privilege('authenticated', 'public.replica_heartbeat', 'select, insert, update, delete, truncate'),
  'anon and authenticated have no privilege on the heartbeat'
);
select tests.authenticate_as(:'owner');
select throws_ok('select * from public.replica_heartbeat', '42501', null, 'a user cannot read it');
select tests.clear_authentication();
select tests.authenticate_as_anon();
select throws_ok('update public.replica_heartbeat set beat_at = now()', '42501', null, 'anon cannot stamp it');
select tests.clear_authentication();

select is((select count(*)::int from public.replica_heartbeat), 1, 'one row');
select throws_ok($$insert into public.replica_heartbeat (id, beat_at) values (false, now())$$, '23514', null, 'and only one');
select is(
  (select array_to_string(attnames, ',') from pg_publication_tables where pubname = 'plugin_read' and schemaname = 'public' and tablename = 'replica_heartbeat'),
  'id,beat_at',
  'published through plugin_read'
);
select is_empty(
  $$select pt.tablename, a.attname from pg_publication_tables pt
    join pg_attribute a on a.attrelid = format('%I.%I', pt.schemaname, pt.tablename)::regclass and a.attname = any (pt.attnames)
    where pt.pubname = 'plugin_read' and a.atttypid >= 16384$$,
  'every published column has a built-in type (the replica has none of ours)'
);

update public.replica_heartbeat set beat_at = now() - interval '1 hour';
select private.beat_replica_heartbeat();
select ok((select beat_at > now() - interval '1 minute' from public.replica_heartbeat), 'a beat stamps the primary''s clock');

select results_eq(
  $$select schedule, active from cron.job where jobname = 'tollgate-replica-heartbeat'$$,
  $$values ('* * * * *'::text, true)$$,
  'the heartbeat job runs every minute'
);
select ok(
  (select command ~ 'private\.beat_replica_heartbeat\(\)' and command ~ 'commit' and command ~ 'pg_sleep\(2\)' from cron.job where jobname = 'tollgate-replica-heartbeat'),
  'and beats every 2 seconds within its minute, one transaction per beat'
);

select * from finish();
rollback;
