-- One row per alert occurrence (R3); its status at its tenant's clock.
-- @incremental scope=alerts also=status = 'open'
SELECT 'alt_' || sha256(tenant_id || chr(31) || first_event_id)[:20] AS alert_id,
       tenant_id, source, source_fingerprint, kind, a.occurrence_no,
       asset, signature, agg_key, incident_id, first_event_id, settings_version,
       started_at, CAST(started_at AS DATE) AS day, last_event_at, resolved_at,
       CASE WHEN is_point THEN 'point'
            WHEN resolved_at IS NOT NULL THEN 'resolved'
            WHEN next_started_at IS NOT NULL
                 OR epoch_us(last_fired_at) + stale_after_us < clock_us
                 THEN 'stale'
            ELSE 'open' END AS status,
       CASE WHEN resolved_at IS NOT NULL
            THEN (epoch_us(resolved_at) - epoch_us(started_at)) / 1e6 END
           AS seconds_to_resolve,
       ['info', 'warning', 'high', 'critical'][severity_rank] AS severity,
       event_count, incident_count
FROM intermediate.int_alerts a
JOIN corr.clocks USING (tenant_id)
JOIN scope_alerts s USING (tenant_id, source, source_fingerprint, kind)  -- incremental only
WHERE a.occurrence_no >= s.from_no  -- incremental only
