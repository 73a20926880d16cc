-- One row per event received (accepted events and exact duplicates), as staged from the lake.
-- Duplicates keep only what raw/duplicates stores; their alert fields are null.
SELECT tenant_id, event_id, ingest_seq, date AS receive_date, source, source_fingerprint,
       source_alert_id, delivery_id, asset, signature, severity, raw_severity, status,
       occurred_at, occurred_at_defaulted, received_at, message, labels,
       missing_asset, severity_mapped, has_resolve_path,
       false AS is_duplicate, CAST(NULL AS VARCHAR) AS duplicate_of
FROM lake.raw_alerts
UNION ALL BY NAME
SELECT tenant_id, event_id, ingest_seq, date AS receive_date, source, source_fingerprint,
       delivery_id, occurred_at, received_at, true AS is_duplicate, duplicate_of
FROM lake.raw_duplicates
