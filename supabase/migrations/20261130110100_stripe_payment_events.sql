-- Stripe events that converge whatever their order and number of deliveries, refunds and
-- disputes, and a durable record of every event that cannot be applied.
--
-- Stripe does not order events and delivers each at least once. Each entry point below is
-- order-independent: it merges what the event says into the state of its checkout session
-- (the purchase grant) or payment intent (stripe_payments) and derives credits from the merged
-- state, so any order and any number of deliveries end in the same place:
--   apply_checkout_event  checkout.session.completed / async_payment_succeeded / _failed
--   apply_charge_event    charge.refunded, charge.dispute.*, and a top-up's payment_intent.succeeded
-- An event that cannot be applied (unknown org, bad metadata, contradicting outcomes, credits
-- already spent when a refund arrives) is recorded in payment_exceptions, once per event id, in
-- the same transaction; reconcile_credits() lists the open ones until someone resolves them.
--
-- Lock order: the payment intent's stripe_payments row first (these functions are the only
-- ones that lock it), then the org's balance row, then grants — the core's order below it.

-- Exceptions ------------------------------------------------------------------------------------

create table public.payment_exceptions (
  id bigint generated always as identity primary key,
  -- One record per provider event: a duplicate delivery records nothing new.
  event_id text not null unique check (char_length(event_id) between 1 and 255),
  event_type text not null check (char_length(event_type) between 1 and 100),
  -- The checkout session or payment intent the event is about.
  object_id text check (char_length(object_id) <= 255),
  -- The org the event names, when it names a well-formed one (it may not exist: unknown_org).
  org_id uuid,
  reason text not null check (reason ~ '^[a-z][a-z0-9_]{0,63}$'),
  detail jsonb not null default '{}' check (jsonb_typeof(detail) = 'object'),
  created_at timestamptz not null default now(),
  resolved_at timestamptz,
  resolution text check (char_length(resolution) between 1 and 1000),
  check ((resolved_at is null) = (resolution is null))
);

create index payment_exceptions_open_idx on public.payment_exceptions (id) where resolved_at is null;
create index payment_exceptions_org_idx on public.payment_exceptions (org_id) where org_id is not null;
create index payment_exceptions_object_idx on public.payment_exceptions (object_id, reason);

comment on table public.payment_exceptions is
  'Payment events that could not be applied (or left a shortfall), one per event id; reconcile_credits() lists the open ones. service_role only.';

-- Payments ---------------------------------------------------------------------------------------

