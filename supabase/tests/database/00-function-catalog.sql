-- The function catalog: who may call what. This file is the one list of every function in
-- `public` and `private`, whether it is SECURITY DEFINER, and which API roles may EXECUTE it.
-- A new function that is not listed here, or a grant that drifts, fails this test.
begin;
\ir helpers/setup.psql
select plan(3);

create temporary table expected_functions (signature text primary key, security_definer boolean, callers text[]) on commit drop;
insert into expected_functions values
  -- signature                                                                                   definer  roles with EXECUTE (anon, authenticated, service_role, public)
  -- orgs (20261121090100_orgs.sql)
  ('private.create_personal_org()',                                                              true,    '{}'),
  ('private.readable_org_ids()',                                                                 true,    '{authenticated}'),
  ('private.manageable_org_ids()',                                                               true,    '{authenticated}'),
  ('public.list_my_orgs()',                                                                      false,   '{authenticated}'),
  -- credit tables: triggers (20261121100000_credit_tables.sql)
  ('private.forbid_ledger_change()',                                                             false,   '{}'),
  ('private.create_credit_balance()',                                                            true,    '{}'),
  ('private.sync_org_credit_flag()',                                                             true,    '{}'),
  -- credit core (20261121100100_credit_core.sql)
  ('private.fail(p_key text, p_errcode text, p_detail jsonb, p_hint text)',                      false,   '{authenticated,service_role}'),
  ('private.caller_org(p_org_id uuid)',                                                          true,    '{authenticated}'),
  ('private.check_metadata(p_metadata jsonb, p_key text)',                                       false,   '{authenticated}'),
  ('private.check_credits(p_value bigint, p_field text, p_key text, p_min bigint, p_hint text)', false, '{}'),
  ('private.check_request_id(p_request_id text)',                                                false,   '{}'),
  ('private.lock_balance(p_org_id uuid)',                                                        false,   '{}'),
  ('private.apply_balance_change(p_org_id uuid, p_kind text, p_amount bigint, p_held_delta bigint, p_request_id text, p_grant_id uuid, p_metadata jsonb, p_overage_delta bigint)',
                                                                                                 false,   '{}'),
  ('private.expire_due_grants(p_org_id uuid)',                                                   false,   '{}'),
  ('private.expire_grants(p_org_id uuid, p_grant_ids uuid[], OUT grants integer, OUT credits bigint)', false, '{}'),
  ('private.lock_and_settle(p_org_id uuid)',                                                    false,   '{}'),
  ('private.burn_grants(p_org_id uuid, p_amount bigint, p_operation text)',                      false,   '{}'),
  ('private.return_to_grants(p_org_id uuid, p_allocations jsonb, p_amount bigint, OUT allocations jsonb, OUT returned_live bigint, OUT returned_expired bigint, OUT returned_debt bigint, OUT expired_operations text[])',
                                                                                                 false,   '{}'),
  -- credit RPCs (20261121100200_credit_rpcs.sql)
  ('private.request_result(p_request credit_requests, p_replayed boolean)',                      false,   '{}'),
  ('private.charge(p_org_id uuid, p_user_id uuid, p_kind text, p_operation text, p_request_id text, p_quantity integer, p_ttl_seconds integer, p_metadata jsonb)',
                                                                                                 false,   '{}'),
  ('private.settle_request(p_org_id uuid, p_request_id text, p_status text, p_charged bigint, p_allocations jsonb, p_balance_after bigint, p_result jsonb, p_success boolean, p_backend_error boolean, p_refund_reason text)',
                                                                                                 false,   '{}'),
  ('private.release_hold(p_request credit_requests, p_amount bigint, p_reason text, OUT allocations jsonb, OUT balance_after bigint)',
                                                                                                 false,   '{}'),
  ('private.lock_request(p_org_id uuid, p_request_id text)',                                     false,   '{}'),
  ('private.grant_result(p_grant credit_grants, p_replayed boolean)',                            false,   '{}'),
  ('private.lock_grant(p_org_id uuid, p_source text, p_external_ref text)',                     false,   '{}'),
  ('private.insert_grant(p_org_id uuid, p_amount bigint, p_source text, p_external_ref text, p_expires_at timestamp with time zone, p_metadata jsonb, p_priority integer, p_pending boolean, p_effective_at timestamp with time zone, p_operations text[])',
                                                                                                 false,   '{}'),
  ('public.consume_credits(p_operation text, p_request_id text, p_quantity integer, p_org_id uuid, p_metadata jsonb)',
                                                                                                 true,    '{authenticated}'),
  ('public.get_credit_balance(p_org_id uuid)',                                                   false,   '{authenticated}'),
  ('public.get_usage_stats(p_days integer, p_org_id uuid)',                                      false,   '{authenticated}'),
  ('public.grant_credits(p_org_id uuid, p_amount bigint, p_source text, p_external_ref text, p_expires_at timestamp with time zone, p_metadata jsonb, p_priority integer, p_pending boolean, p_effective_at timestamp with time zone, p_operations text[])',
                                                                                                 true,    '{service_role}'),
  ('public.activate_credit_grant(p_org_id uuid, p_source text, p_external_ref text)',            true,    '{service_role}'),
  ('public.void_credit_grant(p_org_id uuid, p_source text, p_external_ref text)',                true,    '{service_role}'),
  ('public.grant_onboarding_credits(p_user_id uuid, p_amount bigint, p_expires_at timestamp with time zone)',
                                                                                                 true,    '{service_role}'),
  ('public.reserve_credits(p_org_id uuid, p_user_id uuid, p_operation text, p_request_id text, p_quantity integer, p_ttl_seconds integer, p_metadata jsonb)',
                                                                                                 true,    '{service_role}'),
  ('public.capture_credits(p_org_id uuid, p_request_id text, p_quantity integer, p_result jsonb)',
                                                                                                 true,    '{service_role}'),
  ('public.release_credits(p_org_id uuid, p_request_id text, p_backend_error boolean, p_result jsonb)',
                                                                                                 true,    '{service_role}'),
  ('public.refund_credits(p_org_id uuid, p_request_id text, p_reason text)',                     true,    '{service_role}'),
  -- maintenance, scheduled by pg_cron (20261121100300_credit_maintenance.sql)
  ('public.expire_credit_grants(p_batch_size integer)',                                          true,    '{service_role}'),
  ('public.expire_stale_holds(p_batch_size integer)',                                            true,    '{service_role}'),
  ('public.refresh_orgs_has_usage_credits(p_batch_size integer)',                                true,    '{service_role}'),
  ('public.reconcile_credits()',                                                                 true,    '{service_role}'),
  -- workflows (20261121100400_workflows.sql)
  ('public.create_workflow(p_name text, p_description text, p_specification jsonb, p_priority integer, p_request_id text, p_org_id uuid)',
                                                                                                 true,    '{authenticated}'),
  ('public.execute_workflow(p_workflow_id uuid, p_input jsonb, p_request_id text)',              true,    '{authenticated}'),
  -- auto top-up (20261121120100_auto_top_up.sql)
  ('private.queue_auto_topup()',                                                                 true,    '{}'),
  ('private.require_org_admin(p_org_id uuid)',                                                   true,    '{}'),
  ('public.get_auto_topup(p_org_id uuid)',                                                       true,    '{authenticated}'),
  ('public.set_auto_topup(p_enabled boolean, p_threshold bigint, p_amount bigint, p_monthly_cap bigint, p_org_id uuid)',
                                                                                                 true,    '{authenticated}'),
  ('public.set_org_billing(p_org_id uuid, p_stripe_customer_id text, p_stripe_payment_method_id text)',
                                                                                                 true,    '{service_role}'),
  ('public.claim_topup_requests(p_limit integer)',                                               true,    '{service_role}'),
  ('public.mark_topup_request(p_id uuid, p_status text, p_payment_intent_id text, p_error text)',
                                                                                                 true,    '{service_role}'),
  ('public.complete_topup_request(p_id uuid, p_payment_intent_id text, p_succeeded boolean, p_error text)',
                                                                                                 true,    '{service_role}'),
  -- low-balance alerts (20261121120200_low_balance_alerts.sql)
  ('private.alert_level(p_grant_amount bigint, p_threshold smallint)',                           false,   '{}'),
  ('private.record_low_balance_alerts()',                                                        true,    '{}'),
  ('private.set_alert_reference()',                                                              true,    '{}'),
  ('public.set_alert_webhook(p_url text, p_org_id uuid)',                                        true,    '{authenticated}'),
  ('public.claim_credit_alerts(p_limit integer)',                                                true,    '{service_role}'),
  ('public.record_credit_alert_delivery(p_id uuid, p_delivered boolean, p_status_code integer, p_error text)',
                                                                                                 true,    '{service_role}'),
  -- outbound URL rule (20261130130000_outbound_url_rule.sql)
  ('private.whatwg_ipv4(p_host text, OUT ends_in_number boolean, OUT address inet)',             false,   '{}'),
  ('private.outbound_address_allowed(p_address inet)',                                           false,   '{}'),
  ('private.parse_outbound_url(p_url text, OUT scheme text, OUT host text, OUT address inet, OUT port integer, OUT explicit_port boolean, OUT origin text)',
                                                                                                 false,   '{}'),
  ('private.outbound_origin(p_entry text)',                                                      false,   '{}'),
  ('private.outbound_url_refusal(p_url text, p_allow_local_http boolean, p_private_origins text[])',
                                                                                                 false,   '{}'),
  ('private.check_outbound_url(p_url text, p_purpose text)',                                     false,   '{}'),
  ('private.alert_error_class(p_error text)',                                                    false,   '{}'),
  -- meter backends through an RPC (20261130130100_set_meter_backend.sql)
  ('public.set_meter_backend(p_operation text, p_url text, p_timeout_ms integer, p_enabled boolean)',
                                                                                                 true,    '{service_role}'),
  -- plugin channel pins (20261130150000_plugin_channel_pins.sql)
  ('public.pin_device_channel(p_app_id text, p_device_id text, p_channel text)',                true,    '{authenticated}'),
  -- replica heartbeat, beaten by pg_cron (20261130150100_plugin_read_heartbeat.sql)
  ('private.beat_replica_heartbeat()',                                                           false,   '{}'),
  -- revocations (20261130110000_credit_revocations.sql)
  ('private.revocation_result(p_revocation credit_revocations, p_replayed boolean)',            false,   '{}'),
  ('private.revoke_credits(p_org_id uuid, p_amount bigint, p_reason text, p_external_ref text, p_grant_id uuid, p_metadata jsonb)',
                                                                                                 false,   '{}'),
  ('private.reinstate_revoked(p_org_id uuid, p_grant_id uuid, p_amount bigint, p_metadata jsonb)',
                                                                                                 false,   '{}'),
  ('public.revoke_credits(p_org_id uuid, p_amount bigint, p_reason text, p_external_ref text, p_grant_id uuid)',
                                                                                                 true,    '{service_role}'),
  -- Stripe payment events (20261130110100_stripe_payment_events.sql)
  ('private.record_payment_exception(p_event_id text, p_event_type text, p_object_id text, p_org_id uuid, p_reason text, p_detail jsonb)',
                                                                                                 false,   '{}'),
  ('private.check_payment_event(p_event_id text, p_event_type text)',                           false,   '{}'),
  ('private.stripe_dispute_rank(p_status text)',                                                 false,   '{}'),
  ('private.stripe_disputed_amount(p_disputes jsonb)',                                           false,   '{}'),
  ('private.settle_stripe_payment(p_payment_intent_id text, p_event_id text, p_event_type text)',
                                                                                                 false,   '{}'),
  ('private.lock_stripe_payment(p_payment_intent_id text)',                                      false,   '{}'),
  ('private.record_contradiction(p_event_id text, p_event_type text, p_session_id text, p_org_id uuid, p_grant credit_grants, p_outcome text)',
                                                                                                 false,   '{}'),
  ('public.record_payment_exception(p_event_id text, p_event_type text, p_object_id text, p_reason text, p_org_id uuid, p_detail jsonb)',
                                                                                                 true,    '{service_role}'),
  ('public.resolve_payment_exception(p_id bigint, p_resolution text)',                           true,    '{service_role}'),
  ('public.apply_checkout_event(p_event_id text, p_event_type text, p_session_id text, p_org_id uuid, p_credits bigint, p_outcome text, p_payment_intent_id text, p_amount bigint, p_currency text)',
                                                                                                 true,    '{service_role}'),
  ('public.apply_charge_event(p_event_id text, p_event_type text, p_payment_intent_id text, p_amount bigint, p_amount_refunded bigint, p_dispute_id text, p_dispute_status text, p_dispute_amount bigint, p_currency text)',
                                                                                                 true,    '{service_role}'),
  -- outboxes: leases, reclaim, re-check (20261130120000_outbox_leases.sql); the claim/mark RPCs above are redefined there
  ('private.outbox_spec(p_outbox regclass, OUT error_column text, OUT recheck text, OUT settle_outcomes text[], OUT max_attempts integer, OUT lease interval, OUT retry_after interval, OUT retry_cap interval, OUT max_batch integer, OUT bulk_close_status text, OUT bulk_close_when text)',
                                                                                                 false,   '{}'),
  ('private.outbox_close(p_outbox regclass, p_id uuid, p_status text, p_reason text)',           false,   '{}'),
  ('private.outbox_claim(p_outbox regclass, p_limit integer)',                                   false,   '{}'),
  ('private.outbox_settle(p_outbox regclass, p_id uuid, p_outcome text, p_error text, OUT status text, OUT applied boolean)',
                                                                                                 false,   '{}'),
  ('private.recheck_topup_request(p_id uuid, OUT close_status text, OUT reason text)',           false,   '{}'),
  ('private.recheck_credit_alert(p_id uuid, OUT close_status text, OUT reason text)',            false,   '{}'),
  -- tool gateway requests (20261130140000_meter_requests.sql)
  ('public.reserve_meter_request(p_org_id uuid, p_user_id uuid, p_operation text, p_request_id text, p_quantity integer, p_ttl_seconds integer, p_fingerprint bytea)',
                                                                                                 true,    '{service_role}'),
  ('public.settle_meter_request(p_org_id uuid, p_request_id text, p_capture boolean, p_result jsonb, p_status integer, p_content_type text, p_body bytea)',
                                                                                                 true,    '{service_role}'),
  -- usage rollup (20261130170000_usage_rollup.sql)
  ('private.usage_by_day(p_org_id uuid, p_since timestamp with time zone)',                      true,    '{authenticated}'),
  ('public.get_daily_usage(p_days integer, p_org_id uuid)',                                      false,   '{authenticated}'),
  ('private.fold_usage_deltas(p_from bigint, p_through bigint)',                                 false,   '{}'),
  ('public.roll_up_credit_usage(p_batch_size integer, p_wait_ms integer)',                       true,    '{service_role}'),
  ('private.rebuild_credit_usage_rollup()',                                                      false,   '{}'),
  -- usage running totals (20261202070000_usage_prefix_sums.sql; usage_by_day became a definer there)
  ('private.usage_prefix_horizon()',                                                             false,   '{}'),
  -- reading the alert webhook (20261202070100_get_alert_webhook.sql)
  ('public.get_alert_webhook(p_org_id uuid)',                                                    true,    '{authenticated}'),
  -- the error catalog (20261201090000_error_catalog.sql)
  ('private.fail(p_key text, p_detail jsonb, p_hint text)',                                      true,    '{authenticated,service_role}'),
  ('private.fail(p_key text, p_errcode text, p_detail text)',                                    false,   '{authenticated,service_role}'),
  -- scheduled grants (20261201120000_scheduled_grants.sql); grant_credits, insert_grant, grant_result,
  -- void_credit_grant, get_credit_balance and reconcile_credits are redefined there
  ('private.activate_grants(p_org_id uuid, p_grant_ids uuid[])',                                 false,   '{}'),
  ('public.activate_scheduled_grants(p_batch_size integer)',                                     true,    '{service_role}'),
  -- batch charges (20261201110000_consume_credits_batch.sql)
  ('private.check_batch_items(p_items jsonb, p_max_items integer)',                              false,   '{}'),
  ('public.consume_credits_batch(p_items jsonb, p_org_id uuid, p_atomic boolean)',               true,    '{authenticated}'),
  -- scoped credits and overage (20261202090000_scoped_credits_and_overage.sql); apply_balance_change,
  -- lock_and_settle, burn_grants, return_to_grants, insert_grant and grant_credits are redefined there
  ('private.can_spend(p_org_id uuid, p_available bigint, p_overage bigint, p_overage_limit bigint)', false, '{}'),
  ('private.credit_grant(p_grant_id uuid, p_metadata jsonb)',                                    false,   '{}'),
  ('private.repay_debt(p_grant_id uuid, p_debt bigint, p_credits bigint)',                        false,   '{}'),
  ('private.check_operations(p_operations text[])',                                              false,   '{}'),
  ('public.set_overage_limit(p_org_id uuid, p_limit bigint)',                                    true,    '{service_role}');

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
