-- One row per tenant, day and source tool: its share of the funnel. Incidents count for the
-- source of their first event.
-- @incremental scope=days
WITH events AS (
    SELECT tenant_id, day, source,
           count(*) AS events_accepted,
           count(*) FILTER (WHERE disposition = 'duplicate') AS duplicates,
           count(*) FILTER (WHERE new_alert) AS alerts
    FROM intermediate.int_event_decisions
    WHERE (tenant_id, day) IN (SELECT tenant_id, day FROM scope_days)  -- incremental only
    GROUP BY ALL
),
incidents AS (
    SELECT i.tenant_id, i.day, e.source, count(*) AS incidents
    FROM marts.fct_incidents i JOIN staging.stg_events e ON e.event_id = i.first_event_id
    WHERE i.counted
      AND (i.tenant_id, i.day) IN (SELECT tenant_id, day FROM scope_days)  -- incremental only
    GROUP BY ALL
)
SELECT tenant_id, day, source,
       coalesce(e.events_accepted, 0) AS events_accepted,
       coalesce(e.duplicates, 0) AS duplicates,
       coalesce(e.alerts, 0) AS alerts,
       coalesce(i.incidents, 0) AS incidents,
       1 - coalesce(i.incidents, 0) / nullif(e.events_accepted, 0) AS noise_reduction
FROM events e FULL JOIN incidents i USING (tenant_id, day, source)
