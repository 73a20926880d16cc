-- One row per tenant, managed node and snapshot day: in scope or not, compliant or not (the
-- SSM Patch compliance summary status decides), critical patches missing, last scan and its
-- age.
SELECT tenant_id, snapshot_date, node_id, account_id, region, snapshot_at, source,
       computer_name, ip_address, platform_type, platform_name, resource_type, is_hybrid,
       ping_status, node_state,
       coalesce(node_state, 'active') NOT IN ('terminated', 'stopped') AS in_scope,
       patch_group, baseline_id,
       coalesce(compliance_status_raw, 'NOT_SCANNED') AS compliance_status,
       coalesce(compliance_status_raw = 'COMPLIANT', false) AS compliant,
       coalesce(critical_noncompliant_count, 0) AS critical_noncompliant_count,
       coalesce(security_noncompliant_count, 0) AS security_noncompliant_count,
       coalesce(missing_count, 0) AS missing_count,
       coalesce(failed_count, 0) AS failed_count,
       coalesce(installed_pending_reboot_count, 0) AS installed_pending_reboot_count,
       coalesce(installed_rejected_count, 0) AS installed_rejected_count,
       coalesce(installed_count, 0) AS installed_count,
       operation AS last_operation,
       coalesce(operation_end_at, execution_at) AS last_scan_at,
       (epoch_us(snapshot_at) - epoch_us(coalesce(operation_end_at, execution_at))) / 3.6e9
           AS scan_age_hours,
       coalesce(operation_end_at, execution_at) IS NULL AS never_scanned,
       coalesce((epoch_us(snapshot_at) - epoch_us(coalesce(operation_end_at, execution_at)))
                > CAST($stale_scan_days AS BIGINT) * 86400000000, false) AS stale_scan
FROM intermediate.int_patch_nodes_daily
