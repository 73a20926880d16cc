-- One row per tenant, day and aggregation key: member events and counted incidents.
-- @incremental scope=days
WITH events AS (
    SELECT tenant_id, day, agg_key,
           count(*) AS member_events,
           list(DISTINCT source ORDER BY source) AS sources,
           arg_min(asset, ingest_seq) AS asset, arg_min(signature, ingest_seq) AS signature
    FROM intermediate.int_event_decisions
    WHERE disposition = 'member'
      AND (tenant_id, day) IN (SELECT tenant_id, day FROM scope_days)  -- incremental only
    GROUP BY ALL
),
incidents AS (
    SELECT tenant_id, day, agg_key, count(*) AS incidents,
           count(*) FILTER (WHERE flap_count >= 1) AS flapping_incidents,
           sum(flap_count)::BIGINT AS flaps
    FROM marts.fct_incidents
    WHERE counted
      AND (tenant_id, day) IN (SELECT tenant_id, day FROM scope_days)  -- incremental only
    GROUP BY ALL
)
SELECT tenant_id, day, agg_key, e.asset, e.signature, coalesce(e.sources, []) AS sources,
       coalesce(e.member_events, 0) AS member_events,
       coalesce(i.incidents, 0) AS incidents,
       coalesce(i.flapping_incidents, 0) AS flapping_incidents,
       coalesce(i.flaps, 0) AS flaps
FROM events e FULL JOIN incidents i USING (tenant_id, day, agg_key)
