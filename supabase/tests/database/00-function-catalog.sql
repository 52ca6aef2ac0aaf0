-- The function catalog: who may call what. This file is the one list of every function in
-- `public` and `private`, whether it is SECURITY DEFINER, and which API roles may EXECUTE it.
-- A new function that is not listed here, or a grant that drifts, fails this test.
begin;
\ir helpers/setup.psql
select plan(3);

create temporary table expected_functions (signature text primary key, security_definer boolean, callers text[]) on commit drop;
insert into expected_functions values
  -- signature                                     definer  roles with EXECUTE (anon, authenticated, service_role, public)
  ('private.create_personal_org()',                true,    '{}'),
  ('private.readable_org_ids()',                   true,    '{authenticated}'),
  ('public.list_my_orgs()',                        false,   '{authenticated}');

create temporary view actual_functions as
select
  format('%s.%s(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as signature,
  p.prosecdef as security_definer,
  array(
    select r from unnest(array['anon', 'authenticated', 'service_role']) r
    where has_function_privilege(r, p.oid, 'execute')
      -- PUBLIC's grant reaches every role: report it once, as 'public'
      and not coalesce(p.proacl is null or exists (select from aclexplode(p.proacl) a where a.grantee = 0 and a.privilege_type = 'EXECUTE'), false)
    union all
    select 'public' where p.proacl is null or exists (select from aclexplode(p.proacl) a where a.grantee = 0 and a.privilege_type = 'EXECUTE')
    order by 1
  ) as callers,
  p.proconfig
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'private')
  and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

select set_eq(
  'select signature from actual_functions',
  'select signature from expected_functions',
  'every function in public and private is listed in the catalog (and nothing listed is missing)'
);

select set_eq(
  $$select format('%s definer=%s callers=%s', a.signature, a.security_definer, a.callers) from actual_functions a join expected_functions e using (signature)$$,
  $$select format('%s definer=%s callers=%s', signature, security_definer, callers) from expected_functions$$,
  'SECURITY DEFINER and EXECUTE grants match the catalog'
);

select is_empty(
  $$select signature from actual_functions where proconfig is null or not ('search_path=""' = any (proconfig))$$,
  'every function sets search_path = '''''
);

select * from finish();
rollback;
