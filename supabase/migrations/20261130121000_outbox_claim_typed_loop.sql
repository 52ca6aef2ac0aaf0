-- private.outbox_claim, unchanged in behaviour: the candidate loop and the re-check read into
-- typed variables instead of records whose shape only the dynamic query decides, so `supabase db lint`
-- (plpgsql_check) can check every statement that uses it. Grants and comment carry over
-- (create or replace keeps them).

create or replace function private.outbox_claim(p_outbox regclass, p_limit integer)
returns setof uuid
language plpgsql
set search_path = ''
as $$
declare
  v_spec record;
  v_candidate_id uuid;
  v_candidate_org_id uuid;
  v_due timestamptz;
  v_attempts integer;
  v_found integer;
  v_close_status text;
  v_close_reason text;
  v_eligible jsonb := '[]';
begin
  select * into v_spec from private.outbox_spec(p_outbox);
  if p_limit is null or p_limit not between 1 and v_spec.max_batch then
    perform private.fail('invalid_limit', '22023', jsonb_build_object('limit', p_limit, 'min', 1, 'max', v_spec.max_batch));
  end if;
  if v_spec.bulk_close_status is not null then
    -- Bounded, and row locks only (SKIP LOCKED): no balance lock is taken or awaited here.
    execute format($sql$
        update %1$s t
        set status = $2, updated_at = now()
        where t.id in (
          select o.id from %1$s o
          where o.status = 'pending' and o.next_attempt_at <= now() and %2$s
          order by o.next_attempt_at
          limit $1
          for update skip locked
        )$sql$, p_outbox, v_spec.bulk_close_when)
      using p_limit * 100, v_spec.bulk_close_status;
  end if;
  for v_candidate_id, v_candidate_org_id in execute format($sql$
      select c.id, c.org_id
      from (
        select d.id, d.org_id
        from (
          (select p.id, p.org_id, p.next_attempt_at as due from %1$s p
           where p.status = 'pending' and p.next_attempt_at <= now()
           order by p.next_attempt_at limit $1)
          union all
          (select p.id, p.org_id, p.lease_expires_at as due from %1$s p
           where p.status = 'processing' and p.lease_expires_at <= now()
           order by p.lease_expires_at limit $1)
        ) d
        order by d.due, d.id
        limit $1
      ) c
      order by c.org_id, c.id$sql$, p_outbox)
    using p_limit * 4
  loop
    -- The lock order of every money path: the org's balance first, then the row.
    perform private.lock_balance(v_candidate_org_id);
    execute format($sql$
        select o.attempts, case o.status when 'pending' then o.next_attempt_at else o.lease_expires_at end
        from %s o
        where o.id = $1
          and ((o.status = 'pending' and o.next_attempt_at <= now())
               or (o.status = 'processing' and o.lease_expires_at <= now()))
        for update skip locked$sql$, p_outbox)
      into v_attempts, v_due
      using v_candidate_id;
    get diagnostics v_found = row_count;
    -- Claimed by another processor, or settled by a webhook, since the candidates were read.
    continue when v_found = 0;
    if v_attempts >= v_spec.max_attempts then
      -- Its processors kept dying with the lease: fail visibly instead of trying for ever.
      perform private.outbox_close(p_outbox, v_candidate_id, 'failed', 'lease_expired');
      continue;
    end if;
    execute format('select r.close_status, r.reason from %s($1) r', v_spec.recheck) into v_close_status, v_close_reason using v_candidate_id;
    if v_close_status is not null then
      perform private.outbox_close(p_outbox, v_candidate_id, v_close_status, v_close_reason);
      continue;
    end if;
    v_eligible := v_eligible || jsonb_build_object('id', v_candidate_id, 'due', v_due);
  end loop;

  -- Lease the oldest p_limit of the rows still needed; the rest stay due for the next claim.
  return query execute format($sql$
      update %s o
      set status = 'processing', attempts = o.attempts + 1, lease_expires_at = now() + $2, updated_at = now()
      where o.id in (
        select (e.value ->> 'id')::uuid from jsonb_array_elements($1) e
        order by (e.value ->> 'due')::timestamptz, e.value ->> 'id'
        limit $3
      )
      returning o.id$sql$, p_outbox)
    using v_eligible, v_spec.lease, p_limit;
end
$$;
