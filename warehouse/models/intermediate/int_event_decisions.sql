-- One row per event: the engine's explanation (corr.memberships) with the event's own fields,
-- its correlation day, and the incidents its arrival merged (R10).
-- @incremental scope=events
WITH merged AS (
    SELECT tenant_id, arrival_seq, list(incident_id ORDER BY incident_id) AS merged_incidents
    FROM corr.merges GROUP BY tenant_id, arrival_seq
)
SELECT m.event_id, m.tenant_id, m.ingest_seq, m.incident_id, m.agg_key, m.disposition, m.rule,
       m.event_time, m.received_at,
       CAST(coalesce(m.event_time, m.received_at) AS DATE) AS day,
       m.clock_skew, m.gap_us, m.window_us, m.settings_version, m.flap, m.new_alert,
       e.source, e.source_fingerprint, e.asset, e.signature, e.severity, e.status,
       e.is_duplicate, e.duplicate_of, e.occurred_at, e.missing_asset, e.severity_mapped,
       e.labels, e.delivery_id,
       e.has_resolve_path,
       coalesce(g.merged_incidents, []) AS merged_incidents
FROM corr.memberships m
JOIN staging.stg_events e USING (event_id)
LEFT JOIN merged g ON g.tenant_id = m.tenant_id AND g.arrival_seq = m.ingest_seq
WHERE m.rowid IN (SELECT x.rowid FROM corr.memberships x JOIN scope_events s USING (event_id))  -- incremental only
