-- A checkout session pays for one org.
--
-- Purchases were idempotent per (org, session): the same session id arriving with another org's
-- metadata (a session whose metadata the app's server changed, or a crafted but Stripe-signed
-- event) granted its credits a second time, to the other org. Now the first org that a session's
-- events name keeps it; an event naming another org is recorded as a payment exception
-- (`session_org_conflict`) and grants nothing. The events of one session are serialised by a
-- transaction-level advisory lock on its id, and an index finds a session's grant without the org.

create index credit_grants_purchase_session_idx on public.credit_grants (external_ref) where source = 'purchase';

create or replace function public.apply_checkout_event(
  p_event_id text,
  p_event_type text,
  p_session_id text,
  p_org_id uuid,
  p_credits bigint,
  p_outcome text,
  p_payment_intent_id text default null,
  p_amount bigint default null,
  p_currency text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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
  if p_credits is null or p_credits not between 1 and 1000000000000 then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('amount', p_credits, 'min', 1, 'max', 1000000000000));
  end if;
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
$$;
