-- One row per incident, merged ones included (merged_into set; they are not counted).
-- @incremental scope=incidents
WITH recurrence AS (
    -- R: another counted incident of the key with last_activity in [first_seen - 7 d,
    -- first_seen]; a key's incidents follow each other in event time, so the previous
    -- one's last activity decides.
    SELECT incident_id,
           coalesce(lag(last_activity) OVER (PARTITION BY tenant_id, agg_key
                                             ORDER BY first_seen, incident_id)
                    >= first_seen - to_days(CAST($recurrence_days AS INTEGER)), false) AS recurs
    FROM intermediate.int_incidents i
    -- (a refresh reads each key in scope from the counted incident before its earliest one
    -- in scope, ties included: the lag of every incident in scope is then the full one's)
    JOIN (SELECT s.tenant_id, s.agg_key, coalesce(max(p.first_seen), s.since) AS since FROM (SELECT tenant_id, agg_key, min(first_seen) AS since FROM intermediate.int_incidents WHERE incident_id IN (SELECT incident_id FROM scope_incidents) GROUP BY ALL) s LEFT JOIN intermediate.int_incidents p ON p.tenant_id = s.tenant_id AND p.agg_key = s.agg_key AND p.first_seen < s.since AND p.visible AND p.merged_into IS NULL GROUP BY s.tenant_id, s.agg_key, s.since) b USING (tenant_id, agg_key)  -- incremental only
    WHERE visible AND merged_into IS NULL
      AND i.first_seen >= b.since  -- incremental only
),
members AS (
    SELECT incident_id, list(DISTINCT source ORDER BY source) AS sources
    FROM intermediate.int_event_decisions
    WHERE disposition = 'member'
      AND incident_id IN (SELECT incident_id FROM scope_incidents)  -- incremental only
    GROUP BY incident_id
)
SELECT i.incident_id, i.tenant_id, i.agg_key, f.asset, f.signature, coalesce(m.sources, []) AS sources,
       i.first_seen, CAST(i.first_seen AS DATE) AS day, i.last_activity, i.resolved_at,
       i.status, i.severity, i.event_count, i.alert_count, i.flap_count,
       i.merged_into, i.linked_to, i.visible, i.missing_asset,
       i.visible AND i.merged_into IS NULL AS counted,
       i.settings_version, i.first_event_id,
       CASE WHEN i.status = 'resolved'
            THEN (epoch_us(i.resolved_at) - epoch_us(i.first_seen)) / 1e6 END
           AS seconds_to_resolve,
       coalesce(r.recurs, false) AS recurs,
       v.visible_at,
       (epoch_us(v.visible_at) - epoch_us(i.first_seen)) / 1e6 AS seconds_to_visible
FROM intermediate.int_incidents i
LEFT JOIN staging.stg_events f ON f.event_id = i.first_event_id
LEFT JOIN members m ON m.incident_id = i.incident_id
LEFT JOIN intermediate.int_incident_visibility v ON v.incident_id = i.incident_id
LEFT JOIN recurrence r ON r.incident_id = i.incident_id
WHERE i.incident_id IN (SELECT incident_id FROM scope_incidents)  -- incremental only
