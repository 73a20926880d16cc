-- One row per visible live incident: when it became visible, the receive time of the member
-- event that brought it to its threshold N (members in ingest order, counting firing and
-- point events, not resolves, R13).
-- @incremental scope=incidents
WITH counted AS (
    SELECT d.incident_id, d.received_at,
           row_number() OVER (PARTITION BY d.incident_id ORDER BY d.ingest_seq) AS rank
    FROM intermediate.int_event_decisions d
    WHERE d.disposition = 'member' AND d.rule <> 'R7-resolve'
      AND d.incident_id IN (SELECT incident_id FROM scope_incidents)  -- incremental only
)
SELECT i.incident_id, c.received_at AS visible_at
FROM intermediate.int_incidents i
LEFT JOIN staging.stg_settings s ON s.tenant_id = i.tenant_id AND s.label = i.settings_version
JOIN counted c ON c.incident_id = i.incident_id AND c.rank = coalesce(s.threshold, 1)
WHERE i.visible AND i.merged_into IS NULL
  AND i.incident_id IN (SELECT incident_id FROM scope_incidents)  -- incremental only
