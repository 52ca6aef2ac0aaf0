-- The outbound URL rule at configuration time: set_alert_webhook (owners and admins) and
-- set_meter_backend (service role) refuse non-https and internal URLs with documented keys; the
-- owner-only settings (local allowance, private meter origins) and who may touch them; classes
-- only in credit_alert_outbox.last_error. The full case table runs in
-- tests/outbound-url-rule.test.ts against the same function the RPCs use.
begin;
\ir helpers/setup.psql
select plan(35);

select tests.create_user('owner@example.test') as owner \gset
select tests.create_user('member@example.test') as member \gset
select tests.personal_org(:'owner') as org \gset
insert into public.org_members (org_id, user_id, role) values (:'org', :'member', 'member');
-- This file sets the owner's settings itself (the local stack's seed turns the allowance on).
update private.outbound_settings set allow_local_http = false, meter_private_origins = '{}';

-- set_alert_webhook -------------------------------------------------------------------------
select tests.authenticate_as(:'owner');
select throws_ok($$select public.set_alert_webhook('ftp://example.com/h')$$, '22023', 'invalid_url', 'not http(s): invalid_url');
select throws_ok($$select public.set_alert_webhook('https://user:pw@example.com/h')$$, '22023', 'invalid_url', 'credentials in the URL: invalid_url');
select throws_ok(format('select public.set_alert_webhook(%L)', 'https://example.com/' || repeat('a', 1000)), '22023', 'invalid_url', 'longer than 1000 characters: invalid_url');
select throws_ok($$select public.set_alert_webhook(null)$$, '22023', 'invalid_url', 'no URL: invalid_url');
select throws_ok($$select public.set_alert_webhook('http://example.com/h')$$, '22023', 'url_not_allowed', 'http: url_not_allowed');
select throws_ok($$select public.set_alert_webhook('https://169.254.169.254/latest/meta-data/')$$, '22023', 'url_not_allowed', 'cloud metadata address');
select throws_ok($$select public.set_alert_webhook('https://0xa9.0xfe.0xa9.0xfe/')$$, '22023', 'url_not_allowed', 'cloud metadata address in hex');
select throws_ok($$select public.set_alert_webhook('https://3232235777/')$$, '22023', 'url_not_allowed', '192.168.1.1 as one decimal number');
select throws_ok($$select public.set_alert_webhook('https://[::ffff:10.0.0.1]/')$$, '22023', 'url_not_allowed', 'IPv4-mapped private address');
select throws_ok($$select public.set_alert_webhook('https://metadata.google.internal/')$$, '22023', 'url_not_allowed', 'metadata name');
select throws_ok($$select public.set_alert_webhook('https://app.localhost/')$$, '22023', 'url_not_allowed', '*.localhost');
select is(tests.error_of($$select public.set_alert_webhook('https://127.0.0.1/')$$) -> 'detail', '{"rule": "address"}'::jsonb,
  'the detail names the rule that refused');
select throws_ok($$select public.set_alert_webhook('http://127.0.0.1:8080/h')$$, '22023', 'url_not_allowed', 'local http refused while the local allowance is off');
select tests.clear_authentication();

update private.outbound_settings set allow_local_http = true;
select tests.authenticate_as(:'owner');
select lives_ok($$select public.set_alert_webhook('http://127.0.0.1:8080/h')$$, 'the local allowance admits http://127.0.0.1:<port>');
select throws_ok($$select public.set_alert_webhook('http://127.0.0.1/h')$$, '22023', 'url_not_allowed', '... with an explicit port only');
select throws_ok($$select public.set_alert_webhook('http://10.0.0.5:8080/h')$$, '22023', 'url_not_allowed', '... and 127.0.0.1 only');
select ok(public.set_alert_webhook('https://hooks.example.com/tollgate') ->> 'secret' ~ '^whsec_[A-Za-z0-9+/]{43}=$',
  'a public https webhook is stored; its secret is whsec_ + base64 of 32 bytes (Standard Webhooks)');
select tests.clear_authentication();
select is((select url from public.org_alert_webhooks where org_id = :'org'), 'https://hooks.example.com/tollgate', 'the URL is stored as given');
select tests.authenticate_as(:'member');
select throws_ok(format($$select public.set_alert_webhook('https://hooks.example.com/x', %L)$$, :'org'), '42501', 'forbidden', 'members still cannot set it');
select tests.clear_authentication();

