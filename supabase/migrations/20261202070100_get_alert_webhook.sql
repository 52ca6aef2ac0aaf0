-- Owners and admins can read which URL their org's low-balance alerts go to.
--
-- org_alert_webhooks is closed to users (a restrictive policy) because it holds the HMAC signing
-- secret, which set_alert_webhook shows once. The URL is not a secret to the org's owners and
-- admins, who set it: this RPC returns it, and never the secret.

-- Called by authenticated (the usage page's alert settings). Definer: the table is closed to
-- users; require_org_admin checks the caller is an owner or admin of the org first.
create function public.get_alert_webhook(p_org_id uuid default null)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.require_org_admin(p_org_id);
  v_webhook record;
begin
  select w.url, w.updated_at into v_webhook from public.org_alert_webhooks w where w.org_id = v_org_id;
  return jsonb_build_object('org_id', v_org_id, 'url', v_webhook.url, 'updated_at', v_webhook.updated_at);
end
$$;

revoke all on function public.get_alert_webhook(uuid) from public;
grant execute on function public.get_alert_webhook(uuid) to authenticated;
comment on function public.get_alert_webhook(uuid) is
  'User RPC (owners/admins): {org_id, url, updated_at} of the org''s low-balance webhook (url null when none is set); never the signing secret. Errors: forbidden, not_a_member 42501.';
