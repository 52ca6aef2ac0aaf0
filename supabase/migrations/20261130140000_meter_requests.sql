-- The tool gateway's per-request record: who asked, what exactly, and the first answer as bytes.
--
-- meter_responses held the first answer as text, written only when the request settled. A
-- backend answer with a NUL byte could not be stored (the capture rolled back: work done,
-- nothing charged), binary answers were decoded as text and replayed corrupted, and a retried
-- Idempotency-Key was answered whatever its body and whoever sent it. From here on:
--   * the row is written when the hold is reserved, with the caller (user) and a SHA-256
--     fingerprint of the request (method, operation, quantity, body): the same key from another
--     caller, or with another request, is refused before anything else happens;
--   * the answer is stored as bytea (any content, at most 1 MiB) when the request settles, in
--     the same transaction as the capture or release;
--   * credit_requests.backend_endpoint (readable by the org's members) names the backend by its
--     operation; URLs the gateway stored there before are scrubbed below.
-- Both RPCs are for the gateway (service_role) only.

alter table public.meter_responses rename to meter_requests;
alter table public.meter_requests rename constraint meter_responses_pkey to meter_requests_pkey;
alter table public.meter_requests rename constraint meter_responses_org_id_request_id_fkey to meter_requests_org_id_request_id_fkey;
alter table public.meter_requests rename constraint meter_responses_status_check to meter_requests_status_check;
alter policy meter_responses_no_user_access on public.meter_requests rename to meter_requests_no_user_access;

alter table public.meter_requests drop constraint meter_responses_body_check;
alter table public.meter_requests alter column body type bytea using convert_to(body, 'UTF8');
alter table public.meter_requests alter column body drop not null;
alter table public.meter_requests alter column status drop not null;
alter table public.meter_requests
  -- Null only on rows settled before callers were recorded: such a key is replayed to nobody.
  add column user_id uuid,
  -- SHA-256 of the request; null only on rows from before fingerprints (replayed without a check).
  add column fingerprint bytea check (octet_length(fingerprint) = 32),
  add column completed_at timestamptz,
  add constraint meter_requests_body_size check (octet_length(body) <= 1048576),
  add constraint meter_requests_content_type_length check (char_length(content_type) <= 255),
  -- An answer is stored whole or not at all (not yet settled, or the hold lapsed).
  add constraint meter_requests_answer_whole check ((status is null) = (body is null));

update public.meter_requests m
set user_id = r.user_id, completed_at = m.created_at
from public.credit_requests r
where r.org_id = m.org_id and r.request_id = m.request_id;

comment on table public.meter_requests is
  'Tool gateway requests: caller, request fingerprint and the first answer (bytes), replayed to the same caller only. service_role reads; written by reserve_meter_request / settle_meter_request.';
comment on column public.meter_requests.body is 'The first answer, byte for byte (at most 1 MiB); null until the request settles.';

-- Scrub: the gateway recorded its backend's URL (with any credentials in it) where members can
-- read it. Every settled gateway request has a meter_requests row; name the backend instead.
update public.credit_requests r
set backend_endpoint = r.operation
from public.meter_requests m
where m.org_id = r.org_id and m.request_id = r.request_id
  and r.backend_endpoint is distinct from r.operation
  and r.backend_endpoint is not null;

-- reserve_meter_request ---------------------------------------------------------------------------

-- The gateway's reserve: the caller's org (p_org_id, membership checked, or the personal org),
-- then, under the org's balance lock, the key's owner and fingerprint are checked before
-- reserve_credits holds price × quantity (or replays the first hold). A new hold gets its
-- meter_requests row in the same transaction, so a concurrent twin sees both or neither.
-- Definer: writes meter_requests and the credit tables, which no API role may write.
create function public.reserve_meter_request(
  p_org_id uuid,
  p_user_id uuid,
  p_operation text,
  p_request_id text,
  p_quantity integer,
  p_ttl_seconds integer,
  p_fingerprint bytea
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := p_org_id;
  v_known record;
  v_hold jsonb;
begin
  if p_user_id is null then
    perform private.fail('invalid_user', '22023', '{}', 'the gateway reserves for a signed-in user');
  end if;
  if p_fingerprint is null or octet_length(p_fingerprint) <> 32 then
    perform private.fail('invalid_fingerprint', '22023', jsonb_build_object('bytes', 32), 'pass the SHA-256 of the request');
  end if;
  if v_org_id is null then
    select o.id into v_org_id from public.orgs o where o.personal_user_id = p_user_id;
    if v_org_id is null then
      perform private.fail('unknown_org', 'PT404', '{}', 'the caller has no personal org: name the org');
    end if;
  elsif not exists (select 1 from public.org_members m where m.org_id = v_org_id and m.user_id = p_user_id) then
    perform private.fail('not_a_member', '42501', jsonb_build_object('org_id', v_org_id), 'the caller is not a member of this org');
  end if;
  perform private.check_request_id(p_request_id);

  -- Under the lock a twin has either committed its hold and meter row, or not started.
  perform private.lock_balance(v_org_id);
  select m.org_id is not null as gateway, m.user_id, m.fingerprint
  into v_known
  from public.credit_requests r
  left join public.meter_requests m on m.org_id = r.org_id and m.request_id = r.request_id
  where r.org_id = v_org_id and r.request_id = p_request_id;
  if found then
    if not v_known.gateway then
      perform private.fail('idempotency_conflict', 'PT409', jsonb_build_object('request_id', p_request_id),
        'this key names a request that did not come through the gateway: use a new key');
    end if;
    if v_known.user_id is distinct from p_user_id then
      perform private.fail('idempotency_key_in_use', 'PT409', jsonb_build_object('request_id', p_request_id),
        'another caller used this Idempotency-Key in this org: use a new key');
    end if;
    if v_known.fingerprint is not null and v_known.fingerprint <> p_fingerprint then
      perform private.fail('idempotency_conflict', 'PT409', jsonb_build_object('request_id', p_request_id),
        'this Idempotency-Key was used with another request (method, operation, quantity or body): use a new key');
    end if;
  end if;

  v_hold := public.reserve_credits(v_org_id, p_user_id, p_operation, p_request_id, p_quantity, p_ttl_seconds, '{}');
  if not (v_hold ->> 'replayed')::boolean then
    insert into public.meter_requests (org_id, request_id, user_id, fingerprint)
    values (v_org_id, p_request_id, p_user_id, p_fingerprint);
  end if;
  return v_hold;
end
$$;

revoke all on function public.reserve_meter_request(uuid, uuid, text, text, integer, integer, bytea) from public;
grant execute on function public.reserve_meter_request(uuid, uuid, text, text, integer, integer, bytea) to service_role;
comment on function public.reserve_meter_request(uuid, uuid, text, text, integer, integer, bytea) is
  'Tool gateway (service_role): reserve_credits bound to the caller and the request fingerprint. Errors: idempotency_key_in_use / idempotency_conflict PT409, invalid_user / invalid_fingerprint 22023, plus those of reserve_credits.';

-- settle_meter_request ----------------------------------------------------------------------------

-- The gateway's settle: capture (the user's result) or release (our failure) the hold and store
-- the answer's bytes, in one transaction, so an answer is stored exactly when its request is
-- settled. A settle that replays (already settled) keeps the first answer.
-- Definer: writes meter_requests and the credit tables, which no API role may write.
create function public.settle_meter_request(
  p_org_id uuid,
  p_request_id text,
  p_capture boolean,
  p_result jsonb,
  p_status integer,
  p_content_type text,
  p_body bytea
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settled jsonb;
begin
  if p_capture is null or p_status is null or p_status not between 100 and 599 or p_body is null
     or octet_length(p_body) > 1048576 or char_length(p_content_type) > 255 then
    perform private.fail('invalid_response', '22023', jsonb_build_object('max_bytes', 1048576, 'max_content_type_length', 255),
      'pass capture, an HTTP status (100..599) and a body of at most 1 MiB');
  end if;
  if p_capture then
    v_settled := public.capture_credits(p_org_id, p_request_id, null, p_result);
  else
    v_settled := public.release_credits(p_org_id, p_request_id, true, p_result);
  end if;
  update public.meter_requests
  set status = p_status, content_type = p_content_type, body = p_body, completed_at = now()
  where org_id = p_org_id and request_id = p_request_id and status is null;
  if not found and not exists (select 1 from public.meter_requests m where m.org_id = p_org_id and m.request_id = p_request_id) then
    perform private.fail('unknown_request', 'PT404', jsonb_build_object('org_id', p_org_id, 'request_id', p_request_id),
      'not a gateway request: reserve it with reserve_meter_request');
  end if;
  return v_settled;
end
$$;

revoke all on function public.settle_meter_request(uuid, text, boolean, jsonb, integer, text, bytea) from public;
grant execute on function public.settle_meter_request(uuid, text, boolean, jsonb, integer, text, bytea) to service_role;
comment on function public.settle_meter_request(uuid, text, boolean, jsonb, integer, text, bytea) is
  'Tool gateway (service_role): capture or release a gateway hold and store its answer (bytes, at most 1 MiB) in one transaction. Errors: invalid_response 22023, unknown_request PT404, plus those of capture_credits / release_credits.';
