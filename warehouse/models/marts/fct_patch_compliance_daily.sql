-- One row per tenant per snapshot day: the compliance scorecard (SEMANTICS.md, patch
-- compliance). Never-scanned nodes count in the denominator as not compliant; terminated and
-- stopped nodes are out of scope.
WITH errors AS (
    SELECT tenant_id, snapshot_date, count(*) AS collection_errors
    FROM lake.ssm_errors GROUP BY ALL
)
SELECT n.tenant_id, n.snapshot_date,
       max(n.snapshot_at) AS snapshot_at,
       count(*) FILTER (WHERE in_scope) AS in_scope_nodes,
       count(*) FILTER (WHERE in_scope AND compliant) AS compliant_nodes,
       count(*) FILTER (WHERE in_scope AND NOT compliant) AS noncompliant_nodes,
       100.0 * count(*) FILTER (WHERE in_scope AND compliant)
           / nullif(count(*) FILTER (WHERE in_scope), 0) AS compliance_pct,
       100.0 * count(*) FILTER (WHERE in_scope AND compliant AND NOT stale_scan)
           / nullif(count(*) FILTER (WHERE in_scope), 0) AS compliance_pct_strict,
       coalesce(sum(critical_noncompliant_count) FILTER (WHERE in_scope), 0)::BIGINT
           AS critical_noncompliant_count,
       count(*) FILTER (WHERE in_scope AND critical_noncompliant_count > 0)
           AS nodes_missing_critical,
       max(scan_age_hours) FILTER (WHERE in_scope) AS oldest_scan_age_hours,
       min(scan_age_hours) FILTER (WHERE in_scope) AS newest_scan_age_hours,
       count(*) FILTER (WHERE in_scope AND stale_scan) AS stale_scan_nodes,
       count(*) FILTER (WHERE in_scope AND never_scanned) AS never_scanned_nodes,
       count(*) FILTER (WHERE in_scope AND is_hybrid) AS hybrid_nodes,
       count(*) FILTER (WHERE NOT in_scope) AS out_of_scope_nodes,
       count(DISTINCT account_id) AS accounts,
       count(DISTINCT region) AS regions,
       coalesce(any_value(e.collection_errors), 0) AS collection_errors
FROM marts.fct_patch_compliance_node_daily n
LEFT JOIN errors e USING (tenant_id, snapshot_date)
GROUP BY n.tenant_id, n.snapshot_date
