-- Benchmark-only objects, in schema `bench` of the throwaway bench stack. Never a migration.
--
--   floor_*        the least a charge can do: UPDATE the balance row ... RETURNING, INSERT one
--                  ledger row. Scenarios 1 and 2 measure consume_credits against it.
--   mcp_*          tables of a client-side credits service (mcp.user_accounts, user_credit_transactions,
--                  user_tool_calls), for its client-side locking pattern (scenario 3).
--   capgo_*        a grants table and a balances VIEW that sums it per org: the
--                  view-based gate a replicated flag replaces (scenario 4).

create schema if not exists bench;

-- Floor ------------------------------------------------------------------------------------------

-- Same shape of work as a charge's money write (one balance row, one ledger row, the ledger's
-- primary key and per-org index, the available >= 0 CHECK), nothing else: no price lookup,
-- no idempotency record, no grants, no membership check.
create table bench.floor_balances (
  org_id uuid primary key,
  available bigint not null check (available >= 0),
  updated_at timestamptz not null default now()
);

create table bench.floor_ledger (
  id bigint generated always as identity primary key,
  org_id uuid not null,
  amount bigint not null,
  balance_after bigint not null,
  request_id text,
  created_at timestamptz not null default now()
);

create index floor_ledger_org_idx on bench.floor_ledger (org_id, id);

create function bench.floor_consume(p_org_id uuid, p_request_id text, p_amount bigint default 1)
returns bigint
language sql
set search_path = ''
as $$
  with b as (
    update bench.floor_balances
    set available = available - p_amount, updated_at = now()
    where org_id = p_org_id
    returning available
  )
  insert into bench.floor_ledger (org_id, amount, balance_after, request_id)
  select p_org_id, -p_amount, b.available, p_request_id from b
  returning balance_after
$$;

-- Client-side locking (tool-call credits) --------------------------------------------------------

-- Columns are the ones its deduct_credits() reads and writes; keys and indexes are what such a
-- schema has (account FK, unique request id, per-account history).
create table bench.mcp_user_accounts (
  id bigint generated always as identity primary key,
  user_id uuid not null unique,
  credits_balance bigint not null default 0,
  total_tool_calls bigint not null default 0,
  total_credits_used bigint not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table bench.mcp_user_credit_transactions (
  id bigint generated always as identity primary key,
  user_account_id bigint not null references bench.mcp_user_accounts (id),
  transaction_type text not null,
  amount bigint not null,
  balance_before bigint not null,
  balance_after bigint not null,
  reference_type text,
  reference_id text,
  description text,
  stripe_invoice_id text,
  created_at timestamptz not null default now()
);

create index mcp_user_credit_transactions_account_idx on bench.mcp_user_credit_transactions (user_account_id, created_at);

create table bench.mcp_user_tool_calls (
  id bigint generated always as identity primary key,
  request_id uuid not null unique,
  user_account_id bigint references bench.mcp_user_accounts (id),
  tool_name text not null,
  credits_cost bigint not null,
  credits_charged bigint not null,
  credits_before bigint,
  credits_after bigint,
  input_params jsonb,
  output_summary jsonb,
  success boolean not null default false,
  error_code text,
  error_message text,
  latency_ms double precision,
  backend_endpoint text,
  is_backend_error boolean not null default false,
  created_at timestamptz not null default now()
);

create index mcp_user_tool_calls_account_idx on bench.mcp_user_tool_calls (user_account_id, created_at);

-- View-based gate (before the replicated flag) -----------------------------------------------------

create table bench.capgo_grants (
  id bigint generated always as identity primary key,
  org_id uuid not null,
  amount bigint not null,
  remaining bigint not null,
  expires_at timestamptz not null,
  created_at timestamptz not null default now()
);

create index capgo_grants_org_idx on bench.capgo_grants (org_id, expires_at);

-- Balance per org summed over its grants at read time: what the gate asked EXISTS of.
create view bench.capgo_balances as
select g.org_id,
       sum(g.amount) as total_credits,
       sum(greatest(case when g.expires_at >= now() then g.remaining else 0 end, 0)) as available_credits,
       min(case when g.remaining > 0 then g.expires_at end) as next_expiration
from bench.capgo_grants g
group by g.org_id;

-- Probes ------------------------------------------------------------------------------------------

-- What CHECK constraints cost a charge: PostgreSQL re-reads and re-plans every CHECK constraint
-- of a table from its stored form for each INSERT or UPDATE statement, whichever columns the
-- statement touches. Two copies of credit_grants, with and without its CHECK constraints (the
-- same columns, indexes and fillfactor), filled from the real table when scenario 1 runs; the
-- scenario updates `remaining` on both side by side, as a charge does.
create table bench.grants_with_checks (like public.credit_grants including defaults including indexes including constraints)
  with (fillfactor = 80);
create table bench.grants_without_checks (like public.credit_grants including defaults including indexes)
  with (fillfactor = 80);

-- Scenario 9's reference: get_usage_stats as it was before the rollup, a full scan of the org's
-- requests. The scenario checks that both answer the same text and reports this one's time.
create function bench.usage_stats_full_scan(p_org_id uuid, p_days integer)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
begin
  -- plpgsql, as the old function was: its plan is made for this org's numbers.
  return (select jsonb_build_object(
    'period_days', p_days,
    'total_calls', count(*),
    'successful_calls', count(*) filter (where r.success),
    'failed_calls', count(*) filter (where not r.success),
    'total_credits_used', coalesce(sum(r.charged - r.refunded), 0),
    'avg_latency_ms', coalesce(round(avg(r.latency_ms), 2), 0)
  ) || jsonb_build_object('top_operations', coalesce((
    select jsonb_agg(jsonb_build_object('operation', t.operation, 'calls', t.calls, 'credits', t.credits) order by t.calls desc, t.operation)
    from (
      select r2.operation, count(*) as calls, coalesce(sum(r2.charged - r2.refunded), 0) as credits
      from public.credit_requests r2
      where r2.org_id = p_org_id and r2.created_at > now() - make_interval(days => p_days)
      group by r2.operation
      order by calls desc, r2.operation
      limit 10
    ) t
  ), '[]'))
  from public.credit_requests r
  where r.org_id = p_org_id and r.created_at > now() - make_interval(days => p_days));
end
$$;
