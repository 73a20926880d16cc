-- One row per tenant per day (UTC date of the event time; of the receive time for events
-- without one): the funnel and every KPI of SEMANTICS.md. Events count on their own day,
-- alerts and incidents on the day they started, so summing days gives the period's funnel.
-- @incremental scope=days
WITH events AS (
    SELECT tenant_id, day,
           count(*) AS events_accepted,
           count(*) FILTER (WHERE disposition = 'duplicate') AS duplicates,
           count(*) FILTER (WHERE new_alert) AS alerts,
           count(*) FILTER (WHERE disposition = 'too_late') AS too_late,
           count(*) FILTER (WHERE clock_skew) AS clock_skew,
           count(*) FILTER (WHERE disposition = 'orphan_resolved') AS orphan_resolved,
           count(*) FILTER (WHERE disposition = 'stale_resolve') AS stale_resolves,
           count(*) FILTER (WHERE disposition NOT IN ('duplicate', 'too_late')
                            AND missing_asset) AS missing_asset
    FROM intermediate.int_event_decisions
    WHERE (tenant_id, day) IN (SELECT tenant_id, day FROM scope_days)  -- incremental only
    GROUP BY ALL
),
incidents AS (
    SELECT tenant_id, day,
           count(*) FILTER (WHERE counted) AS incidents,
           count(*) FILTER (WHERE counted AND linked_to IS NOT NULL) AS linked_incidents,
           count(*) FILTER (WHERE merged_into IS NOT NULL) AS merged_incidents,
           coalesce(sum(event_count) FILTER (WHERE NOT visible AND merged_into IS NULL), 0)::BIGINT
               AS below_threshold,
           count(*) FILTER (WHERE counted AND flap_count >= 1) AS flapping_incidents,
           count(*) FILTER (WHERE counted AND recurs) AS recurring_incidents,
           count(*) FILTER (WHERE counted AND status = 'resolved') AS resolved_incidents,
           count(*) FILTER (WHERE counted AND status = 'stale') AS stale_incidents,
           count(*) FILTER (WHERE counted AND status = 'open') AS open_incidents,
           median(alert_count) FILTER (WHERE counted) AS alerts_per_incident_median,
           median(event_count) FILTER (WHERE counted) AS events_per_incident_median,
           avg(seconds_to_resolve) FILTER (WHERE counted) AS mttr_mean_seconds,
           quantile_cont(seconds_to_resolve, 0.5) FILTER (WHERE counted) AS mttr_p50_seconds,
           quantile_cont(seconds_to_resolve, 0.9) FILTER (WHERE counted) AS mttr_p90_seconds,
           quantile_cont(seconds_to_visible, 0.5) FILTER (WHERE counted)
               AS time_to_incident_p50_seconds
    FROM marts.fct_incidents
    WHERE (tenant_id, day) IN (SELECT tenant_id, day FROM scope_days)  -- incremental only
    GROUP BY ALL
),
days AS (SELECT tenant_id, day FROM events UNION SELECT tenant_id, day FROM incidents)
SELECT d.tenant_id, d.day,
       coalesce(e.events_accepted, 0) AS events_accepted,
       coalesce(e.duplicates, 0) AS duplicates,
       coalesce(e.events_accepted, 0) - coalesce(e.duplicates, 0) AS unique_events,
       coalesce(e.alerts, 0) AS alerts,
       coalesce(i.incidents, 0) AS incidents,
       coalesce(i.linked_incidents, 0) AS linked_incidents,
       coalesce(i.merged_incidents, 0) AS merged_incidents,
       coalesce(i.below_threshold, 0) AS below_threshold,
       coalesce(e.too_late, 0) AS too_late,
       coalesce(e.clock_skew, 0) AS clock_skew,
       coalesce(e.orphan_resolved, 0) AS orphan_resolved,
       coalesce(e.stale_resolves, 0) AS stale_resolves,
       coalesce(e.missing_asset, 0) AS missing_asset,
       1 - coalesce(i.incidents, 0) / nullif(e.events_accepted, 0) AS noise_reduction,
       1 - coalesce(e.alerts, 0) / nullif(e.events_accepted - e.duplicates, 0) AS dedup_rate,
       1 - coalesce(i.incidents, 0) / nullif(e.alerts, 0) AS correlation_compression,
       coalesce(e.alerts, 0) / nullif(i.incidents, 0) AS alerts_per_incident_mean,
       i.alerts_per_incident_median,
       (coalesce(e.events_accepted, 0) - coalesce(e.duplicates, 0)) / nullif(i.incidents, 0)
           AS events_per_incident_mean,
       i.events_per_incident_median,
       coalesce(e.too_late, 0) / nullif(e.events_accepted, 0) AS suppression_share_too_late,
       coalesce(i.below_threshold, 0) / nullif(e.events_accepted, 0)
           AS suppression_share_below_threshold,
       coalesce(i.flapping_incidents, 0) AS flapping_incidents,
       coalesce(i.flapping_incidents, 0) / nullif(i.incidents, 0) AS flap_rate,
       coalesce(i.resolved_incidents, 0) AS resolved_incidents,
       coalesce(i.stale_incidents, 0) AS stale_incidents,
       coalesce(i.open_incidents, 0) AS open_incidents,
       i.mttr_mean_seconds, i.mttr_p50_seconds, i.mttr_p90_seconds,
       i.time_to_incident_p50_seconds,
       coalesce(i.recurring_incidents, 0) AS recurring_incidents,
       coalesce(i.recurring_incidents, 0) / nullif(i.incidents, 0) AS recurrence_rate
FROM days d
LEFT JOIN events e USING (tenant_id, day)
LEFT JOIN incidents i USING (tenant_id, day)
