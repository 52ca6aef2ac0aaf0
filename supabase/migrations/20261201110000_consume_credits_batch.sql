-- Batch charges: many small charges of one org in one round trip and one transaction.
--
-- Metered APIs ingest events in bulk; one consume_credits call per event pays a round trip, a
-- JWT check, a transaction and a commit per event. consume_credits_batch charges up to 1000
-- items, each through private.charge (the one charge function: its validation, price, replay
-- rule and burn-down apply to every item unchanged), under one balance lock and one commit.
--
-- Rules of a batch:
--   shape      p_items is checked whole before anything is charged: a JSON array of 1–1000
--              objects with only the keys operation and request_id (strings, required),
--              quantity (an integer, default 1) and metadata (an object, default {}). A bad
--              shape is invalid_items (22023) for the whole call, in either mode. What the
--              charge checks itself (quantity range, request id length, metadata size, an
--              unknown operation) is the item's error.
--   order      items are charged in array order and results[i] answers items[i]; when credits
--              run out, the items before the first one that does not fit are those that fit.
--   replays    each item is idempotent on its own request id, as a consume_credits call with
--              that id: a request id charged before (by any path) answers its first result with
--              replayed true and is not charged again; the same id with another operation or
--              quantity is idempotency_conflict. A request id twice in one batch is the same
--              rule: the second occurrence replays the first (or conflicts with it).
--   atomic     (default) all or none: an item's error fails the whole call and nothing is
--              charged. The error names the item (details: item, its 0-based index, and
--              request_id). Running out of credits is insufficient_credits (PT402) for the
--              batch, with details required (what the batch needed up to and including the
--              failing item) and available (the balance before the batch).
--   per item   p_atomic false: each item either charges or reports its error key; a failed
--              item does not undo the others.
--   lock       one balance lock per batch, held to commit: in atomic mode the first item that
--              is not a replay takes it in private.charge (a batch of replays only answers
--              without it, as a single replay does); in per-item mode the batch takes it (and
--              settles due grants) before the first item (below: why).
--
-- Subtransactions. Catching an error in PL/pgSQL opens a subtransaction for the block. Per-item
-- mode needs one per item: a failed statement leaves its transaction unusable, so only rolling
-- back to the item's own savepoint keeps the other items' writes. A row lock taken inside a
-- subtransaction that rolls back is released with it, so per-item mode locks the balance in the
-- outer transaction first: a failed item cannot let another writer in between two items. More
-- than 64 subtransactions that write overflow the backend's subtransaction cache while the batch
-- runs (other sessions' snapshots then consult pg_subtrans), which is why per-item mode is not
-- the default. Atomic mode needs no savepoint per item: one block around the whole loop (one
-- subtransaction per call) catches the failing item's error only to name the item, then the
-- whole call fails.

insert into private.error_catalog (key, sqlstate, http_status, meaning, raised_by) values
  ('invalid_items', '22023', 400, '`consume_credits_batch`: the items are not a JSON array of 1–1000 objects with a string `operation` and `request_id`, an optional integer `quantity` and an optional object `metadata`, and no other keys (details: item, field, max_items); nothing is charged.', 'database');

-- Checks a batch's shape; returns the number of items. Raises invalid_items naming the first bad
-- item and field.
create function private.check_batch_items(p_items jsonb, p_max_items integer)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_count integer;
  v_bad record;
begin
  if p_items is null or jsonb_typeof(p_items) <> 'array' then
    perform private.fail('invalid_items', jsonb_build_object('field', 'items', 'max_items', p_max_items),
      'pass a JSON array of items {operation, request_id, quantity?, metadata?}');
  end if;
  v_count := jsonb_array_length(p_items);
  if v_count not between 1 and p_max_items then
    perform private.fail('invalid_items', jsonb_build_object('field', 'items', 'count', v_count, 'max_items', p_max_items),
      'pass between 1 and ' || p_max_items || ' items');
  end if;
  -- One CASE, in order: the casts to numeric only ever see numbers.
  select s.item, s.field into v_bad
  from (
    select e.i - 1 as item,
           case
             when jsonb_typeof(e.item) <> 'object' then 'item'
             when jsonb_typeof(e.item -> 'operation') is distinct from 'string' then 'operation'
             when jsonb_typeof(e.item -> 'request_id') is distinct from 'string' then 'request_id'
             when jsonb_typeof(e.item -> 'quantity') <> 'number' then 'quantity'
             when (e.item -> 'quantity')::numeric <> trunc((e.item -> 'quantity')::numeric)
               or (e.item -> 'quantity')::numeric not between -2147483648 and 2147483647 then 'quantity'
             when jsonb_typeof(e.item -> 'metadata') <> 'object' then 'metadata'
             when exists (select from jsonb_object_keys(e.item) k
                          where k not in ('operation', 'request_id', 'quantity', 'metadata')) then 'keys'
           end as field
    from jsonb_array_elements(p_items) with ordinality e(item, i)
  ) s
  where s.field is not null
  order by s.item
  limit 1;
  if found then
    perform private.fail('invalid_items', jsonb_build_object('item', v_bad.item, 'field', v_bad.field, 'max_items', p_max_items),
      'each item is {operation: string, request_id: string, quantity?: integer, metadata?: object} and nothing else');
  end if;
  return v_count;
end
$$;

revoke all on function private.check_batch_items(jsonb, integer) from public;
comment on function private.check_batch_items(jsonb, integer) is
  'Checks the shape of consume_credits_batch''s items (invalid_items 22023 naming the first bad item and field); returns their number. Internal.';

-- The batch RPC. Definer for the reason consume_credits is: users may not write credit tables;
-- membership is checked once per batch by private.caller_org. See the top of this file.
create function public.consume_credits_batch(
  p_items jsonb,
  p_org_id uuid default null,
  p_atomic boolean default true
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_org_id uuid := private.caller_org(p_org_id);
  v_user_id uuid := (select auth.uid());
  v_atomic boolean := coalesce(p_atomic, true);
  v_results jsonb[] := '{}';
  v_result jsonb;
  v_item jsonb;
  v_index integer;
  v_charged_total bigint := 0;
  v_state text;
  v_key text;
  v_detail text;
  v_hint text;
  v_failed jsonb;
begin
  perform private.check_batch_items(p_items, 1000);

  if v_atomic then
    begin
      for v_item, v_index in select e.item, (e.i - 1)::integer from jsonb_array_elements(p_items) with ordinality e(item, i) loop
        v_result := private.charge(v_org_id, v_user_id, 'consume', v_item ->> 'operation', v_item ->> 'request_id',
          coalesce((v_item ->> 'quantity')::integer, 1), null, coalesce(v_item -> 'metadata', '{}'));
        if not (v_result ->> 'replayed')::boolean then
          v_charged_total := v_charged_total + (v_result ->> 'charged')::bigint;
        end if;
        v_results := array_append(v_results, v_result);
      end loop;
    exception when sqlstate 'PT402' or sqlstate 'PT404' or sqlstate 'PT409' or sqlstate '22023' then
      get stacked diagnostics v_state = returned_sqlstate, v_key = message_text, v_detail = pg_exception_detail, v_hint = pg_exception_hint;
      v_failed := coalesce(nullif(v_detail, '')::jsonb, '{}');
      if v_state = 'PT402' then
        -- The balance before the batch is what the failing item found plus what the items
        -- before it charged (all rolled back now).
        perform private.fail('insufficient_credits', jsonb_build_object(
            'required', v_charged_total + (v_failed ->> 'required')::bigint,
            'available', v_charged_total + (v_failed ->> 'available')::bigint,
            'item', v_index,
            'request_id', v_item ->> 'request_id',
            'operation', v_item ->> 'operation',
            'item_required', (v_failed ->> 'required')::bigint),
          'top up credits, or send fewer items (p_atomic false charges the items that fit)');
      end if;
      -- Any other item error fails the batch with its own key, naming the item.
      raise exception using message = v_key, errcode = v_state,
        detail = (v_failed || jsonb_build_object('item', v_index, 'request_id', v_item ->> 'request_id'))::text,
        hint = coalesce(nullif(v_hint, ''), 'nothing in the batch was charged');
    end;
  else
    -- Locked and due grants settled in the outer transaction: an item's rollback undoes neither.
    perform private.lock_and_settle(v_org_id);
    for v_item, v_index in select e.item, (e.i - 1)::integer from jsonb_array_elements(p_items) with ordinality e(item, i) loop
      begin
        v_result := private.charge(v_org_id, v_user_id, 'consume', v_item ->> 'operation', v_item ->> 'request_id',
          coalesce((v_item ->> 'quantity')::integer, 1), null, coalesce(v_item -> 'metadata', '{}'));
        if not (v_result ->> 'replayed')::boolean then
          v_charged_total := v_charged_total + (v_result ->> 'charged')::bigint;
        end if;
      exception when sqlstate 'PT402' or sqlstate 'PT404' or sqlstate 'PT409' or sqlstate '22023' then
        -- Documented item errors only; anything else (a broken invariant, a cancel) fails the call.
        get stacked diagnostics v_state = returned_sqlstate, v_key = message_text, v_detail = pg_exception_detail;
        v_result := jsonb_build_object(
          'request_id', v_item ->> 'request_id',
          'operation', v_item ->> 'operation',
          'error', v_key,
          'sqlstate', v_state,
          'details', coalesce(nullif(v_detail, '')::jsonb, '{}'));
      end;
      v_results := array_append(v_results, v_result);
    end loop;
  end if;

  return jsonb_build_object(
    'org_id', v_org_id,
    'results', to_jsonb(v_results),
    'charged_total', v_charged_total,
    'balance_after', (select b.available from public.credit_balances b where b.org_id = v_org_id)
  );
end
$$;

revoke all on function public.consume_credits_batch(jsonb, uuid, boolean) from public;
grant execute on function public.consume_credits_batch(jsonb, uuid, boolean) to authenticated;
comment on function public.consume_credits_batch(jsonb, uuid, boolean) is
  'User RPC: charge up to 1000 items {operation, request_id, quantity?, metadata?} to the caller''s org (default: personal) in one transaction, each once per request id (private.charge); atomic (default: all or none) or per item (each result or error key). Answers {org_id, results, charged_total, balance_after}. Errors: invalid_items 22023; atomic mode: the failing item''s key naming it, insufficient_credits PT402 for the batch.';
