-- The error catalog: every error key our functions raise, with its SQLSTATE, HTTP status and
-- meaning, in one table.
--
-- Functions raise `message = key, errcode = SQLSTATE, detail = JSON`. Until now the pair lived
-- only at each call site, and the README's table, the client's error classes and the edge
-- functions' HTTP mapping each restated it by hand. The catalog is the one place:
-- - `private.fail(key, detail, hint)` looks the SQLSTATE up here (an unknown key is a bug and
--   raises `unknown_error_key`);
-- - supabase/tests/database/21-error-catalog.sql reads every function body and fails on a key
--   missing here or raised with another SQLSTATE (the four-argument `fail` included);
-- - `npm run gen:errors` writes the README's Errors table and the edge functions'
--   `_shared/errors/catalog.json` from it, and tests check that both are current and that the
--   client's classes and the functions' HTTP mapping agree with it.
--
-- HTTP status: what PostgREST answers a signed-in caller (PTxyz → xyz, 22xxx → 400, 42501 → 403,
-- 25xxx and XXxxx → 500). For 42501 PostgREST answers anon (the anon key, or no token) 401; the
-- edge functions refuse anon with 401 before they call an RPC. A new key: insert its row in the
-- migration that first raises it.

create table private.error_catalog (
  key text primary key check (key ~ '^[a-z][a-z0-9_]*$'),
  sqlstate text not null check (sqlstate ~ '^[0-9A-Z]{5}$'),
  http_status integer not null check (http_status between 400 and 599),
  -- One sentence for humans: what went wrong, and the detail keys worth knowing.
  meaning text not null check (meaning ~ '^\S.*\.$' and meaning !~ '[|\n]'),
  -- 'database': raised by our functions. 'client': raised by @tollgate/client (and the tool
  -- gateway) from a request's state, shaped like an RPC error.
  raised_by text not null default 'database' check (raised_by in ('database', 'client'))
);

comment on table private.error_catalog is
  'Every error key with its SQLSTATE, HTTP status (signed-in caller) and meaning. private.fail(key, detail, hint) reads it; tests hold function bodies, README, client and edge functions to it. Owner-only.';

alter table private.error_catalog enable row level security;
revoke all on private.error_catalog from public, anon, authenticated, service_role;

