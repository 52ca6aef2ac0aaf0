-- The outbound URL rule, at configuration time.
--
-- Tollgate sends requests to URLs that someone configured: an org's alert webhook (set by its
-- owners and admins) and the tool gateway's meter backends (set by trusted servers). Left
-- unchecked, such a URL lets its author reach the network Tollgate runs in (loopback, private
-- ranges, cloud metadata). The rule: https only; no literal internal address in any spelling;
-- no internal name (localhost, *.internal, single-label names, ...). The edge functions apply
-- the same rule again at delivery (supabase/functions/_shared/outbound/) and also refuse names
-- that resolve to internal addresses, which SQL cannot see; url-rule-cases.json is the one
-- case table both halves are tested against.

-- Settings only the project owner can change (no API role can read or write this table):
-- the local-development allowance and the operator's private meter origins. Production keeps
-- the defaults; the local stack's seed turns allow_local_http on.
create table private.outbound_settings (
  singleton boolean primary key default true check (singleton),
  -- Local development only: also accept http://127.0.0.1:<port> (tests' local receivers).
  allow_local_http boolean not null default false,
  -- Origins (scheme://host[:port]) a meter backend may use although they are internal. The
  -- meter function reaches them only if TOLLGATE_METER_PRIVATE_ORIGINS lists them too.
  meter_private_origins text[] not null default '{}',
  updated_at timestamptz not null default now()
);

comment on table private.outbound_settings is
  'Outbound URL rule settings (one row), owner-only: allow_local_http (local development), meter_private_origins (internal tool backends).';

insert into private.outbound_settings default values;

alter table private.outbound_settings enable row level security;
revoke all on private.outbound_settings from public, anon, authenticated, service_role;

-- A host as the WHATWG URL parser reads it: a host whose last label is a number (decimal, or
-- 0x-hex) is an IPv4 address in any of the legacy spellings (2130706433, 0x7f.1, 0177.0.0.1,
-- 127.1), or invalid. `address` is null when it ends in a number but is no valid IPv4.
create function private.whatwg_ipv4(p_host text, out ends_in_number boolean, out address inet)
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_parts text[] := string_to_array(p_host, '.');
  v_last text;
  v_part text;
  v_radix integer;
  v_digit integer;
  v_value numeric;
  v_numbers numeric[] := '{}';
  v_count integer;
  v_result numeric := 0;
begin
  ends_in_number := false;
  if p_host is null or p_host = '' then
    return;
  end if;
  if v_parts[cardinality(v_parts)] = '' then
    if cardinality(v_parts) = 1 then
      return;
    end if;
    v_parts := v_parts[1:cardinality(v_parts) - 1];
  end if;
  v_last := v_parts[cardinality(v_parts)];
  if v_last !~ '^[0-9]+$' and v_last !~ '^0x[0-9a-f]*$' then
    return;
  end if;
  ends_in_number := true;
  if cardinality(v_parts) > 4 then
    return;
  end if;
  foreach v_part in array v_parts loop
    if v_part = '' then
      return;
    end if;
    v_radix := 10;
    if char_length(v_part) >= 2 and left(v_part, 2) = '0x' then
      v_radix := 16;
      v_part := substr(v_part, 3);
    elsif char_length(v_part) >= 2 and left(v_part, 1) = '0' then
      v_radix := 8;
      v_part := substr(v_part, 2);
    end if;
    v_value := 0;
    foreach v_digit in array array(select strpos('0123456789abcdef', c) - 1 from regexp_split_to_table(v_part, '') c) loop
      if v_digit < 0 or v_digit >= v_radix then
        return;
      end if;
      v_value := v_value * v_radix + v_digit;
    end loop;
    v_numbers := v_numbers || v_value;
  end loop;
  v_count := cardinality(v_numbers);
  for i in 1 .. v_count - 1 loop
    if v_numbers[i] > 255 then
      return;
    end if;
    v_result := v_result + v_numbers[i] * 256::numeric ^ (4 - i);
  end loop;
  if v_numbers[v_count] >= 256::numeric ^ (5 - v_count) then
    return;
  end if;
  address := '0.0.0.0'::inet + (v_result + v_numbers[v_count])::bigint;
end
$$;

revoke all on function private.whatwg_ipv4(text) from public;
comment on function private.whatwg_ipv4(text) is
  'The WHATWG URL parser''s IPv4 reading of a host (ends-in-a-number, legacy spellings). Internal, used by parse_outbound_url.';

-- Whether an address may be the destination of an outbound request. The ranges are
-- ipaddr.js's special ranges (the library the delivery-time guard classifies with): IPv4
-- unspecified, broadcast, multicast, link-local (cloud metadata), loopback, CGNAT, private,
-- reserved/documentation/benchmarking, AS112, AMT; IPv6 outside 2000::/3 and the special
-- ranges inside it. IPv4 embedded in IPv6 (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96) is
-- judged as the IPv4 address it reaches.
create function private.outbound_address_allowed(p_address inet)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select case
    when family(a.address) = 4 then not (a.address <<= any (array[
      '0.0.0.0/8', '255.255.255.255/32', '224.0.0.0/4', '169.254.0.0/16', '127.0.0.0/8', '100.64.0.0/10',
      '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16',
      '192.0.0.0/24', '192.0.2.0/24', '192.88.99.0/24', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '240.0.0.0/4',
      '192.175.48.0/24', '192.31.196.0/24', '192.52.193.0/24'
    ]::inet[]))
    else a.address <<= '2000::/3' and not (a.address <<= any (array[
      '2001::/23', '2001:db8::/32', '2002::/16', '2001:2::/48', '2001:3::/32', '2001:4:112::/48', '2620:4f:8000::/48',
      '2001:10::/28', '2001:20::/28', '2001:30::/28', '3fff::/20'
    ]::inet[]))
  end
  from (
    select case
      when family(p_address) = 6 and (p_address <<= '::ffff:0:0/96' or p_address <<= '64:ff9b::/96')
        then '0.0.0.0'::inet + (host(p_address)::inet - network(set_masklen(p_address, 96)))
      else p_address
    end as address
  ) a
$$;

revoke all on function private.outbound_address_allowed(inet) from public;
comment on function private.outbound_address_allowed(inet) is
  'Outbound URL rule: whether an address is a public unicast destination (ipaddr.js''s special ranges refused). Internal.';

-- Splits a URL the way both halves of the rule do: printable ASCII, no backslash,
-- scheme://authority[/?#...], http or https, no userinfo, no percent-encoding in the
-- authority, port 1..65535, host an IPv6 literal, a WHATWG IPv4 (any spelling) or an LDH name
-- (underscores allowed). Every field is null when the URL is invalid.
create function private.parse_outbound_url(
  p_url text,
  out scheme text, out host text, out address inet, out port integer, out explicit_port boolean, out origin text
)
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_match text[];
  v_scheme text;
  v_authority text;
  v_host text;
  v_address inet;
  v_port integer;
  v_ipv4 record;
begin
  if p_url is null or p_url = '' or char_length(p_url) > 1000 or octet_length(p_url) <> char_length(p_url)
     or p_url ~ '[^!-~]' or strpos(p_url, '\') > 0 then
    return;
  end if;
  v_match := regexp_match(p_url, '^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#]*)([/?#].*)?$');
  if v_match is null then
    return;
  end if;
  v_scheme := lower(v_match[1]);
  v_authority := lower(v_match[2]);
  if v_scheme not in ('https', 'http') or strpos(v_authority, '@') > 0 or strpos(v_authority, '%') > 0 then
    return;
  end if;
  v_match := coalesce(
    regexp_match(v_authority, '^\[([0-9a-f:.]+)\](:([0-9]{1,5}))?$'),
    regexp_match(v_authority, '^([^]:[]+)(:([0-9]{1,5}))?$')
  );
  if v_match is null then
    return;
  end if;
  v_port := coalesce(v_match[3]::integer, case v_scheme when 'https' then 443 else 80 end);
  if v_port not between 1 and 65535 then
    return;
  end if;
  if left(v_authority, 1) = '[' then
    begin
      v_address := v_match[1]::inet;
    exception when invalid_text_representation then
      return;
    end;
    if family(v_address) <> 6 or masklen(v_address) <> 128 then
      return;
    end if;
    v_host := host(v_address);
  else
    select * into v_ipv4 from private.whatwg_ipv4(v_match[1]);
    if v_ipv4.ends_in_number then
      if v_ipv4.address is null then
        return;
      end if;
      v_address := v_ipv4.address;
      v_host := host(v_address);
    else
      v_host := regexp_replace(v_match[1], '\.$', '');
      if v_host !~ '^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$' or char_length(v_host) > 253 then
        return;
      end if;
    end if;
  end if;
  scheme := v_scheme;
  host := v_host;
  address := v_address;
  port := v_port;
  explicit_port := v_match[3] is not null;
  origin := v_scheme || '://' || case when family(v_address) = 6 then '[' || v_host || ']' else v_host end || ':' || v_port;
end
$$;

revoke all on function private.parse_outbound_url(text) from public;
comment on function private.parse_outbound_url(text) is
  'Outbound URL rule: the URL''s scheme, host, literal address, port and origin, or nulls when it is invalid. Internal.';

-- An allow-list entry as scheme://host:port (null when it is not an origin).
create function private.outbound_origin(p_entry text)
returns text
language sql
immutable
set search_path = ''
as $$
  select u.origin
  from (select btrim(p_entry) as entry) e,
       lateral (select regexp_replace(e.entry, '/$', '') as entry) t,
       lateral private.parse_outbound_url(t.entry) u
  where regexp_replace(t.entry, '^[^:]*://', '') !~ '[/?#]'
$$;

revoke all on function private.outbound_origin(text) from public;
comment on function private.outbound_origin(text) is
  'Outbound URL rule: an allow-list entry normalised to scheme://host:port, or null. Internal.';

-- The outbound URL rule. Null when the URL is allowed, else {key, rule}: invalid_url, or
-- url_not_allowed with rule scheme | address | hostname. Order: an operator's private origin
-- is allowed as is; the local-development allowance admits http://127.0.0.1:<port>; then https
-- only, no internal literal address, no internal name.
create function private.outbound_url_refusal(p_url text, p_allow_local_http boolean default false, p_private_origins text[] default '{}')
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_url record;
begin
  select * into v_url from private.parse_outbound_url(p_url);
  if v_url.scheme is null then
    return jsonb_build_object('key', 'invalid_url');
  end if;
  if exists (select 1 from unnest(coalesce(p_private_origins, '{}')) e where private.outbound_origin(e) = v_url.origin) then
    return null;
  end if;
  if coalesce(p_allow_local_http, false) and v_url.scheme = 'http' and v_url.address = '127.0.0.1'::inet and v_url.explicit_port then
    return null;
  end if;
  if v_url.scheme <> 'https' then
    return jsonb_build_object('key', 'url_not_allowed', 'rule', 'scheme');
  end if;
  if v_url.address is not null then
    return case when private.outbound_address_allowed(v_url.address) then null
                else jsonb_build_object('key', 'url_not_allowed', 'rule', 'address') end;
  end if;
  if strpos(v_url.host, '.') = 0
     or v_url.host = 'metadata.goog'
     or v_url.host ~ '(^|\.)(localhost|local|internal|localdomain|home\.arpa|lan|intranet|corp|home|private)$' then
    return jsonb_build_object('key', 'url_not_allowed', 'rule', 'hostname');
  end if;
  return null;
end
$$;

revoke all on function private.outbound_url_refusal(text, boolean, text[]) from public;
comment on function private.outbound_url_refusal(text, boolean, text[]) is
  'Outbound URL rule (configuration half): null when allowed, else {key: invalid_url | url_not_allowed, rule}. Internal; tested against url-rule-cases.json.';

-- Raises the rule's refusal for a URL about to be stored, with the owner's settings: the
-- local-development allowance for every purpose, the private origins for meter backends only
-- (an org's webhook never reaches the operator's internal services). Called by the definer
-- RPCs that store URLs (set_alert_webhook, set_meter_backend).
create function private.check_outbound_url(p_url text, p_purpose text)
returns void
language plpgsql
stable
set search_path = ''
as $$
declare
  v_settings private.outbound_settings;
  v_refusal jsonb;
begin
  select * into v_settings from private.outbound_settings;
  v_refusal := private.outbound_url_refusal(
    p_url,
    coalesce(v_settings.allow_local_http, false),
    case when p_purpose = 'meter_backend' then coalesce(v_settings.meter_private_origins, '{}') else '{}' end
  );
  if v_refusal is null then
    return;
  end if;
  if v_refusal ->> 'key' = 'invalid_url' then
    perform private.fail('invalid_url', '22023', jsonb_build_object('max_length', 1000),
      'an absolute https URL of printable ASCII (punycode for international names), without credentials, at most 1000 characters');
  end if;
  perform private.fail('url_not_allowed', '22023', jsonb_build_object('rule', v_refusal ->> 'rule'),
    case v_refusal ->> 'rule'
      when 'scheme' then 'only https URLs are allowed'
      when 'address' then 'loopback, private, link-local, unique-local, multicast, reserved and other internal addresses are refused'
      else 'internal names are refused: localhost, single-label names, *.internal, *.local, *.localhost and other private-use names'
    end);
end
$$;

revoke all on function private.check_outbound_url(text, text) from public;
comment on function private.check_outbound_url(text, text) is
  'Outbound URL rule with the owner''s settings: raises invalid_url / url_not_allowed (22023). Internal, called by set_alert_webhook and set_meter_backend.';

-- Owners and admins set the org's alert webhook; the signing secret is returned once, here.
-- Replaces the first version: the URL passes the outbound rule, and the secret is a Standard
-- Webhooks secret (whsec_ + base64 of 32 random bytes).
create or replace function public.set_alert_webhook(p_url text, p_org_id uuid default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.require_org_admin(p_org_id);
  v_secret text := 'whsec_' || encode(extensions.gen_random_bytes(32), 'base64');
begin
  perform private.check_outbound_url(p_url, 'alert_webhook');
  insert into public.org_alert_webhooks (org_id, url, secret, updated_by)
  values (v_org_id, p_url, v_secret, (select auth.uid()))
  on conflict (org_id) do update set url = excluded.url, secret = excluded.secret, updated_by = excluded.updated_by, updated_at = now();
  return jsonb_build_object('org_id', v_org_id, 'url', p_url, 'secret', v_secret);
end
$$;

revoke all on function public.set_alert_webhook(text, uuid) from public;
grant execute on function public.set_alert_webhook(text, uuid) to authenticated;
comment on function public.set_alert_webhook(text, uuid) is
  'User RPC (owners/admins): set the org''s low-balance webhook (outbound URL rule: https, no internal address or name; invalid_url / url_not_allowed); returns the new Standard Webhooks signing secret (shown once). Definer: writes org_alert_webhooks, which users cannot read.';

-- Members read credit_alert_outbox: its last_error is an outcome class (http_4xx, timeout,
-- refused_address, ...), never a network error's text. Rows written before the dispatcher
-- recorded classes are scrubbed to the class their text describes, and the column refuses
-- anything but a class from now on.
create function private.alert_error_class(p_error text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when p_error is null then null
    when p_error ~ '^[a-z][a-z0-9_]{0,63}$' then p_error
    when p_error ~ '^HTTP 4[0-9][0-9]$' then 'http_4xx'
    when p_error ~ '^HTTP 3[0-9][0-9]$' then 'redirect_refused'
    when p_error ~ '^HTTP [0-9]+$' then 'http_5xx'
    when p_error ~* 'timed? ?out|timeout|deadline' then 'timeout'
    when p_error ~* 'certificate|tls|ssl|handshake' then 'tls_failed'
    when p_error ~* 'dns|resolve|lookup|name or service|no such host' then 'dns_failed'
    else 'connection_failed'
  end
$$;

revoke all on function private.alert_error_class(text) from public;
comment on function private.alert_error_class(text) is
  'The outcome class of an alert delivery error recorded as raw text before classes (migration scrub). Internal.';

update public.credit_alert_outbox
set last_error = private.alert_error_class(last_error)
where last_error is not null and last_error is distinct from private.alert_error_class(last_error);

alter table public.credit_alert_outbox
  add constraint credit_alert_outbox_last_error_is_class check (last_error ~ '^[a-z][a-z0-9_]{0,63}$');
