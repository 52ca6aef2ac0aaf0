-- Channel overrides record who set them.
--
-- A device picks (and drops) its own channel through /channel_self, among the channels that
-- allow it; the app's owners and admins pin a device to any channel of the app. /channel_self
-- is called without a user JWT (the app id and device id are all a device sends), so it must
-- never undo or replace an owner's pin: it writes set_by = 'device' and changes only rows whose
-- set_by is 'device'. Owners pin through pin_device_channel() below, the one owner path.
--
-- Overrides written before this migration cannot be told apart; they become owner pins, which
-- fails safe (a device can no longer drop one; the owner still can).

alter table public.channel_devices
  add column set_by text not null default 'owner' check (set_by in ('device', 'owner'));

-- Every writer states who it is: no default to fall back on silently.
alter table public.channel_devices alter column set_by drop default;

comment on column public.channel_devices.set_by is
  'device: chosen by the device through /channel_self (it may replace or drop it); owner: pinned by an owner or admin with pin_device_channel() (the device can do neither).';

-- Members read overrides; they write them only through pin_device_channel(), so set_by cannot
-- be forged or left stale by a direct UPDATE.
revoke insert, update, delete on public.channel_devices from authenticated;
drop policy channel_devices_members on public.channel_devices;
create policy channel_devices_members_read on public.channel_devices
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

-- Owners and admins of the app's org pin a device to one of the app's channels (whether or not
-- devices may pick it themselves), replacing any override; p_channel => null removes the
-- device's override, whoever set it. An app the caller's orgs do not own is unknown_app (its
-- existence is not revealed); plain members get forbidden. Definer: members have no write
-- privilege on channel_devices, so the owner path is this function only.
create function public.pin_device_channel(p_app_id text, p_device_id text, p_channel text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid;
  v_channel_id bigint;
  v_removed integer;
begin
  select a.org_id into v_org_id
  from public.apps a
  where a.app_id = p_app_id and a.org_id = any ((select private.readable_org_ids())::uuid[]);
  if v_org_id is null then
    perform private.fail('unknown_app', 'PT404', jsonb_build_object('app_id', p_app_id), 'no app with this id in an org you belong to');
  end if;
  perform private.require_org_admin(v_org_id);
  -- The device id as the plugin sends it (see README "Plugin endpoints").
  if p_device_id is null or char_length(p_device_id) > 128 or p_device_id !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' then
    perform private.fail('invalid_device_id', '22023', jsonb_build_object('max_length', 128), 'the device_id the plugin sends: letters, digits, _ . : - (at most 128)');
  end if;

  if p_channel is null then
    delete from public.channel_devices d where d.app_id = p_app_id and d.device_id = p_device_id;
    get diagnostics v_removed = row_count;
    return jsonb_build_object('app_id', p_app_id, 'device_id', p_device_id, 'channel', null, 'removed', v_removed > 0);
  end if;

  select c.id into v_channel_id from public.channels c where c.app_id = p_app_id and c.name = p_channel;
  if v_channel_id is null then
    perform private.fail('unknown_channel', 'PT404', jsonb_build_object('app_id', p_app_id, 'channel', p_channel), 'no channel with this name in the app');
  end if;
  insert into public.channel_devices as d (app_id, device_id, org_id, channel_id, set_by)
  values (p_app_id, p_device_id, v_org_id, v_channel_id, 'owner')
  on conflict (app_id, device_id) do update
  set channel_id = excluded.channel_id, set_by = excluded.set_by, updated_at = now()
  where (d.channel_id, d.set_by) is distinct from (excluded.channel_id, excluded.set_by);
  return jsonb_build_object('app_id', p_app_id, 'device_id', p_device_id, 'channel', p_channel, 'set_by', 'owner');
end
$$;

revoke all on function public.pin_device_channel(text, text, text) from public;
grant execute on function public.pin_device_channel(text, text, text) to authenticated;
comment on function public.pin_device_channel(text, text, text) is
  'User RPC (owners/admins of the app''s org): pin a device to a channel of the app (set_by owner; the device cannot drop or replace it), or remove its override with p_channel null. Errors: unknown_app PT404, unknown_channel PT404, forbidden 42501, invalid_device_id 22023.';