create table public.stripe_payments (
  payment_intent_id text primary key check (payment_intent_id ~ '^pi_[A-Za-z0-9_]{1,250}$'),
  -- The grant these credits came from (a checkout purchase or an auto top-up), once known.
  -- Refund and dispute events can arrive before it: they wait here until it is linked.
  org_id uuid references public.orgs (id),
  grant_id uuid references public.credit_grants (id),
  checkout_session_id text check (char_length(checkout_session_id) between 1 and 200),
  credits bigint check (credits > 0),
  -- What was charged, in the currency's minor unit (cents).
  amount bigint check (amount > 0),
  currency text check (currency ~ '^[a-z]{3}$'),
  -- Cumulative figures, merged monotonically (the highest seen wins, whatever the order).
  amount_refunded bigint not null default 0 check (amount_refunded >= 0),
  -- {"<dispute id>": {"status": ..., "amount": ...}}: each dispute at its furthest status.
  disputes jsonb not null default '{}' check (jsonb_typeof(disputes) = 'object'),
  -- Credits to take back now: floor(credits × min(amount, refunded + disputed) / amount).
  credits_target bigint not null default 0 check (credits_target >= 0),
  -- Credits taken back so far (net of reinstatements); the rest of the target was already spent.
  credits_revoked bigint not null default 0 check (credits_revoked >= 0),
  shortfall bigint generated always as (credits_target - credits_revoked) stored,
  -- Revocations and reinstatements made so far; names the next one's external_ref.
  adjustments integer not null default 0 check (adjustments >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (credits_revoked <= credits_target),
  check ((org_id is null) = (grant_id is null))
);

create unique index stripe_payments_grant_idx on public.stripe_payments (grant_id) where grant_id is not null;
create index stripe_payments_org_idx on public.stripe_payments (org_id);

comment on table public.stripe_payments is
  'One row per Stripe payment intent that paid for credits (or was refunded/disputed): the merged refund and dispute state and the credits taken back. service_role only.';

-- An auto top-up's grant is found by its payment intent (external_ref) when a refund arrives.
create index credit_grants_auto_top_up_ref_idx on public.credit_grants (external_ref) where source = 'auto_top_up';

-- RLS: provider records, for trusted servers only -------------------------------------------------

alter table public.payment_exceptions enable row level security;
alter table public.stripe_payments enable row level security;
revoke all on public.payment_exceptions, public.stripe_payments from anon, authenticated, service_role;
grant select on public.payment_exceptions, public.stripe_payments to service_role;

create policy payment_exceptions_no_user_access on public.payment_exceptions as restrictive
for all to anon, authenticated
using (false);

create policy stripe_payments_no_user_access on public.stripe_payments as restrictive
for all to anon, authenticated
using (false);

-- Recording exceptions ------------------------------------------------------------------------------

-- Records that an event could not be applied, once per event id (a duplicate delivery, or a
-- concurrent one, returns the first record with replayed true). Internal: the event functions
-- below record in their own transaction.
create function private.record_payment_exception(
  p_event_id text,
  p_event_type text,
  p_object_id text,
  p_org_id uuid,
  p_reason text,
  p_detail jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_exception public.payment_exceptions;
  v_replayed boolean := false;
begin
  insert into public.payment_exceptions (event_id, event_type, object_id, org_id, reason, detail)
  values (p_event_id, p_event_type, left(p_object_id, 255), p_org_id, p_reason, coalesce(p_detail, '{}'))
  on conflict (event_id) do nothing
  returning * into v_exception;
  if v_exception.id is null then
    select * into v_exception from public.payment_exceptions e where e.event_id = p_event_id;
    v_replayed := true;
  end if;
  return jsonb_build_object('exception_id', v_exception.id, 'reason', v_exception.reason, 'replayed', v_replayed);
end
$$;

revoke all on function private.record_payment_exception(text, text, text, uuid, text, jsonb) from public;
comment on function private.record_payment_exception(text, text, text, uuid, text, jsonb) is
  'Records an event that could not be applied, once per event id. Internal.';

-- Validates a provider event's id and type (every event entry point takes them).
create function private.check_payment_event(p_event_id text, p_event_type text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_event_id is null or char_length(p_event_id) not between 1 and 255
     or p_event_type is null or char_length(p_event_type) not between 1 and 100 then
    perform private.fail('invalid_event', '22023', jsonb_build_object('max_id_length', 255, 'max_type_length', 100),
      'pass the provider event''s id and type');
  end if;
end
$$;

revoke all on function private.check_payment_event(text, text) from public;
comment on function private.check_payment_event(text, text) is 'Validates a payment event''s id and type. Internal.';

-- The webhook records an event it cannot even parse into a purchase (malformed org id, missing
-- or invalid credits), or one an entry point refused. Returns the record; 200 to Stripe only
-- after this has committed.
create function public.record_payment_exception(
  p_event_id text,
  p_event_type text,
  p_object_id text,
  p_reason text,
  p_org_id uuid default null,
  p_detail jsonb default '{}'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_detail jsonb := private.check_metadata(p_detail, 'invalid_detail');
begin
  perform private.check_payment_event(p_event_id, p_event_type);
  if p_reason is null or p_reason !~ '^[a-z][a-z0-9_]{0,63}$' then
    perform private.fail('invalid_reason', '22023', jsonb_build_object('reason', p_reason), 'a snake_case key such as invalid_credits');
  end if;
  if p_object_id is not null and char_length(p_object_id) > 255 then
    perform private.fail('invalid_object_id', '22023', jsonb_build_object('max_length', 255));
  end if;
  return private.record_payment_exception(p_event_id, p_event_type, p_object_id, p_org_id, p_reason, v_detail);
end
$$;

revoke all on function public.record_payment_exception(text, text, text, text, uuid, jsonb) from public;
grant execute on function public.record_payment_exception(text, text, text, text, uuid, jsonb) to service_role;
comment on function public.record_payment_exception(text, text, text, text, uuid, jsonb) is
  'Server RPC (stripe-webhook): record an event that cannot be applied, once per event id → {exception_id, reason, replayed}. Errors: invalid_event / invalid_reason / invalid_object_id / invalid_detail 22023.';

-- An operator closes an exception once dealt with (credits granted by hand, payment refunded...);
-- reconcile_credits() stops listing it. Resolving twice keeps the first resolution.
create function public.resolve_payment_exception(p_id bigint, p_resolution text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_exception public.payment_exceptions;
  v_replayed boolean := false;
begin
  if p_resolution is null or char_length(btrim(p_resolution)) = 0 or char_length(p_resolution) > 1000 then
    perform private.fail('invalid_resolution', '22023', jsonb_build_object('max_length', 1000), 'say what was done about it');
  end if;
  update public.payment_exceptions
  set resolved_at = now(), resolution = p_resolution
  where id = p_id and resolved_at is null
  returning * into v_exception;
  if v_exception.id is null then
    select * into v_exception from public.payment_exceptions e where e.id = p_id;
    if not found then
      perform private.fail('unknown_exception', 'PT404', jsonb_build_object('id', p_id));
    end if;
    v_replayed := true;
  end if;
  return jsonb_build_object('id', v_exception.id, 'event_id', v_exception.event_id, 'reason', v_exception.reason,
    'resolved_at', v_exception.resolved_at, 'resolution', v_exception.resolution, 'replayed', v_replayed);
end
$$;

revoke all on function public.resolve_payment_exception(bigint, text) from public;
grant execute on function public.resolve_payment_exception(bigint, text) to service_role;
comment on function public.resolve_payment_exception(bigint, text) is
  'Server RPC: mark a payment exception dealt with (idempotent). Errors: invalid_resolution 22023, unknown_exception PT404.';

-- Disputes ------------------------------------------------------------------------------------------

-- How far a dispute has got: a later status never goes back to an earlier one, so the merge of
-- any set of dispute events is the same whatever their order. Null: a status we do not know.
create function private.stripe_dispute_rank(p_status text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case p_status
    when 'warning_needs_response' then 1
    when 'warning_under_review' then 2
    when 'needs_response' then 3
    when 'under_review' then 4
    when 'warning_closed' then 10
    when 'prevented' then 10
    when 'charge_refunded' then 10
    when 'won' then 11
    when 'lost' then 12
  end
$$;

revoke all on function private.stripe_dispute_rank(text) from public;
comment on function private.stripe_dispute_rank(text) is 'Order of Stripe dispute statuses (null: unknown). Internal.';

-- The disputed amount whose funds are withdrawn: open chargebacks and lost ones. Inquiries
-- (warning_*), prevented disputes, won ones, and ones closed by a refund (counted as the refund)
-- take nothing.
create function private.stripe_disputed_amount(p_disputes jsonb)
returns bigint
language sql
immutable
set search_path = ''
as $$
  select coalesce(sum((d.value ->> 'amount')::bigint), 0)::bigint
  from jsonb_each(p_disputes) d
  where d.value ->> 'status' in ('needs_response', 'under_review', 'lost')
$$;

revoke all on function private.stripe_disputed_amount(jsonb) from public;
comment on function private.stripe_disputed_amount(jsonb) is 'Disputed amount with funds withdrawn. Internal.';

-- Settlement ----------------------------------------------------------------------------------------

-- Brings a payment's credits in line with its merged refund and dispute figures: the target is
-- floor(credits × min(amount, refunded + disputed) / amount), rounded down so a partial reversal
-- never takes more than its share (a full one takes everything). Moves only the difference
-- between target and what was taken: revoke_credits from the purchase grant (each step its own
-- external_ref 'stripe:<payment intent>:<n>'), or a reinstatement when the target went down (a
-- dispute won). What cannot be taken (already spent) is recorded as a revocation_shortfall
-- exception for this event. Links an auto top-up's grant on the way. The caller holds the
-- payment row's lock; the balance lock is taken here, after it.
create function private.settle_stripe_payment(p_payment_intent_id text, p_event_id text, p_event_type text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_payment public.stripe_payments;
  v_grant public.credit_grants;
  v_target bigint;
  v_revoked bigint;
  v_adjustments integer;
  v_revocation jsonb;
  v_metadata jsonb;
  v_exception jsonb;
begin
  select * into v_payment from public.stripe_payments p where p.payment_intent_id = p_payment_intent_id for update;
  if v_payment.grant_id is null then
    -- An auto top-up: its grant carries the payment intent as external_ref.
    select * into v_grant from public.credit_grants g
    where g.source = 'auto_top_up' and g.external_ref = p_payment_intent_id
    order by g.created_at
    limit 1;
    if found then
      update public.stripe_payments
      set org_id = v_grant.org_id, grant_id = v_grant.id, credits = v_grant.amount, updated_at = now()
      where payment_intent_id = p_payment_intent_id
      returning * into v_payment;
    end if;
  end if;
  if v_payment.grant_id is null or v_payment.amount is null then
    return jsonb_build_object('payment_intent_id', p_payment_intent_id, 'settled', false,
      'waiting_for', case when v_payment.grant_id is null then 'purchase' else 'amount' end);
  end if;

  perform private.lock_balance(v_payment.org_id);
  perform private.expire_due_grants(v_payment.org_id);
  select * into v_grant from public.credit_grants g where g.id = v_payment.grant_id for update;
  if v_grant.status in ('pending', 'voided') then
    -- Never credited: there is nothing to take back (yet).
    return jsonb_build_object('payment_intent_id', p_payment_intent_id, 'settled', false, 'waiting_for', 'payment');
  end if;

  v_target := floor(v_payment.credits::numeric
    * least(v_payment.amount, v_payment.amount_refunded + private.stripe_disputed_amount(v_payment.disputes))
    / v_payment.amount)::bigint;
  v_revoked := v_payment.credits_revoked;
  v_adjustments := v_payment.adjustments;
  v_metadata := jsonb_build_object('payment_intent_id', p_payment_intent_id, 'stripe_event_id', p_event_id, 'stripe_event_type', p_event_type);

  -- Take more when the target rose, or when credits came back to the grant (a refunded charge)
  -- that can cover an earlier shortfall; a duplicate delivery otherwise changes nothing.
  if v_target > v_revoked and (v_target > v_payment.credits_target or (v_grant.status = 'active' and v_grant.remaining > 0)) then
    v_adjustments := v_adjustments + 1;
    v_revocation := private.revoke_credits(v_payment.org_id, v_target - v_revoked,
      format('Stripe payment %s refunded or disputed', p_payment_intent_id),
      format('stripe:%s:%s', p_payment_intent_id, v_adjustments), v_payment.grant_id, v_metadata);
    v_revoked := v_revoked + (v_revocation ->> 'revoked')::bigint;
    if v_revoked < v_target then
      v_exception := private.record_payment_exception(p_event_id, p_event_type, p_payment_intent_id, v_payment.org_id, 'revocation_shortfall',
        jsonb_build_object('payment_intent_id', p_payment_intent_id, 'grant_id', v_payment.grant_id,
          'credits_target', v_target, 'credits_revoked', v_revoked, 'shortfall', v_target - v_revoked, 'grant_status', v_grant.status));
    end if;
  elsif v_target < v_revoked then
    v_adjustments := v_adjustments + 1;
    perform private.reinstate_revoked(v_payment.org_id, v_payment.grant_id, v_revoked - v_target,
      v_metadata || jsonb_build_object('external_ref', format('stripe:%s:%s', p_payment_intent_id, v_adjustments),
        'reason', format('Stripe payment %s: reversal withdrawn', p_payment_intent_id)));
    v_revoked := v_target;
  end if;

  update public.stripe_payments
  set credits_target = v_target, credits_revoked = v_revoked, adjustments = v_adjustments, updated_at = now()
  where payment_intent_id = p_payment_intent_id
    and (credits_target, credits_revoked, adjustments) is distinct from (v_target, v_revoked, v_adjustments);

  return jsonb_strip_nulls(jsonb_build_object('payment_intent_id', p_payment_intent_id, 'settled', true,
    'credits_target', v_target, 'credits_revoked', v_revoked, 'shortfall', v_target - v_revoked,
    'exception', v_exception ->> 'reason'));
end
$$;

revoke all on function private.settle_stripe_payment(text, text, text) from public;
comment on function private.settle_stripe_payment(text, text, text) is
  'Takes back (or gives back) a payment''s credits to match its merged refund and dispute figures. Payment row locked by the caller. Internal.';

-- Locks (creating it if new) a payment intent's row: the first lock of every payment event.
create function private.lock_stripe_payment(p_payment_intent_id text)
returns public.stripe_payments
language plpgsql
set search_path = ''
as $$
declare
  v_payment public.stripe_payments;
begin
  if p_payment_intent_id is null or p_payment_intent_id !~ '^pi_[A-Za-z0-9_]{1,250}$' then
    perform private.fail('invalid_payment_intent', '22023', jsonb_build_object('payment_intent_id', left(p_payment_intent_id, 100)),
      'a Stripe payment intent id (pi_...)');
  end if;
  insert into public.stripe_payments (payment_intent_id) values (p_payment_intent_id) on conflict do nothing;
  select * into v_payment from public.stripe_payments p where p.payment_intent_id = p_payment_intent_id for update;
  return v_payment;
end
$$;

revoke all on function private.lock_stripe_payment(text) from public;
comment on function private.lock_stripe_payment(text) is 'Creates if needed and locks a payment intent''s row (the first lock of a payment event). Internal.';

-- A session reported both paid and failed (Stripe sends one or the other): recorded once per
-- session, whichever order the two arrive in and however often, so the record converges too.
-- The balance lock (held by the caller) serialises the session's events.
create function private.record_contradiction(
  p_event_id text,
  p_event_type text,
  p_session_id text,
  p_org_id uuid,
  p_grant public.credit_grants,
  p_outcome text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_id bigint;
begin
  select e.id into v_id from public.payment_exceptions e where e.object_id = p_session_id and e.reason = 'contradictory_outcomes';
  if v_id is not null then
    return jsonb_build_object('exception_id', v_id, 'reason', 'contradictory_outcomes', 'replayed', true);
  end if;
  return private.record_payment_exception(p_event_id, p_event_type, p_session_id, p_org_id, 'contradictory_outcomes',
    jsonb_build_object('session_id', p_session_id, 'grant_id', p_grant.id, 'credits', p_grant.amount,
      'grant_status', p_grant.status, 'outcome', p_outcome,
      'kept', 'paid: the credits stay (or are granted); check the payment in Stripe'));
end
$$;

revoke all on function private.record_contradiction(text, text, text, uuid, public.credit_grants, text) from public;
comment on function private.record_contradiction(text, text, text, uuid, public.credit_grants, text) is
  'Records, once per session, that a checkout session was reported both paid and failed. Internal.';

-- Checkout sessions -----------------------------------------------------------------------------------

-- One checkout session event, in any order: p_outcome is what the event says about the
-- payment — 'paid' (completed with payment_status paid / no_payment_required, or
-- async_payment_succeeded), 'unpaid' (completed, a delayed method still processing) or
-- 'failed' (async_payment_failed). The session's purchase grant (source 'purchase', the session
-- id as external_ref) moves only forward: none → pending (unpaid) / active (paid) / voided
-- (failed); pending → active / voided. Paid wins: a succeeded payment after a failed one
-- activates the grant, a failure after a success takes nothing back; both contradictions are
-- recorded. An unknown org, or a session granted with another credit amount, is recorded and
-- changes nothing. The payment intent is linked to the grant, and refunds or disputes that
-- arrived first are applied.
-- A checkout session pays for one org, the first its events name: an event naming another org
-- is recorded (session_org_conflict). The index finds a session's grant without its org.
create index credit_grants_purchase_session_idx on public.credit_grants (external_ref) where source = 'purchase';

create function public.apply_checkout_event(
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

revoke all on function public.apply_checkout_event(text, text, text, uuid, bigint, text, text, bigint, text) from public;
grant execute on function public.apply_checkout_event(text, text, text, uuid, bigint, text, text, bigint, text) to service_role;
comment on function public.apply_checkout_event(text, text, text, uuid, bigint, text, text, bigint, text) is
  'Server RPC (stripe-webhook): apply one checkout session event in any order → {outcome: granted|pending|voided|replayed|unapplied, reason?, exception?, grant, payment?}. Errors: invalid_event / invalid_external_ref / invalid_outcome / invalid_amount / invalid_currency / invalid_payment_intent 22023.';

-- Charges: refunds, disputes, and the amount of a payment ------------------------------------------------

-- One charge-level event for a payment intent, in any order: charge.refunded (p_amount, the
-- cumulative p_amount_refunded), charge.dispute.* (p_dispute_id, p_dispute_status,
-- p_dispute_amount), or a top-up's payment_intent.succeeded (p_amount: links the top-up's grant).
-- Merges the figures monotonically (highest refund total, furthest dispute status), then
-- settles the payment's credits. Events that arrive before their purchase wait in
-- stripe_payments and are applied when the purchase is linked. A dispute status we do not know
-- is recorded, not guessed.
create function public.apply_charge_event(
  p_event_id text,
  p_event_type text,
  p_payment_intent_id text,
  p_amount bigint default null,
  p_amount_refunded bigint default null,
  p_dispute_id text default null,
  p_dispute_status text default null,
  p_dispute_amount bigint default null,
  p_currency text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.stripe_payments;
  v_known jsonb;
  v_disputes jsonb;
  v_exception jsonb;
  v_settled jsonb;
begin
  perform private.check_payment_event(p_event_id, p_event_type);
  if (p_amount is not null and p_amount < 1) or (p_amount_refunded is not null and p_amount_refunded < 0) then
    perform private.fail('invalid_amount', '22023', jsonb_build_object('amount', p_amount, 'amount_refunded', p_amount_refunded));
  end if;
  if p_currency is not null and p_currency !~ '^[A-Za-z]{3}$' then
    perform private.fail('invalid_currency', '22023', jsonb_build_object('currency', left(p_currency, 10)), 'an ISO 4217 code such as eur');
  end if;
  if (p_dispute_id is null) <> (p_dispute_status is null) or (p_dispute_id is null) <> (p_dispute_amount is null)
     or char_length(p_dispute_id) not between 1 and 255 or p_dispute_amount < 0 then
    perform private.fail('invalid_dispute', '22023', '{}', 'a dispute needs its id, status and amount');
  end if;

  v_payment := private.lock_stripe_payment(p_payment_intent_id);

  if p_dispute_id is not null and private.stripe_dispute_rank(p_dispute_status) is null then
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_payment_intent_id, v_payment.org_id, 'unknown_dispute_status',
      jsonb_build_object('dispute_id', p_dispute_id, 'status', left(p_dispute_status, 100), 'amount', p_dispute_amount));
    return jsonb_build_object('outcome', 'unapplied', 'reason', 'unknown_dispute_status', 'exception_id', v_exception -> 'exception_id');
  end if;
  if p_amount is not null and v_payment.amount is not null and p_amount <> v_payment.amount then
    -- The proportion of a refund is computed against one amount: the first one known.
    v_exception := private.record_payment_exception(p_event_id, p_event_type, p_payment_intent_id, v_payment.org_id, 'amount_mismatch',
      jsonb_build_object('known_amount', v_payment.amount, 'event_amount', p_amount));
  end if;

  v_disputes := v_payment.disputes;
  if p_dispute_id is not null then
    v_known := v_disputes -> p_dispute_id;
    if v_known is null
       or private.stripe_dispute_rank(p_dispute_status) > private.stripe_dispute_rank(v_known ->> 'status')
       or (p_dispute_status = v_known ->> 'status' and p_dispute_amount > (v_known ->> 'amount')::bigint) then
      v_disputes := v_disputes || jsonb_build_object(p_dispute_id, jsonb_build_object('status', p_dispute_status,
        'amount', greatest(p_dispute_amount, coalesce((v_known ->> 'amount')::bigint, 0))));
    end if;
  end if;

  update public.stripe_payments
  set amount = coalesce(amount, p_amount),
      currency = coalesce(currency, lower(p_currency)),
      amount_refunded = greatest(amount_refunded, coalesce(p_amount_refunded, 0)),
      disputes = v_disputes,
      updated_at = now()
  where payment_intent_id = p_payment_intent_id
    and (amount, currency, amount_refunded, disputes)
      is distinct from (coalesce(amount, p_amount), coalesce(currency, lower(p_currency)), greatest(amount_refunded, coalesce(p_amount_refunded, 0)), v_disputes);

  v_settled := private.settle_stripe_payment(p_payment_intent_id, p_event_id, p_event_type);
  return jsonb_strip_nulls(jsonb_build_object(
    'outcome', case when (v_settled ->> 'settled')::boolean then 'settled' else 'waiting' end,
    'exception', coalesce(v_exception ->> 'reason', v_settled ->> 'exception'),
    'payment', v_settled
  ));
end
$$;

revoke all on function public.apply_charge_event(text, text, text, bigint, bigint, text, text, bigint, text) from public;
grant execute on function public.apply_charge_event(text, text, text, bigint, bigint, text, text, bigint, text) to service_role;
comment on function public.apply_charge_event(text, text, text, bigint, bigint, text, text, bigint, text) is
  'Server RPC (stripe-webhook): merge one refund / dispute / payment event into its payment intent, in any order, and take back (or give back) credits to match → {outcome: settled|waiting|unapplied, exception?, payment}. Errors: invalid_event / invalid_amount / invalid_currency / invalid_dispute / invalid_payment_intent 22023.';
