-- One row per alert occurrence (R3): the events of one (tenant, source, fingerprint) from the
-- firing that started it (new_alert) up to the next start, in event time (R14 ties by
-- ingest_seq); each point event is its own occurrence. A refresh recomputes an alert from
-- the last occurrence that started before its earliest changed event (occurrence numbers
-- continue from there).
-- @incremental scope=alerts
WITH members AS (
    SELECT d.*, d.status = 'point' AS is_point,
           sum(CASE WHEN d.new_alert THEN 1 ELSE 0 END) OVER (
               PARTITION BY d.tenant_id, d.source, d.source_fingerprint, d.status = 'point'
               ORDER BY d.event_time, d.ingest_seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
               + s.from_no - 1  -- incremental only
               AS occurrence_no
    FROM intermediate.int_event_decisions d
    JOIN scope_alerts s ON s.tenant_id = d.tenant_id AND s.source = d.source AND s.source_fingerprint = d.source_fingerprint AND s.kind = CASE WHEN d.status = 'point' THEN 'point' ELSE 'stateful' END  -- incremental only
    WHERE d.disposition = 'member'
      AND (s.from_time IS NULL OR d.event_time > s.from_time OR (d.event_time = s.from_time AND d.ingest_seq >= s.from_seq))  -- incremental only
),
occurrences AS (  -- its first row (in event time, ingest_seq) is its one new_alert row
    SELECT tenant_id, source, source_fingerprint, is_point, occurrence_no,
           any_value(event_id) FILTER (WHERE new_alert) AS first_event_id,
           any_value(ingest_seq) FILTER (WHERE new_alert) AS first_seq,
           any_value(incident_id) FILTER (WHERE new_alert) AS incident_id,
           any_value(agg_key) FILTER (WHERE new_alert) AS agg_key,
           any_value(asset) FILTER (WHERE new_alert) AS asset,
           any_value(signature) FILTER (WHERE new_alert) AS signature,
           any_value(settings_version) FILTER (WHERE new_alert) AS settings_version,
           min(event_time) AS started_at,
           max(event_time) FILTER (WHERE status <> 'resolved') AS last_fired_at,
           max(event_time) AS last_event_at,
           max(event_time) FILTER (WHERE status = 'resolved') AS resolved_at,
           count(*) AS event_count,
           count(DISTINCT incident_id) AS incident_count,
           max(CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'warning' THEN 2
                             ELSE 1 END) AS severity_rank
    FROM members
    WHERE occurrence_no > 0
    GROUP BY ALL
)
SELECT o.*, CASE WHEN o.is_point THEN 'point' ELSE 'stateful' END AS kind,
       lead(o.started_at) OVER (
           PARTITION BY o.tenant_id, o.source, o.source_fingerprint, o.is_point
           ORDER BY o.occurrence_no) AS next_started_at,
       coalesce(s.stale_after_by_source[o.source], s.stale_after_us, 86400000000) AS stale_after_us
FROM occurrences o
LEFT JOIN staging.stg_settings s ON s.tenant_id = o.tenant_id AND s.label = o.settings_version
