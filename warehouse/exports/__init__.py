"""BI exports of the curated marts: CSV + manifests for QuickSight, Parquet + Glue tables for
Athena, row-level security rules, and the QuickSight provisioning that reads them.

`warehouse.exports.quicksight.export_marts` writes the exports (atomically per table);
`warehouse.exports.provision` creates or updates the QuickSight resources that read them.
See docs/quicksight.md.
"""