-- set_meter_backend -------------------------------------------------------------------------
select tests.authenticate_as_service_role();
select is(public.set_meter_backend('outbound_test_op', 'https://tools.example.com/run', 2000) - 'updated_at',
  '{"operation": "outbound_test_op", "url": "https://tools.example.com/run", "timeout_ms": 2000, "enabled": true}'::jsonb,
  'the service role sets a backend');
select is(public.set_meter_backend('outbound_test_op', 'https://tools.example.com/v2', 3000, false) ->> 'enabled', 'false',
  'and changes or disables it with the same call');
select results_eq($$select url, timeout_ms, enabled from public.meter_backends where operation = 'outbound_test_op'$$,
  $$values ('https://tools.example.com/v2', 3000, false)$$, 'one row per operation, updated');
select throws_ok($$select public.set_meter_backend('outbound_test_op', 'https://10.0.0.5:8443/run')$$, '22023', 'url_not_allowed', 'an internal backend is refused');
select throws_ok($$select public.set_meter_backend('Bad Op', 'https://tools.example.com/run')$$, '22023', 'invalid_operation', 'operation names are checked');
select throws_ok($$select public.set_meter_backend('outbound_test_op', 'https://tools.example.com/run', 50)$$, '22023', 'invalid_timeout', 'timeouts are 100..120000 ms');
select throws_ok($$select public.set_meter_backend('outbound_test_op', 'https://tools.example.com/run', 1000, null)$$, '22023', 'invalid_enabled', 'enabled is required');
select throws_ok($$insert into public.meter_backends (operation, url) values ('direct_op', 'https://127.0.0.1/')$$, '42501', null,
  'the service role no longer writes the table directly');
select throws_ok($$update public.meter_backends set url = 'https://127.0.0.1/'$$, '42501', null, '... nor updates it');
select throws_ok($$select * from private.outbound_settings$$, '42501', null, 'the service role cannot read the outbound settings');
select tests.clear_authentication();

-- The operator's private origins: for meter backends only, never for alert webhooks.
update private.outbound_settings set meter_private_origins = '{http://10.0.0.5:8080}';
select tests.authenticate_as_service_role();
select lives_ok($$select public.set_meter_backend('outbound_test_op', 'http://10.0.0.5:8080/run')$$, 'a listed private origin is accepted for a meter backend');
select tests.clear_authentication();
select tests.authenticate_as(:'owner');
select throws_ok($$select public.set_alert_webhook('http://10.0.0.5:8080/run')$$, '22023', 'url_not_allowed', 'but never for an alert webhook');
select throws_ok($$update private.outbound_settings set allow_local_http = true$$, '42501', null, 'users cannot change the outbound settings');
select throws_ok($$select public.set_meter_backend('outbound_test_op', 'https://tools.example.com/run')$$, '42501', null, 'users cannot set meter backends');
select tests.clear_authentication();

-- credit_alert_outbox.last_error holds classes only ------------------------------------------
select public.grant_credits(:'org', 100, 'purchase', 'outbound-1');
insert into public.credit_alert_outbox (org_id, grant_id, threshold, payload)
select :'org', id, 50, '{}' from public.credit_grants where org_id = :'org' limit 1;
select throws_ok(format($$update public.credit_alert_outbox set last_error = 'error sending request for url (http://10.0.0.1/): Connection refused' where org_id = %L$$, :'org'),
  '23514', null, 'raw network text cannot be stored where members read it');
select results_eq(
  $$select private.alert_error_class(e) from unnest(array['HTTP 404', 'HTTP 502', 'HTTP 302', 'Signal timed out.', 'invalid peer certificate: UnknownIssuer',
    'dns error: failed to lookup address information', 'tcp connect error: Connection refused (os error 111)', 'http_5xx']) e$$,
  $$values ('http_4xx'), ('http_5xx'), ('redirect_refused'), ('timeout'), ('tls_failed'), ('dns_failed'), ('connection_failed'), ('http_5xx')$$,
  'errors recorded as text before classes are scrubbed to their class');

select * from finish();
rollback;
