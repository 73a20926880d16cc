-- One row per tenant, patch group and snapshot day: the scorecard within the group (nodes
-- without a patch group are grouped as '(none)').
SELECT tenant_id, snapshot_date, coalesce(patch_group, '(none)') AS patch_group,
       count(*) FILTER (WHERE in_scope) AS in_scope_nodes,
       count(*) FILTER (WHERE in_scope AND compliant) AS compliant_nodes,
       100.0 * count(*) FILTER (WHERE in_scope AND compliant)
           / nullif(count(*) FILTER (WHERE in_scope), 0) AS compliance_pct,
       coalesce(sum(critical_noncompliant_count) FILTER (WHERE in_scope), 0)::BIGINT
           AS critical_noncompliant_count,
       count(*) FILTER (WHERE in_scope AND stale_scan) AS stale_scan_nodes,
       count(*) FILTER (WHERE in_scope AND never_scanned) AS never_scanned_nodes
FROM marts.fct_patch_compliance_node_daily
GROUP BY ALL
