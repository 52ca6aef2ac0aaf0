-- Metered operations behind the tool gateway (/functions/v1/meter/<operation>, seed 003).
--
-- Each row says where the gateway forwards an operation and how long it waits. Prices stay in
-- credit_prices; this table is configuration for trusted servers only (users never see
-- backend URLs).

create table public.meter_backends (
  operation text primary key check (operation ~ '^[a-z][a-z0-9_.:-]{0,63}$'),
  url text not null check (url ~ '^https?://' and char_length(url) <= 1000),
  timeout_ms integer not null default 10000 check (timeout_ms between 100 and 120000),
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.meter_backends is
  'Where the tool gateway forwards each metered operation, and its timeout. service_role only.';

alter table public.meter_backends enable row level security;
revoke all on public.meter_backends from anon, authenticated, service_role;
grant select, insert, update on public.meter_backends to service_role;

create policy meter_backends_no_user_access on public.meter_backends as restrictive
for all to anon, authenticated
using (false);

-- The first outcome of each metered request, so a retried Idempotency-Key gets the same answer
-- without calling the backend again.
create table public.meter_responses (
  org_id uuid not null,
  request_id text not null,
  status integer not null check (status between 100 and 599),
  content_type text,
  body text not null check (octet_length(body) <= 1048576),
  created_at timestamptz not null default now(),
  primary key (org_id, request_id),
  foreign key (org_id, request_id) references public.credit_requests (org_id, request_id)
);

comment on table public.meter_responses is 'First outcome of each metered request (replayed on retries). service_role only.';

alter table public.meter_responses enable row level security;
revoke all on public.meter_responses from anon, authenticated, service_role;
grant select on public.meter_responses to service_role;

create policy meter_responses_no_user_access on public.meter_responses as restrictive
for all to anon, authenticated
using (false);
