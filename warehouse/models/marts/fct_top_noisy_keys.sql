-- One row per tenant and aggregation key active in the tenant's last $top_days days of data
-- (ending at its latest day): totals and deterministic ranks (ties broken by the key).
WITH latest AS (SELECT tenant_id, max(day) AS last_day FROM marts.fct_noisy_keys_daily
                GROUP BY tenant_id),
totals AS (
    SELECT k.tenant_id, k.agg_key, any_value(k.asset) AS asset,
           any_value(k.signature) AS signature,
           list_sort(list_distinct(flatten(list(k.sources)))) AS sources,
           sum(k.member_events)::BIGINT AS member_events, sum(k.incidents)::BIGINT AS incidents,
           sum(k.flapping_incidents)::BIGINT AS flapping_incidents, sum(k.flaps)::BIGINT AS flaps,
           min(l.last_day) - CAST($top_days AS INTEGER) + 1 AS period_start,
           min(l.last_day) AS period_end
    FROM marts.fct_noisy_keys_daily k JOIN latest l USING (tenant_id)
    WHERE k.day > l.last_day - CAST($top_days AS INTEGER)
    GROUP BY k.tenant_id, k.agg_key
)
SELECT *,
       row_number() OVER (PARTITION BY tenant_id ORDER BY member_events DESC, agg_key)
           AS rank_by_events,
       row_number() OVER (PARTITION BY tenant_id ORDER BY incidents DESC, agg_key)
           AS rank_by_incidents,
       member_events / nullif(incidents, 0) AS events_per_incident
FROM totals
