-- One row per tenant and alerting asset that is both noisy (member events in the tenant's last
-- 7 days of alert data) and, at the tenant's latest snapshot, an in-scope node missing
-- critical patches. Matching, first rule that applies: the asset is the node id (i-…, mi-…),
-- its computer name, or its short host name; else a host label of the asset's events
-- (instance_id, host, hostname, host.name, instance without its :port) matches one of these.
WITH latest AS (
    SELECT tenant_id, max(snapshot_date) AS snapshot_date
    FROM marts.fct_patch_compliance_node_daily GROUP BY tenant_id
),
nodes AS (
    SELECT n.* FROM marts.fct_patch_compliance_node_daily n JOIN latest USING (tenant_id, snapshot_date)
    WHERE n.in_scope
),
node_keys AS (
    SELECT tenant_id, node_id, lower(node_id) AS k, 'node_id' AS rule, 1 AS priority FROM nodes
    UNION ALL
    SELECT tenant_id, node_id, lower(computer_name), 'computer_name', 2 FROM nodes
    WHERE computer_name IS NOT NULL
    UNION ALL
    SELECT tenant_id, node_id, lower(split_part(computer_name, '.', 1)), 'short_name', 3
    FROM nodes WHERE computer_name LIKE '%.%'
),
span AS (  -- only tenants with a node at risk can have a row
    SELECT tenant_id, max(day) AS last_day FROM intermediate.int_event_decisions
    WHERE tenant_id IN (SELECT tenant_id FROM nodes WHERE critical_noncompliant_count > 0)
    GROUP BY tenant_id
),
noisy AS (
    SELECT d.tenant_id, lower(trim(d.asset)) AS asset, count(*) AS member_events,
           count(DISTINCT d.incident_id) AS incidents
    FROM intermediate.int_event_decisions d JOIN span s USING (tenant_id)
    WHERE d.disposition = 'member' AND d.day > s.last_day - 7
      AND trim(coalesce(d.asset, '')) <> ''
    GROUP BY ALL
),
labels AS (
    SELECT DISTINCT tenant_id, asset,
           lower(regexp_replace(trim(kv.value), ':[0-9]+$', '')) AS host
    FROM (SELECT e.tenant_id, lower(trim(e.asset)) AS asset, unnest(map_entries(e.labels)) AS kv
          FROM staging.stg_events e SEMI JOIN noisy n
               ON n.tenant_id = e.tenant_id AND n.asset = lower(trim(e.asset))
          WHERE e.labels IS NOT NULL)
    WHERE kv.key IN ('instance_id', 'host', 'hostname', 'host.name', 'instance')
),
asset_keys AS (
    SELECT tenant_id, asset, asset AS k, false AS via_label FROM noisy
    UNION ALL
    SELECT l.tenant_id, l.asset, l.host, true FROM labels l JOIN noisy USING (tenant_id, asset)
),
matched AS (
    SELECT a.tenant_id, a.asset, k.node_id,
           CASE WHEN a.via_label THEN 'label:' ELSE '' END || k.rule AS matched_by
    FROM asset_keys a JOIN node_keys k ON a.tenant_id = k.tenant_id AND a.k = k.k
    QUALIFY row_number() OVER (PARTITION BY a.tenant_id, a.asset
                               ORDER BY a.via_label, k.priority, k.node_id) = 1
)
SELECT m.tenant_id, m.asset, m.node_id, m.matched_by, n.computer_name, n.account_id,
       n.region, n.patch_group, n.is_hybrid, n.snapshot_date, n.compliance_status,
       n.critical_noncompliant_count, n.missing_count, n.last_scan_at, n.scan_age_hours,
       x.member_events AS member_events_7d, x.incidents AS incidents_7d,
       row_number() OVER (PARTITION BY m.tenant_id
                          ORDER BY n.critical_noncompliant_count DESC, x.incidents DESC,
                                   m.asset) AS risk_rank
FROM matched m
JOIN nodes n USING (tenant_id, node_id)
JOIN noisy x USING (tenant_id, asset)
WHERE n.critical_noncompliant_count > 0
