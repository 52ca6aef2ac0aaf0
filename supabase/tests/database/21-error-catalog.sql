-- The error catalog (private.error_catalog) against every function body: each key a function
-- raises is in the catalog, with the catalog's SQLSTATE (the four-argument private.fail and
-- `raise exception` included), each catalog row's HTTP status follows the one status rule, and
-- the two forms of private.fail resolve and raise as documented. The scan reads pg_proc.prosrc,
-- so it sees the current definition of every function, whichever migration made it.
begin;
\ir helpers/setup.psql
select plan(31);

-- The scan ---------------------------------------------------------------------------------

create temporary view function_bodies as
select format('%s.%s(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as fn, p.prosrc as body
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'private')
  and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

-- Functions that raise a key they are given rather than one of their own; their callers' keys
-- are read where they are passed (check_metadata's second argument, or its default).
create temporary table forwarders (fn text primary key) on commit drop;
insert into forwarders values
  ('private.fail(p_key text, p_errcode text, p_detail jsonb, p_hint text)'),
  ('private.fail(p_key text, p_detail jsonb, p_hint text)'),
  ('private.fail(p_key text, p_errcode text, p_detail text)'),
  ('private.check_metadata(p_metadata jsonb, p_key text)'),
  ('private.check_credits(p_value bigint, p_field text, p_key text, p_min bigint, p_hint text)'),
  -- an atomic batch re-raises the failing item's error (a catalog key from private.charge) naming the item
  ('public.consume_credits_batch(p_items jsonb, p_org_id uuid, p_atomic boolean)');

-- Every private.fail( call: its first argument (a literal key or a name) and, when the second
-- argument is a string literal not cast to another type, that literal. PostgreSQL resolves
-- such a call (untyped second argument) to the four-argument form, so the literal is the
-- SQLSTATE — `fail('k', '{}', 'hint')` included, which is how that mistake is caught.
create temporary view fail_calls as
select b.fn, m[1] as first_arg,
       case when m[3] is not null and coalesce(regexp_replace(lower(m[4]), '[\s:]', '', 'g'), 'text') in ('text', 'varchar')
            then btrim(m[3], '''') end as sqlstate
from function_bodies b,
     regexp_matches(b.body, $re$private\.fail\s*\(\s*('[^']*'|[a-z_][a-z0-9_]*)\s*(,\s*('[^']*')(\s*::\s*[a-z_]+)?)?$re$, 'gi') m;

-- The SQLSTATE check_metadata raises its key with (read from its own body).
create temporary view check_metadata_sqlstate as
select c.sqlstate from fail_calls c where c.fn = 'private.check_metadata(p_metadata jsonb, p_key text)' and c.first_arg = 'p_key';

-- Every raise statement, up to its semicolon: `raise` where a statement starts (not in a
-- comment or a hint's prose).
create temporary view raise_statements as
select b.fn, m[1] as stmt
from function_bodies b, regexp_matches(b.body, '(?:^|[\n;]|\mthen|\melse|\mbegin|\mloop)\s*raise\M([^;]*)', 'gi') m;

create temporary view raise_errors as
select r.fn, r.stmt,
       coalesce(substring(r.stmt from '(?i)^\s*(?:exception\s+)?''([^'']*)'''),
                substring(r.stmt from '(?i)\mmessage\s*=\s*''([^'']*)''')) as key,
       coalesce(substring(r.stmt from '(?i)\merrcode\s*=\s*''([^'']*)'''),
                substring(r.stmt from '(?i)^\s*(?:exception\s+)?sqlstate\s+''([^'']*)'''),
                'P0001') as sqlstate
from raise_statements r
where r.stmt !~* '^\s*(debug|log|info|notice|warning)\M'  -- not errors
  and r.stmt !~ '^\s*$';                                    -- a bare `raise;` re-raises

-- (function, key, SQLSTATE as written or null when the call leaves it to the catalog).
create temporary view raised_keys as
select c.fn, btrim(c.first_arg, '''') as key, c.sqlstate
from fail_calls c where c.first_arg like '''%'
union all
select b.fn, m[2], (select s.sqlstate from check_metadata_sqlstate s)
from function_bodies b, regexp_matches(b.body, $re$private\.check_metadata\s*\(\s*('[^']*'|[a-z_][a-z0-9_.]*)\s*,\s*'([^']*)'\s*\)$re$, 'gi') m
union all
-- check_metadata's default key
select 'private.check_metadata(p_metadata jsonb, p_key text)', substring(pg_get_function_arguments(p.oid) from 'DEFAULT ''([^'']*)'''),
       (select s.sqlstate from check_metadata_sqlstate s)
from pg_proc p where p.oid = to_regprocedure('private.check_metadata(jsonb, text)')
union all
-- check_credits' key (its third argument, or its default): raised through the catalog
select b.fn, m[1], null
from function_bodies b, regexp_matches(b.body, $re$private\.check_credits\s*\([^,;]+,\s*'[^']*'\s*,\s*'([^']*)'$re$, 'gi') m
union all
select 'private.check_credits(p_value bigint, p_field text, p_key text, p_min bigint, p_hint text)',
       substring(pg_get_function_arguments(p.oid) from 'p_key text DEFAULT ''([^'']*)'''), null
from pg_proc p where p.oid = to_regprocedure('private.check_credits(bigint, text, text, bigint, text)')
union all
select e.fn, e.key, e.sqlstate from raise_errors e where e.key is not null;

-- What is wrong, one row per finding, naming the function.
create temporary view catalog_findings as
select k.fn, format('%s: not in private.error_catalog', k.key) as finding
from raised_keys k
where not exists (select from private.error_catalog c where c.key = k.key)
union all
select k.fn, format('%s: raised as %s, the catalog says %s', k.key, k.sqlstate, c.sqlstate)
from raised_keys k join private.error_catalog c on c.key = k.key
where k.sqlstate is not null and k.sqlstate <> c.sqlstate
union all
select c.fn, format('private.fail(%s, ...): the key is not a literal (only forwarders may pass one on)', c.first_arg)
from fail_calls c
where c.first_arg not like '''%' and c.fn not in (select f.fn from forwarders f)
union all
select e.fn, format('raise%s: the message is not a literal key (only forwarders may pass one on)', e.stmt)
from raise_errors e
where e.key is null and e.fn not in (select f.fn from forwarders f)
union all
-- Calls the patterns above could not read (an expression as the key, a nested call, ...).
select b.fn, format('%s private.fail calls, %s read by the scan', n.calls, (select count(*) from fail_calls c where c.fn = b.fn))
from function_bodies b,
     lateral (select count(*) as calls from regexp_matches(b.body, 'private\.fail\s*\(', 'gi')) n
where n.calls <> (select count(*) from fail_calls c where c.fn = b.fn)
union all
select b.fn, format('%s private.check_metadata calls, %s read by the scan', n.calls, r.calls)
from function_bodies b,
     lateral (select count(*) as calls from regexp_matches(b.body, 'private\.check_metadata\s*\(', 'gi')) n,
     lateral (select count(*) as calls from regexp_matches(b.body, $re$private\.check_metadata\s*\(\s*('[^']*'|[a-z_][a-z0-9_.]*)\s*(,\s*'[^']*'\s*)?\)$re$, 'gi')) r
where n.calls <> r.calls;

-- The catalog table -------------------------------------------------------------------------

select has_table('private', 'error_catalog', 'the catalog is a table in private');
select ok((select relrowsecurity from pg_class where oid = 'private.error_catalog'::regclass), 'RLS is on');
select is(
  (select array_agg(r order by r) from unnest(array['anon', 'authenticated', 'service_role']) r
    where has_table_privilege(r, 'private.error_catalog', 'select, insert, update, delete, truncate, references, trigger')),
  null,
  'no API role has any privilege on the catalog'
);
select is_empty(
  $$select key, sqlstate, http_status from private.error_catalog
    where http_status is distinct from case
      when sqlstate ~ '^PT[1-5][0-9]{2}$' then substr(sqlstate, 3)::integer
      when sqlstate = '42501' then 403  -- a signed-in caller; PostgREST answers anon 401
      when sqlstate ~ '^22' then 400
      when sqlstate ~ '^(25|XX)' then 500
    end$$,
  'every HTTP status follows the rule: PTxyz → xyz, 42501 → 403, 22xxx → 400, 25xxx and XX000 → 500 (a new SQLSTATE class needs its rule here)'
);
select throws_ok(
  $$insert into private.error_catalog (key, sqlstate, http_status, meaning) values ('Not_snake', '22023', 400, 'A key.')$$,
  '23514', null, 'keys are snake_case'
);
select throws_ok(
  $$insert into private.error_catalog (key, sqlstate, http_status, meaning) values ('pipe_in_meaning', '22023', 400, 'A meaning | that breaks a table cell.')$$,
  '23514', null, 'a meaning is a sentence that fits a table cell'
);

-- Every function body against the catalog ----------------------------------------------------

select ok((select count(*) from raised_keys) > 100, 'the scan reads the raise sites (over a hundred today)');
select ok(
  exists (select from raised_keys where key = 'ledger_append_only' and sqlstate = '42501')
  and exists (select from raised_keys where key = 'invalid_specification' and sqlstate = '22023')
  and exists (select from raised_keys where key = 'invalid_metadata' and sqlstate = '22023')
  and exists (select from raised_keys where key = 'insufficient_credits' and sqlstate = 'PT402'),
  'the scan reads raise exception, check_metadata keys (passed and default) and fail calls'
);
select is_empty('select fn, finding from catalog_findings order by 1, 2',
  'every key a function raises is in the catalog with the SQLSTATE it is raised with');
select is_empty(
  $$select c.key from private.error_catalog c
    where c.raised_by = 'database' and not exists (select from raised_keys k where k.key = c.key)$$,
  'every database key in the catalog is raised by some function (no stale rows)'
);

-- The scan finds what it is for: planted mistakes (rolled back with the test).
create function private.planted_errors(p_key text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform private.fail('insufficient_credits', '{}', 'the untyped detail makes this the four-argument form');
  perform private.fail('invalid_quantity', 'PT409', '{}');
  perform private.fail('not_in_the_catalog', '{}'::jsonb);
  perform private.fail(p_key, '22023');
  perform private.check_metadata('{}', 'invalid_planted');
  raise exception 'hold_expired' using errcode = 'PT404';
  raise exception 'made_up_key';
  -- raise exception 'commented_out_key';  (not read: a comment)
  perform private.fail('hold_expired', '{}'::jsonb, 'raise the TTL');  -- fine: a catalog key, its prose not read
end
$$;
select set_eq(
  $$select finding from catalog_findings where fn = 'private.planted_errors(p_key text)'$$,
  array[
    'insufficient_credits: raised as {}, the catalog says PT402',
    'invalid_quantity: raised as PT409, the catalog says 22023',
    'not_in_the_catalog: not in private.error_catalog',
    'private.fail(p_key, ...): the key is not a literal (only forwarders may pass one on)',
    'invalid_planted: not in private.error_catalog',
    'hold_expired: raised as PT404, the catalog says PT409',
    'made_up_key: not in private.error_catalog'
  ],
  'planted mistakes are each named: a wrong SQLSTATE, an untyped detail, an unknown key, a key not written as a literal'
);
drop function private.planted_errors(text);

-- private.fail: both forms ------------------------------------------------------------------

select is(
  (select array_agg(pg_get_function_identity_arguments(p.oid) order by pg_get_function_identity_arguments(p.oid))
     from pg_proc p where p.pronamespace = 'private'::regnamespace and p.proname = 'fail'),
  array['p_key text, p_detail jsonb, p_hint text', 'p_key text, p_errcode text, p_detail jsonb, p_hint text', 'p_key text, p_errcode text, p_detail text'],
  'three forms: (key, detail, hint), (key, SQLSTATE, detail, hint) and the resolution aid (key, SQLSTATE, detail text)'
);

-- The four-argument form with untyped literals resolves as it always has: a key the catalog
-- does not hold is raised with the SQLSTATE given (the catalog form would say unknown_error_key).
select is(tests.error_of($$select private.fail('not_a_catalog_key', '22023', '{"n": 1}', 'a hint')$$),
  '{"sqlstate": "22023", "message": "not_a_catalog_key", "detail": {"n": 1}}', 'fail(key, SQLSTATE, detail, hint): the four-argument form');
select is(tests.error_of($$select private.fail('not_a_catalog_key', 'PT409', '{}')$$),
  '{"sqlstate": "PT409", "message": "not_a_catalog_key", "detail": {}}', 'fail(key, SQLSTATE, detail) with untyped literals: still the four-argument form');
select is(tests.error_of($$select private.fail('not_a_catalog_key', 'PT409', null)$$),
  '{"sqlstate": "PT409", "message": "not_a_catalog_key", "detail": {}}', 'fail(key, SQLSTATE, null): the same');
select is(tests.error_of($$select private.fail('not_a_catalog_key', 'PT404')$$),
  '{"sqlstate": "PT404", "message": "not_a_catalog_key", "detail": {}}', 'fail(key, SQLSTATE) with an untyped literal: still the four-argument form');

-- The catalog form: jsonb detail (typed literal or expression), hint, or the key alone.
select is(tests.error_of($$select private.fail('insufficient_credits', '{"required": 5, "available": 2}'::jsonb, 'top up')$$),
  '{"sqlstate": "PT402", "message": "insufficient_credits", "detail": {"required": 5, "available": 2}}', 'fail(key, jsonb, hint): SQLSTATE from the catalog');
select is(tests.error_of($$select private.fail('invalid_quantity', jsonb_build_object('quantity', 0))$$),
  '{"sqlstate": "22023", "message": "invalid_quantity", "detail": {"quantity": 0}}', 'fail(key, jsonb expression)');
select is(tests.error_of($$select private.fail('hold_expired')$$),
  '{"sqlstate": "PT409", "message": "hold_expired", "detail": {}}', 'fail(key): detail {}');
select is(tests.error_of($$select private.fail('not_a_member', p_hint => 'join first')$$),
  '{"sqlstate": "42501", "message": "not_a_member", "detail": {}}', 'fail(key, p_hint => ...): named arguments reach the catalog form');
select is(tests.error_of($$select private.fail('not_a_catalog_key', '{"n": 1}'::jsonb, 'a hint')$$),
  '{"sqlstate": "XX000", "message": "unknown_error_key", "detail": {"key": "not_a_catalog_key"}}', 'an unknown key is a loud internal error naming it');
select is(tests.error_of($$select private.fail(null::text)$$),
  '{"sqlstate": "XX000", "message": "unknown_error_key", "detail": {"key": null}}', 'so is a null key');

-- The hint reaches the caller in both forms.
create function pg_temp.hint_of(p_sql text)
returns text
language plpgsql
as $$
declare
  v_hint text;
begin
  execute p_sql;
  return null;
exception when others then
  get stacked diagnostics v_hint = pg_exception_hint;
  return v_hint;
end
$$;
select is(pg_temp.hint_of($$select private.fail('hold_expired', '{}'::jsonb, 'capture sooner')$$), 'capture sooner', 'the catalog form passes the hint');
select is(pg_temp.hint_of($$select private.fail('hold_expired', 'PT409', '{}', 'capture sooner')$$), 'capture sooner', 'the four-argument form passes the hint');

-- API roles: they call fail through our functions (which run as them) and never read the catalog.
select tests.create_user('errors@example.test') as user_id \gset
select tests.authenticate_as(:'user_id');
select is(tests.error_of($$select private.fail('unknown_org', jsonb_build_object('org_id', 1))$$),
  '{"sqlstate": "PT404", "message": "unknown_org", "detail": {"org_id": 1}}', 'a signed-in user''s call raises the catalog''s SQLSTATE');
select throws_ok($$select * from private.error_catalog$$, '42501', null, 'a signed-in user cannot read the catalog');
select tests.authenticate_as_service_role();
select is(tests.error_of($$select private.fail('invalid_amount')$$),
  '{"sqlstate": "22023", "message": "invalid_amount", "detail": {}}', 'so does the service role''s');
select throws_ok($$select * from private.error_catalog$$, '42501', null, 'the service role cannot read the catalog');
select tests.authenticate_as_anon();
select throws_ok($$select private.fail('invalid_amount')$$, '42501', null, 'anon cannot call fail');
select throws_ok($$select * from private.error_catalog$$, '42501', null, 'anon cannot read the catalog');
select tests.clear_authentication();

-- A landed RPC still raises through the four-argument form with the catalog's pair.
select tests.authenticate_as(:'user_id');
select throws_ok($$select public.get_usage_stats(0)$$, '22023', 'invalid_days', 'a landed RPC raises its key and SQLSTATE');
select tests.clear_authentication();

select * from finish();
rollback;