insert into private.error_catalog (key, sqlstate, http_status, meaning, raised_by) values
  -- 402
  ('insufficient_credits',    'PT402', 402, 'The org''s spendable credits are fewer than the charge needs (details: required, available); nothing is written.', 'database'),
  -- 404
  ('unknown_alert',           'PT404', 404, 'No alert event (or no pending one, where it must be pending) with this id.', 'database'),
  ('unknown_app',             'PT404', 404, 'No app with this id in an org the caller belongs to; an app of another org is not revealed.', 'database'),
  ('unknown_channel',         'PT404', 404, 'The app has no channel of this name.', 'database'),
  ('unknown_exception',       'PT404', 404, 'No payment exception with this id.', 'database'),
  ('unknown_grant',           'PT404', 404, 'No such grant in this org: by id for `revoke_credits`, by source and external reference for activation and voiding.', 'database'),
  ('unknown_operation',       'PT404', 404, 'No active price for this operation in `credit_prices`.', 'database'),
  ('unknown_org',             'PT404', 404, 'No such org, or the caller has no personal org to default to.', 'database'),
  ('unknown_request',         'PT404', 404, 'No request with this id in the org, or no top-up request in processing with this id.', 'database'),
  ('unknown_user',            'PT404', 404, 'No user with this id (or the user has no personal org).', 'database'),
  ('unknown_workflow',        'PT404', 404, 'No active workflow with this id in an org the caller belongs to.', 'database'),
  -- 409
  ('grant_not_pending',       'PT409', 409, 'The grant is no longer pending, so it cannot be activated or voided (details: status).', 'database'),
  ('hold_expired',            'PT409', 409, 'Capture after the hold''s TTL: its credits were already released.', 'database'),
  ('hold_not_active',         'PT409', 409, 'The hold was already captured, released or refunded (details: status).', 'database'),
  ('idempotency_conflict',    'PT409', 409, 'A request id or payment reference reused with other parameters (for the tool gateway: another method, operation, quantity or body under the same `Idempotency-Key`).', 'database'),
  ('idempotency_key_in_use',  'PT409', 409, '`reserve_meter_request`: another user (even of the same org) already used this `Idempotency-Key`; nothing is reserved and nothing of the first request is returned.', 'database'),
  ('not_a_hold',              'PT409', 409, 'The request is a plain charge, not a hold, so it cannot be captured or released.', 'database'),
  ('not_refundable',          'PT409', 409, 'The request charged nothing or is not settled as charged or captured, so there is nothing to refund.', 'database'),
  ('request_already_settled', 'PT409', 409, '`withCredits` (`@tollgate/client/server`) was given a request id that already ran and was settled; nothing ran and nothing was charged again.', 'client'),
  ('request_in_progress',     'PT409', 409, 'Another call holds this request id and has not settled it (`withCredits`, or a tool gateway `Idempotency-Key` still running); nothing ran.', 'client'),
  -- 400
  ('invalid_amount',          '22023', 400, 'A credit or payment amount that is missing or out of range (details: min, max).', 'database'),
  ('invalid_batch_size',      '22023', 400, 'A maintenance job''s batch size that is missing or out of range (details: min, max).', 'database'),
  ('invalid_currency',        '22023', 400, 'A currency that is not a three-letter ISO 4217 code.', 'database'),
  ('invalid_customer',        '22023', 400, '`set_org_billing`: not a Stripe customer id (`cus_...`).', 'database'),
  ('invalid_days',            '22023', 400, 'A usage window outside 1–366 days.', 'database'),
  ('invalid_description',     '22023', 400, 'A workflow description longer than 2000 characters.', 'database'),
  ('invalid_detail',          '22023', 400, 'A payment exception''s detail that is not a JSON object of at most 8 KiB.', 'database'),
  ('invalid_device_id',       '22023', 400, 'A device id that breaks the plugin''s `device_id` rule (letters, digits, `_ . : -`, at most 128 characters).', 'database'),
  ('invalid_dispute',         '22023', 400, 'A dispute without all of its id, status and amount.', 'database'),
  ('invalid_enabled',         '22023', 400, 'An on/off setting given as null instead of true or false.', 'database'),
  ('invalid_event',           '22023', 400, 'A payment event whose id (1–255 characters) or type (1–100 characters) is missing or too long.', 'database'),
  ('invalid_expiry',          '22023', 400, 'An expiry that is not in the future.', 'database'),
  ('invalid_external_ref',    '22023', 400, 'An external reference (payment reference, checkout session id) that is missing where required or not 1–200 characters.', 'database'),
  ('invalid_fingerprint',     '22023', 400, '`reserve_meter_request`: the request fingerprint is not a 32-byte SHA-256.', 'database'),
  ('invalid_input',           '22023', 400, 'A workflow execution''s input that is not a JSON object of at most 8 KiB.', 'database'),
  ('invalid_limit',           '22023', 400, 'An outbox claim''s batch size (`p_limit`) that is missing or out of range (details: min, max).', 'database'),
  ('invalid_metadata',        '22023', 400, 'Metadata that is not a JSON object of at most 8 KiB.', 'database'),
  ('invalid_monthly_cap',     '22023', 400, 'An auto top-up monthly cap that is missing, above 10^12 or below one top-up''s amount.', 'database'),
  ('invalid_name',            '22023', 400, 'A workflow name that is blank or longer than 200 characters.', 'database'),
  ('invalid_object_id',       '22023', 400, 'A payment event''s object id longer than 255 characters.', 'database'),
  ('invalid_operation',       '22023', 400, '`set_meter_backend`: an operation name that does not match `^[a-z][a-z0-9_.:-]{0,63}$`.', 'database'),
  ('invalid_outcome',         '22023', 400, 'A checkout outcome other than `paid`, `unpaid` or `failed`.', 'database'),
  ('invalid_payment_intent',  '22023', 400, 'Not a Stripe payment intent id (`pi_...`), or a submitted or succeeded top-up without one.', 'database'),
  ('invalid_payment_method',  '22023', 400, '`set_org_billing`: not a Stripe payment method id (`pm_...`).', 'database'),
  ('invalid_priority',        '22023', 400, 'A grant or workflow priority that is missing or out of range (details: min, max).', 'database'),
  ('invalid_quantity',        '22023', 400, 'A quantity that is missing or out of range, or a capture of more than was held (details: min, max).', 'database'),
  ('invalid_reason',          '22023', 400, 'A refund or revocation reason that is blank or over 500 characters, or a payment exception reason that is not a snake_case key.', 'database'),
  ('invalid_request_id',      '22023', 400, 'A request id that is missing or longer than 200 characters.', 'database'),
  ('invalid_resolution',      '22023', 400, 'A payment exception''s resolution that is blank or longer than 1000 characters.', 'database'),
  ('invalid_response',        '22023', 400, '`settle_meter_request`: a backend answer without its outcome, a status in 100–599 or a body, or one too large (details: max_bytes, max_content_type_length).', 'database'),
  ('invalid_result',          '22023', 400, 'A capture or release result that is not a JSON object of at most 8 KiB.', 'database'),
  ('invalid_source',          '22023', 400, 'A grant source that is not snake_case of at most 32 characters, or one the engine keeps for itself (`onboarding`, `refund`).', 'database'),
  ('invalid_specification',   '22023', 400, 'A workflow specification that is not a JSON object of at most 8 KiB.', 'database'),
  ('invalid_status',          '22023', 400, 'An outcome an outbox does not take, or a top-up completion without its succeeded flag.', 'database'),
  ('invalid_threshold',       '22023', 400, 'An auto top-up threshold outside 1–10^12 credits.', 'database'),
  ('invalid_timeout',         '22023', 400, '`set_meter_backend`: a timeout outside 100–120000 ms.', 'database'),
  ('invalid_ttl',             '22023', 400, 'A hold TTL outside 1–86400 seconds.', 'database'),
  ('invalid_url',             '22023', 400, 'A webhook or backend URL that is not an absolute http(s) URL of printable ASCII (punycode for international names) without credentials or percent-encoded host, with a port in 1–65535 and at most 1000 characters (details: max_length).', 'database'),
  ('invalid_user',            '22023', 400, '`reserve_meter_request` without the user it reserves for.', 'database'),
  ('invalid_wait',            '22023', 400, '`roll_up_credit_usage`: a wait outside 0–60000 ms.', 'database'),
  ('unknown_outbox',          '22023', 400, 'Internal: an outbox function was pointed at a table that is not an outbox (a bug, never a caller''s mistake).', 'database'),
  ('url_not_allowed',         '22023', 400, 'A webhook or backend URL the outbound rule refuses: not https, an internal address in any spelling, or an internal name (details: rule is scheme, address or hostname).', 'database'),
  -- 403 (401 for anon)
  ('forbidden',               '42501', 403, 'The caller may not do this: no signed-in user, or not an owner or admin of the org where the call needs one.', 'database'),
  ('ledger_append_only',      '42501', 403, '`credit_ledger` is append-only: an UPDATE, DELETE or TRUNCATE was refused, even for the table owner.', 'database'),
  ('not_a_member',            '42501', 403, 'The caller (or the user named in the call) is not a member of the org.', 'database'),
  -- 500
  ('allocation_out_of_sync',  'XX000', 500, 'An invariant is broken: a request''s grant allocations disagree with its grants, so the call is refused (`reconcile_credits()` names the org).', 'database'),
  ('balance_out_of_sync',     'XX000', 500, 'An invariant is broken: the balance says yes but the grants cannot cover the charge, so it is refused, never overdrawn (`reconcile_credits()` names the org).', 'database'),
  ('invalid_isolation',       '25000', 500, '`roll_up_credit_usage` was called inside a REPEATABLE READ or SERIALIZABLE transaction; it must see what commits while it waits.', 'database'),
  ('unknown_error_key',       'XX000', 500, 'A function raised an error key that is not in the error catalog (a bug).', 'database');

