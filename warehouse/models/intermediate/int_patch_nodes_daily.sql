-- One row per tenant, managed node and snapshot day: the node's latest state that day (the
-- API snapshot before a Resource Data Sync one of the same moment), joined across nodes,
-- patch states and the Patch compliance summary.
WITH nodes AS (
    SELECT * FROM lake.ssm_nodes
    QUALIFY row_number() OVER (PARTITION BY tenant_id, snapshot_date, node_id
                               ORDER BY snapshot_at DESC, source) = 1
),
states AS (
    SELECT * FROM lake.ssm_patch_states
    QUALIFY row_number() OVER (PARTITION BY tenant_id, snapshot_date, node_id
                               ORDER BY snapshot_at DESC, source) = 1
),
compliance AS (
    SELECT * FROM lake.ssm_compliance
    QUALIFY row_number() OVER (PARTITION BY tenant_id, snapshot_date, node_id
                               ORDER BY snapshot_at DESC, source) = 1
),
ids AS (
    SELECT tenant_id, snapshot_date, node_id FROM nodes
    UNION SELECT tenant_id, snapshot_date, node_id FROM states
    UNION SELECT tenant_id, snapshot_date, node_id FROM compliance
)
SELECT i.tenant_id, i.snapshot_date, i.node_id,
       coalesce(n.account_id, s.account_id, c.account_id) AS account_id,
       coalesce(n.region, s.region, c.region) AS region,
       greatest(n.snapshot_at, s.snapshot_at, c.snapshot_at) AS snapshot_at,
       coalesce(n.source, s.source, c.source) AS source,
       n.computer_name, n.ip_address, n.platform_type, n.platform_name, n.resource_type,
       coalesce(n.is_hybrid, i.node_id LIKE 'mi-%') AS is_hybrid,
       n.ping_status, n.node_state, n.tags,
       -- the tag that puts a node in a patch group, for nodes with no patch state yet
       coalesce(s.patch_group, n.tags['Patch Group'], n.tags['PatchGroup']) AS patch_group,
       s.baseline_id,
       s.installed_count, s.installed_other_count, s.installed_pending_reboot_count,
       s.installed_rejected_count, s.missing_count, s.failed_count, s.not_applicable_count,
       coalesce(s.critical_noncompliant_count, c.noncompliant_critical)
           AS critical_noncompliant_count,
       s.security_noncompliant_count, s.other_noncompliant_count,
       s.operation, s.operation_end_at, c.status AS compliance_status_raw,
       c.overall_severity, c.execution_at, c.noncompliant_count
FROM ids i
LEFT JOIN nodes n USING (tenant_id, snapshot_date, node_id)
LEFT JOIN states s USING (tenant_id, snapshot_date, node_id)
LEFT JOIN compliance c USING (tenant_id, snapshot_date, node_id)
