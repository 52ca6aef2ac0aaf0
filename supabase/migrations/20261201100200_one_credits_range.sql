-- One place for the range of credits a caller may name: 1 .. 10^12.
--
-- Every RPC that takes a number of credits from a caller (a grant, a revocation, an auto top-up's
-- threshold, amount and monthly cap, a checkout's credits) checks it with private.check_credits,
-- which raises the RPC's documented key (22023) with {field: value, min, max}. The functions
-- below are re-created unchanged but for that check.

create function private.check_credits(
  p_value bigint,
  p_field text,
  p_key text default 'invalid_amount',
  p_min bigint default 1,
  p_hint text default null
)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_value is null or p_value not between p_min and 1000000000000 then
    perform private.fail(p_key, jsonb_build_object(p_field, p_value, 'min', p_min, 'max', 1000000000000), p_hint);
  end if;
end
$$;

revoke all on function private.check_credits(bigint, text, text, bigint, text) from public;
comment on function private.check_credits(bigint, text, text, bigint, text) is
  'The range of credits a caller may name (p_min .. 10^12): raises p_key (22023) with {field, min, max}. Internal: called by definer RPCs.';

CREATE OR REPLACE FUNCTION public.grant_onboarding_credits(p_user_id uuid, p_amount bigint, p_expires_at timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_org_id uuid;
begin
  perform private.check_credits(p_amount, 'amount');
  select o.id into v_org_id from public.orgs o where o.personal_user_id = p_user_id;
  if v_org_id is null then
    perform private.fail('unknown_user', 'PT404', jsonb_build_object('user_id', p_user_id), 'no such user (or they have no personal org)');
  end if;
  perform private.lock_balance(v_org_id);
  return private.insert_grant(v_org_id, p_amount, 'onboarding', p_user_id::text, p_expires_at, '{}', 100, false);
end
$function$;

CREATE OR REPLACE FUNCTION public.set_auto_topup(p_enabled boolean, p_threshold bigint, p_amount bigint, p_monthly_cap bigint, p_org_id uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_org_id uuid := private.require_org_admin(p_org_id);
begin
  if p_enabled is null then
    perform private.fail('invalid_enabled', '22023', '{}', 'p_enabled is true or false');
  end if;
  perform private.check_credits(p_threshold, 'threshold', 'invalid_threshold');
  perform private.check_credits(p_amount, 'amount');
  perform private.check_credits(p_monthly_cap, 'monthly_cap', 'invalid_monthly_cap', p_amount, 'the monthly cap must allow at least one top-up');
  perform private.lock_balance(v_org_id);
  insert into public.credit_auto_topup_settings (org_id, enabled, threshold, amount, monthly_cap, updated_by)
  values (v_org_id, p_enabled, p_threshold, p_amount, p_monthly_cap, (select auth.uid()))
  on conflict (org_id) do update
  set enabled = excluded.enabled, threshold = excluded.threshold, amount = excluded.amount,
      monthly_cap = excluded.monthly_cap, updated_by = excluded.updated_by, updated_at = now();
  update public.credit_balances set auto_topup_threshold = case when p_enabled then p_threshold end where org_id = v_org_id;
  return public.get_auto_topup(v_org_id);
end
$function$;

CREATE OR REPLACE FUNCTION public.revoke_credits(p_org_id uuid, p_amount bigint, p_reason text, p_external_ref text, p_grant_id uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
begin
  perform private.check_credits(p_amount, 'amount');
  if p_reason is null or char_length(btrim(p_reason)) = 0 or char_length(p_reason) > 500 then
    perform private.fail('invalid_reason', '22023', jsonb_build_object('max_length', 500), 'say why the credits are taken back');
  end if;
  if p_external_ref is null or char_length(p_external_ref) not between 1 and 200 then
    perform private.fail('invalid_external_ref', '22023', jsonb_build_object('max_length', 200),
      'pass the reference that makes this revocation idempotent (a refund id, a case number)');
  end if;
  perform private.lock_balance(p_org_id);
  return private.revoke_credits(p_org_id, p_amount, p_reason, p_external_ref, p_grant_id, '{}');
end
$function$;

CREATE OR REPLACE FUNCTION public.apply_checkout_event(p_event_id text, p_event_type text, p_session_id text, p_org_id uuid, p_credits bigint, p_outcome text, p_payment_intent_id text DEFAULT NULL::text, p_amount bigint DEFAULT NULL::bigint, p_currency text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_payment public.stripe_payments;
  v_grant public.credit_grants;
  v_metadata jsonb;
  v_outcome text;
  v_exception jsonb;
  v_settled jsonb;
begin
  perform private.check_payment_event(p_event_id, p_event_type);
  if p_session_id is null or char_length(p_session_id) not between 1 and 200 then
    perform private.fail('invalid_external_ref', '22023', jsonb_build_object('max_length', 200), 'the checkout session id');
  end if;
  if p_outcome is null or p_outcome not in ('paid', 'unpaid', 'failed') then
    perform private.fail('invalid_outcome', '22023', jsonb_build_object('outcome', p_outcome), 'paid, unpaid or failed');
  end if;
  perform private.check_credits(p_credits, 'amount');
  if p_amount is not null and p_amount < 1 then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('payment_amount', p_amount, 'min', 1));
  end if;
  if p_currency is not null and p_currency !~ '^[A-Za-z]{3}$' then
    perform private.fail('invalid_currency', '22023', jsonb_build_object('currency', left(p_currency, 10)), 'an ISO 4217 code such as eur');
  end if;

  if p_payment_intent_id is not null then
    v_payment := private.lock_stripe_payment(p_payment_intent_id);
  end if;

  if p_org_id is null or not exists (select 1 from public.orgs o where o.id = p_org_id) then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'unknown_org',
      jsonb_build_object('session_id', p_session_id, 'credits', p_credits, 'outcome', p_outcome, 'payment_intent_id', p_payment_intent_id));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'unknown_org', 'exception_id', v_exception -> 'exception_id');
  end if;
  -- One checkout session pays for one org. Events of a session are serialised (a transaction
  -- lock on its id), so two events naming different orgs cannot both find it unclaimed.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('tollgate.checkout_session:' || p_session_id, 0));
  if exists (select 1 from public.credit_grants g
             where g.source = 'purchase' and g.external_ref = p_session_id and g.org_id <> p_org_id) then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'session_org_conflict',
      jsonb_build_object('session_id', p_session_id, 'granted_to', (select g.org_id from public.credit_grants g
        where g.source = 'purchase' and g.external_ref = p_session_id and g.org_id <> p_org_id limit 1)));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'session_org_conflict', 'exception_id', v_exception -> 'exception_id');
  end if;
  if v_payment.grant_id is not null and (v_payment.org_id <> p_org_id or v_payment.checkout_session_id is distinct from p_session_id) then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'payment_intent_conflict',
      jsonb_build_object('payment_intent_id', p_payment_intent_id, 'linked_org_id', v_payment.org_id, 'linked_session_id', v_payment.checkout_session_id));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'payment_intent_conflict', 'exception_id', v_exception -> 'exception_id');
  end if;

  perform private.lock_balance(p_org_id);
  select * into v_grant from public.credit_grants g
  where g.org_id = p_org_id and g.source = 'purchase' and g.external_ref = p_session_id
  for update;
  if found and v_grant.amount <> p_credits then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'idempotency_conflict',
      jsonb_build_object('session_id', p_session_id, 'granted', v_grant.amount, 'credits', p_credits));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'idempotency_conflict', 'exception_id', v_exception -> 'exception_id');
  end if;

  v_metadata := jsonb_strip_nulls(jsonb_build_object('stripe_event_id', p_event_id, 'checkout_session_id', p_session_id,
    'payment_intent_id', p_payment_intent_id));
  if v_grant.id is null then
    -- The first event of this session, whichever it is.
    perform private.insert_grant(p_org_id, p_credits, 'purchase', p_session_id, null, v_metadata, 100, p_outcome <> 'paid');
    if p_outcome = 'failed' then
      perform public.void_credit_grant(p_org_id, 'purchase', p_session_id);
    end if;
    v_outcome := case p_outcome when 'paid' then 'granted' when 'unpaid' then 'pending' else 'voided' end;
  elsif v_grant.status = 'pending' and p_outcome = 'paid' then
    perform public.activate_credit_grant(p_org_id, 'purchase', p_session_id);
    v_outcome := 'granted';
  elsif v_grant.status = 'pending' and p_outcome = 'failed' then
    perform public.void_credit_grant(p_org_id, 'purchase', p_session_id);
    v_outcome := 'voided';
  elsif v_grant.status = 'voided' and p_outcome = 'paid' then
    -- Paid wins: the money arrived after all. Credited now, exactly once.
    update public.credit_grants
    set status = 'active', remaining = amount, activated_at = now()
    where id = v_grant.id;
    perform private.apply_balance_change(p_org_id, 'grant', v_grant.amount, 0, null, v_grant.id,
      jsonb_build_object('source', 'purchase', 'external_ref', p_session_id, 'activated', true, 'after_failure', true));
    v_exception := private.record_contradiction(p_event_id, p_event_type, p_session_id, p_org_id, v_grant, p_outcome);
    v_outcome := 'granted';
  elsif v_grant.status in ('active', 'expired') and p_outcome = 'failed' then
    -- Paid wins: a failure reported after the success takes nothing back; someone should look.
    v_exception := private.record_contradiction(p_event_id, p_event_type, p_session_id, p_org_id, v_grant, p_outcome);
    v_outcome := 'unapplied';
  else
    -- Nothing new: a duplicate, or an event the grant has already moved past.
    v_outcome := 'replayed';
  end if;

  select * into v_grant from public.credit_grants g
  where g.org_id = p_org_id and g.source = 'purchase' and g.external_ref = p_session_id;
  if p_payment_intent_id is not null then
    update public.stripe_payments
    set org_id = p_org_id, grant_id = v_grant.id, checkout_session_id = p_session_id, credits = v_grant.amount,
        amount = coalesce(amount, p_amount), currency = coalesce(currency, lower(p_currency)), updated_at = now()
    where payment_intent_id = p_payment_intent_id
      and (org_id, grant_id, checkout_session_id, credits, amount, currency)
        is distinct from (p_org_id, v_grant.id, p_session_id, v_grant.amount, coalesce(amount, p_amount), coalesce(currency, lower(p_currency)));
    v_settled := private.settle_stripe_payment(p_payment_intent_id, p_event_id, p_event_type);
  end if;

  return jsonb_strip_nulls(jsonb_build_object(
    'outcome', v_outcome,
    'reason', case when v_outcome = 'unapplied' then v_exception ->> 'reason' end,
    'exception', coalesce(v_exception ->> 'reason', v_settled ->> 'exception'),
    'grant', private.grant_result(v_grant, v_outcome = 'replayed'),
    'payment', v_settled
  ));
end
$function$;