-- Raises the documented error `p_key`, its SQLSTATE read from the catalog. The form new code
-- uses: `perform private.fail('insufficient_credits', jsonb_build_object(...), 'hint')`. Pass the
-- detail as jsonb (an expression, or a literal cast with ::jsonb): with an untyped literal,
-- `fail('k', '{}', 'h')` is a call of the SQLSTATE forms (key, SQLSTATE, ...), as it always was
-- (and fails: '{}' is no SQLSTATE; the pgTAP scan names such calls). An unknown key is a bug: it
-- raises `unknown_error_key` (XX000) naming it. SECURITY DEFINER because callers run as
-- authenticated or service_role, and the catalog is owner-only. Called by our functions, never
-- by clients (private is not exposed).
create function private.fail(p_key text, p_detail jsonb default '{}', p_hint text default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_sqlstate text;
begin
  select c.sqlstate into v_sqlstate from private.error_catalog c where c.key = p_key;
  if v_sqlstate is null then
    raise exception using message = 'unknown_error_key', errcode = 'XX000',
      detail = jsonb_build_object('key', p_key)::text,
      hint = 'add the key to private.error_catalog in a migration';
  end if;
  perform private.fail(p_key, v_sqlstate, p_detail, p_hint);
end
$$;

revoke all on function private.fail(text, jsonb, text) from public;
grant execute on function private.fail(text, jsonb, text) to authenticated, service_role;
comment on function private.fail(text, jsonb, text) is
  'Raises a documented RPC error by key (SQLSTATE from private.error_catalog; unknown key: unknown_error_key, XX000). SECURITY DEFINER: reads the owner-only catalog for callers running as API roles.';

-- Keeps a call of three untyped literals, `private.fail('k', '22023', '{}')`, resolving as it did
-- before the catalog form existed: to "key, SQLSTATE, detail". With only the two forms above,
-- PostgreSQL finds such a call ambiguous (the second literal could be text or jsonb, the third
-- jsonb or text) and raises 42725 on the error path instead of the error. This form takes the
-- text parameter at both places, so PostgreSQL's preference for text picks it, and it raises
-- exactly what the four-argument form raises. Typed calls never reach it (jsonb is never
-- implicitly cast to text). Called by our functions only.
create function private.fail(p_key text, p_errcode text, p_detail text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform private.fail(p_key, p_errcode, coalesce(p_detail, '{}')::jsonb, null::text);
end
$$;

revoke all on function private.fail(text, text, text) from public;
grant execute on function private.fail(text, text, text) to authenticated, service_role;
comment on function private.fail(text, text, text) is
  'Resolution aid: a call of three untyped literals fail(key, SQLSTATE, detail) raises as the four-argument form, not as an ambiguous call. Raises a documented RPC error.';
