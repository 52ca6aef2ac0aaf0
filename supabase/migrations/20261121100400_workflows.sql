-- Workflows (seed 000): business RPCs that charge in the same transaction as the operation.
--
-- The seed's bug was billing that lived outside the operation (a meter event someone forgot
-- to insert). Here the charge is part of the RPC: with too few credits the workflow row is
-- never written, and a retried request id returns the first workflow instead of a second one.

create table public.workflows (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id),
  created_by uuid,
  name text not null check (char_length(name) between 1 and 200),
  description text check (char_length(description) <= 2000),
  specification jsonb not null default '{}' check (jsonb_typeof(specification) = 'object'),
  priority integer not null default 5 check (priority between 1 and 10),
  status text not null default 'active' check (status in ('active', 'archived')),
  request_id text not null,
  created_at timestamptz not null default now(),
  unique (org_id, request_id)
);

create table public.workflow_executions (
  id uuid primary key default gen_random_uuid(),
  workflow_id uuid not null references public.workflows (id),
  org_id uuid not null references public.orgs (id),
  created_by uuid,
  input jsonb not null default '{}',
  status text not null default 'queued' check (status in ('queued', 'running', 'succeeded', 'failed')),
  request_id text not null,
  created_at timestamptz not null default now(),
  unique (org_id, request_id)
);

create index workflows_org_idx on public.workflows (org_id, created_at);
create index workflow_executions_workflow_idx on public.workflow_executions (workflow_id, created_at);

alter table public.workflows enable row level security;
alter table public.workflow_executions enable row level security;
revoke all on public.workflows, public.workflow_executions from anon, authenticated, service_role;
grant select on public.workflows, public.workflow_executions to authenticated, service_role;

create policy workflows_select_members on public.workflows
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

create policy workflow_executions_select_members on public.workflow_executions
for select to authenticated
using (org_id = any ((select private.readable_org_ids())::uuid[]));

-- Default prices of the two billed operations (seed 000); change them in credit_prices.
insert into public.credit_prices (operation, credits, description) values
  ('workflow_create', 5, 'Create a workflow'),
  ('workflow_execute', 3, 'Execute a workflow')
on conflict (operation) do nothing;

-- Creates a workflow and charges workflow_create in one transaction. p_request_id makes a
-- retry safe (default: a fresh id, i.e. no retry protection).
create function public.create_workflow(
  p_name text,
  p_description text default null,
  p_specification jsonb default '{}',
  p_priority integer default 5,
  p_request_id text default null,
  p_org_id uuid default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.caller_org(p_org_id);
  v_request_id text := coalesce(p_request_id, 'workflow_create:' || gen_random_uuid());
  v_charge jsonb;
  v_workflow_id uuid;
begin
  if p_name is null or char_length(btrim(p_name)) not between 1 and 200 then
    perform private.fail('invalid_name', '22023', jsonb_build_object('max_length', 200));
  end if;
  if p_description is not null and char_length(p_description) > 2000 then
    perform private.fail('invalid_description', '22023', jsonb_build_object('max_length', 2000));
  end if;
  if p_priority is null or p_priority not between 1 and 10 then
    perform private.fail('invalid_priority', '22023', jsonb_build_object('priority', p_priority, 'min', 1, 'max', 10));
  end if;
  perform private.check_metadata(p_specification, 'invalid_specification');

  v_charge := private.charge(v_org_id, (select auth.uid()), 'consume', 'workflow_create', v_request_id, 1, null,
    jsonb_build_object('workflow_name', p_name));
  if (v_charge ->> 'replayed')::boolean then
    select w.id into v_workflow_id from public.workflows w
    where w.org_id = v_org_id and w.request_id = v_request_id
      and w.name = btrim(p_name) and w.description is not distinct from p_description
      and w.specification = coalesce(p_specification, '{}') and w.priority = p_priority;
    if v_workflow_id is null then
      perform private.fail('idempotency_conflict', 'PT409', jsonb_build_object('request_id', v_request_id),
        'this request id created a workflow with other parameters: use a new id');
    end if;
  else
    insert into public.workflows (org_id, created_by, name, description, specification, priority, request_id)
    values (v_org_id, (select auth.uid()), btrim(p_name), p_description, coalesce(p_specification, '{}'), p_priority, v_request_id)
    returning id into v_workflow_id;
  end if;
  return jsonb_build_object('workflow_id', v_workflow_id, 'org_id', v_org_id, 'charge', v_charge);
end
$$;

revoke all on function public.create_workflow(text, text, jsonb, integer, text, uuid) from public;
grant execute on function public.create_workflow(text, text, jsonb, integer, text, uuid) to authenticated;
comment on function public.create_workflow(text, text, jsonb, integer, text, uuid) is
  'User RPC: create a workflow and charge workflow_create in the same transaction (insufficient credits → no workflow).';

-- Queues an execution of a workflow the caller can see, charging workflow_execute to the
-- workflow's org in the same transaction.
create function public.execute_workflow(
  p_workflow_id uuid,
  p_input jsonb default '{}',
  p_request_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workflow public.workflows;
  v_request_id text := coalesce(p_request_id, 'workflow_execute:' || gen_random_uuid());
  v_charge jsonb;
  v_execution_id uuid;
begin
  if (select auth.uid()) is null then
    perform private.fail('forbidden', '42501', '{}', 'this RPC needs a signed-in user');
  end if;
  -- Only workflows of the caller's orgs exist for the caller: a stranger's workflow id and a
  -- made-up one get the same answer.
  select * into v_workflow from public.workflows w
  where w.id = p_workflow_id and w.status = 'active' and w.org_id = any (private.readable_org_ids());
  if not found then
    perform private.fail('unknown_workflow', 'PT404', jsonb_build_object('workflow_id', p_workflow_id));
  end if;
  perform private.check_metadata(p_input, 'invalid_input');

  v_charge := private.charge(v_workflow.org_id, (select auth.uid()), 'consume', 'workflow_execute', v_request_id, 1, null,
    jsonb_build_object('workflow_id', p_workflow_id));
  if (v_charge ->> 'replayed')::boolean then
    select e.id into v_execution_id from public.workflow_executions e
    where e.org_id = v_workflow.org_id and e.request_id = v_request_id
      and e.workflow_id = p_workflow_id and e.input = coalesce(p_input, '{}');
    if v_execution_id is null then
      perform private.fail('idempotency_conflict', 'PT409', jsonb_build_object('request_id', v_request_id),
        'this request id executed a workflow with other parameters: use a new id');
    end if;
  else
    insert into public.workflow_executions (workflow_id, org_id, created_by, input, request_id)
    values (p_workflow_id, v_workflow.org_id, (select auth.uid()), coalesce(p_input, '{}'), v_request_id)
    returning id into v_execution_id;
  end if;
  return jsonb_build_object('execution_id', v_execution_id, 'workflow_id', p_workflow_id, 'charge', v_charge);
end
$$;

revoke all on function public.execute_workflow(uuid, jsonb, text) from public;
grant execute on function public.execute_workflow(uuid, jsonb, text) to authenticated;
comment on function public.execute_workflow(uuid, jsonb, text) is
  'User RPC: queue a workflow execution and charge workflow_execute in the same transaction.';
