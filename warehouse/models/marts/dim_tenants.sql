-- One row per tenant: who it is, the correlation settings in force now, and its data span.
WITH data AS (
    SELECT tenant_id, count(*) AS events_total, min(received_at) AS first_received_at,
           max(received_at) AS last_received_at
    FROM staging.stg_events GROUP BY tenant_id
),
current AS (
    SELECT * FROM staging.stg_settings
    QUALIFY row_number() OVER (PARTITION BY tenant_id
                               ORDER BY effective_at DESC, version DESC) = 1
)
SELECT t.tenant_id, t.name, t.created_at,
       c.label AS settings_version, c.effective_at AS settings_effective_at,
       c.window_us / 1e6 AS window_seconds, c.cap_us / 1e6 AS cap_seconds,
       c.threshold, c.key_fields, c.lateness_us / 1e6 AS lateness_seconds,
       c.stale_after_us / 1e6 AS stale_after_seconds,
       map_from_entries([struct_pack(key := e.key, value := e.value / 1e6)
                         FOR e IN map_entries(c.stale_after_by_source)])
           AS stale_after_by_source_seconds,
       c.clock_skew_us / 1e6 AS clock_skew_seconds,
       coalesce(d.events_total, 0) AS events_total, d.first_received_at, d.last_received_at
FROM staging.stg_tenants t
LEFT JOIN current c USING (tenant_id)
LEFT JOIN data d USING (tenant_id)
