-- One row per tenant, day and source tool: alert quality over its accepted, non-duplicate
-- events (SEMANTICS.md: % with an asset, a mapped severity and a resolve path).
-- @incremental scope=days
SELECT tenant_id, day, source, count(*) AS events,
       avg(CASE WHEN missing_asset THEN 0 ELSE 1 END) AS with_asset_share,
       avg(CASE WHEN severity_mapped THEN 1 ELSE 0 END) AS severity_mapped_share,
       avg(CASE WHEN has_resolve_path THEN 1 ELSE 0 END) AS resolve_path_share
FROM intermediate.int_event_decisions
WHERE NOT is_duplicate
  AND (tenant_id, day) IN (SELECT tenant_id, day FROM scope_days)  -- incremental only
GROUP BY ALL
