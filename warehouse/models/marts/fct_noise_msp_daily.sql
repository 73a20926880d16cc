-- One row per day: the MSP roll-up over tenants (R1: per-tenant results aggregated), both
-- labelled ratios of SEMANTICS.md.
SELECT day,
       count(*) FILTER (WHERE events_accepted > 0) AS tenants,
       sum(events_accepted)::BIGINT AS events_accepted,
       sum(duplicates)::BIGINT AS duplicates,
       sum(alerts)::BIGINT AS alerts,
       sum(incidents)::BIGINT AS incidents,
       1 - sum(incidents) / nullif(sum(events_accepted), 0) AS noise_reduction_event_weighted,
       avg(noise_reduction) AS noise_reduction_tenant_mean,
       sum(resolved_incidents)::BIGINT AS resolved_incidents,
       sum(stale_incidents)::BIGINT AS stale_incidents
FROM marts.fct_noise_daily
GROUP BY day
