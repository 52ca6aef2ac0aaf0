-- Orgs and memberships: personal org on sign-up, RLS for every role.
begin;
\ir helpers/setup.psql
select plan(20);

select tests.create_user('alice@example.test') as alice \gset
select tests.create_user('bob@example.test') as bob \gset
select tests.personal_org(:'alice') as alice_org \gset
select tests.personal_org(:'bob') as bob_org \gset

-- Personal org on sign-up
select isnt(:'alice_org'::uuid, null, 'a new user gets a personal org');
select is((select role from public.org_members where org_id = :'alice_org' and user_id = :'alice'), 'owner', 'the user owns their personal org');
select is((select count(*)::int from public.org_members where org_id = :'alice_org'), 1, 'the personal org has exactly one member');
select is((select has_usage_credits from public.orgs where id = :'alice_org'), false, 'a new org has no usage credits');
select throws_ok(
  format('insert into public.orgs (name, personal_user_id) values (%L, %L)', 'second', :'alice'),
  '23505', null, 'a user has at most one personal org'
);

-- Member
select tests.authenticate_as(:'alice');
select results_eq('select id from public.orgs', array[:'alice_org'::uuid], 'a member sees only their orgs');
select results_eq('select org_id from public.org_members', array[:'alice_org'::uuid], 'a member sees only their orgs'' memberships');
select is_empty(format('select 1 from public.orgs where id = %L', :'bob_org'), 'a non-member cannot see another org');
select throws_ok(format('insert into public.orgs (name) values (%L)', 'mine'), '42501', null, 'a user cannot create orgs directly');
select throws_ok(format('update public.orgs set has_usage_credits = true where id = %L', :'alice_org'), '42501', null, 'a user cannot set the credits flag');
select throws_ok(format('delete from public.org_members where org_id = %L', :'alice_org'), '42501', null, 'a user cannot edit memberships');
select throws_ok(
  format('insert into public.org_members (org_id, user_id, role) values (%L, %L, %L)', :'bob_org', :'alice', 'owner'),
  '42501', null, 'a user cannot join another org'
);
select results_eq(
  'select org_id, role, is_personal from public.list_my_orgs()',
  format('values (%L::uuid, %L, true)', :'alice_org', 'owner'),
  'list_my_orgs returns the caller''s personal org'
);
select tests.clear_authentication();

-- Shared org: membership makes it visible, personal org stays first
insert into public.orgs (id, name) values ('00000000-0000-4000-8000-0000000000aa', 'Shared');
insert into public.org_members (org_id, user_id, role) values ('00000000-0000-4000-8000-0000000000aa', :'bob', 'owner'), ('00000000-0000-4000-8000-0000000000aa', :'alice', 'member');
select tests.authenticate_as(:'alice');
select results_eq(
  'select org_id, role, is_personal from public.list_my_orgs()',
  format('values (%L::uuid, %L, true), (%L::uuid, %L, false)', :'alice_org', 'owner', '00000000-0000-4000-8000-0000000000aa', 'member'),
  'list_my_orgs lists shared orgs after the personal org'
);
select is((select count(*)::int from public.org_members where org_id = '00000000-0000-4000-8000-0000000000aa'), 2, 'members see their co-members');
select tests.clear_authentication();

-- Anon
select tests.authenticate_as_anon();
select throws_ok('select * from public.orgs', '42501', null, 'anon cannot read orgs');
select throws_ok('select * from public.org_members', '42501', null, 'anon cannot read memberships');
select throws_ok('select * from public.list_my_orgs()', '42501', null, 'anon cannot call list_my_orgs');
select tests.clear_authentication();

-- Service role
select tests.authenticate_as_service_role();
select ok((select count(*) from public.orgs where id in (:'alice_org', :'bob_org')) = 2, 'service_role sees every org');
select throws_ok('select * from public.list_my_orgs()', '42501', null, 'service_role has no user RPC to call');
select tests.clear_authentication();

select * from finish();
rollback;
