-- One row per event received, with the incident it joined and why (SEMANTICS.md
-- "Every grouping decision is explainable").
-- @incremental scope=events
-- @view
SELECT event_id, tenant_id, ingest_seq, day, received_at, event_time, occurred_at,
       source, source_fingerprint, asset, signature, severity, status, labels, delivery_id,
       disposition, incident_id, agg_key, rule,
       CASE rule
           WHEN 'new' THEN CASE WHEN gap_us IS NULL
                THEN 'opened an incident: first activity on its key'
                ELSE format('opened an incident: {} s after the key''s last activity, beyond the {} s window, nothing of the key firing (R5)',
                            gap_us // 1000000, window_us // 1000000) END
           WHEN 'R5a' THEN 'joined: an alert of the incident was still firing (R5a)'
           WHEN 'R5b' THEN format('joined: {} s after the last activity, within the {} s window (R5b)',
                                  gap_us // 1000000, window_us // 1000000)
           WHEN 'R6-cap' THEN 'opened a linked incident: the previous one reached its cap M (R6)'
           WHEN 'R7-reopen' THEN format('reopened the resolved incident {} s after its last activity, within the {} s window; a flap (R7)',
                                        gap_us // 1000000, window_us // 1000000)
           WHEN 'R7-resolve' THEN 'resolved its alert in the incident (R7)'
           WHEN 'R4-missing-asset' THEN 'its own incident: no asset and no fingerprint (R4)'
           WHEN 'R2' THEN 'exact duplicate: counted, not processed (R2)'
           WHEN 'R9' THEN 'too late: older than the lateness horizon, not correlated (R9)'
           WHEN 'R12' THEN 'orphan resolve: no open alert to resolve (R12)'
           WHEN 'R11' THEN 'stale resolve: its alert fired again later (R11)'
       END || CASE WHEN len(merged_incidents) > 0
                   THEN '; its arrival merged ' || array_to_string(merged_incidents, ', ')
                        || ' into this incident (R10)'
                   ELSE '' END AS join_reason,
       gap_us / 1e6 AS gap_seconds, window_us / 1e6 AS window_seconds, settings_version,
       clock_skew, flap, new_alert, merged_incidents, is_duplicate, duplicate_of
FROM intermediate.int_event_decisions
WHERE rowid IN (SELECT x.rowid FROM intermediate.int_event_decisions x JOIN scope_events s USING (event_id))  -- incremental only
