-- Meter backends are configured through one service-role RPC instead of table writes, so
-- every stored URL has passed the outbound URL rule (https, no internal address or name)
-- before the tool gateway ever forwards a user's request to it. Internal tool backends are
-- reached only through the operator's private origins (private.outbound_settings and the
-- meter function's TOLLGATE_METER_PRIVATE_ORIGINS; see README "Outbound requests").

-- Trusted servers (service role) add, change or disable the backend of a metered operation.
-- Definer: service_role no longer writes meter_backends directly, and the rule reads the
-- owner-only outbound settings.
create function public.set_meter_backend(p_operation text, p_url text, p_timeout_ms integer default 10000, p_enabled boolean default true)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.meter_backends;
begin
  if p_operation is null or p_operation !~ '^[a-z][a-z0-9_.:-]{0,63}$' then
    perform private.fail('invalid_operation', '22023', jsonb_build_object('pattern', '^[a-z][a-z0-9_.:-]{0,63}$'),
      'a lowercase operation name of at most 64 characters');
  end if;
  if p_timeout_ms is null or p_timeout_ms not between 100 and 120000 then
    perform private.fail('invalid_timeout', '22023', jsonb_build_object('timeout_ms', p_timeout_ms, 'min', 100, 'max', 120000));
  end if;
  if p_enabled is null then
    perform private.fail('invalid_enabled', '22023', '{}', 'true or false');
  end if;
  perform private.check_outbound_url(p_url, 'meter_backend');
  insert into public.meter_backends (operation, url, timeout_ms, enabled)
  values (p_operation, p_url, p_timeout_ms, p_enabled)
  on conflict (operation) do update
  set url = excluded.url, timeout_ms = excluded.timeout_ms, enabled = excluded.enabled, updated_at = now()
  returning * into v_row;
  return jsonb_build_object('operation', v_row.operation, 'url', v_row.url, 'timeout_ms', v_row.timeout_ms,
    'enabled', v_row.enabled, 'updated_at', v_row.updated_at);
end
$$;

revoke all on function public.set_meter_backend(text, text, integer, boolean) from public;
grant execute on function public.set_meter_backend(text, text, integer, boolean) to service_role;
comment on function public.set_meter_backend(text, text, integer, boolean) is
  'Server RPC (service role): set where the tool gateway forwards an operation (outbound URL rule: invalid_url / url_not_allowed), its timeout, enabled. Definer: the table is read-only to service_role.';

-- The RPC is now the only way in; service_role still reads the table (listing backends).
revoke insert, update, delete on public.meter_backends from service_role;
