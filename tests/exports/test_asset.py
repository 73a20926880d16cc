"""The `quicksight_exports` Dagster asset: it loads beside the pipeline's assets, downstream
of the published warehouse, and materializes in-process with per-table metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from pipelines.assets import ALL_ASSETS, PUBLISHED
from pipelines.checks import ALL_CHECKS
from pipelines.exports import EXPORT_ASSETS, QUICKSIGHT_EXPORTS, quicksight_exports
from pipelines.resources import resources
from warehouse.exports.catalog import EXPORT_TABLES, short_name


def test_definitions_load_with_the_exports_asset() -> None:
    defs = dg.Definitions(assets=[*ALL_ASSETS, *EXPORT_ASSETS], asset_checks=ALL_CHECKS,
                          resources=resources())
    dg.Definitions.validate_loadable(defs)
    node = defs.resolve_asset_graph().get(QUICKSIGHT_EXPORTS)
    assert node.group_name == "exports"
    assert PUBLISHED in node.parent_keys
    assert "Grain:" in (node.description or "")


def test_materialize_exports_every_mart_with_metadata(env: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    mapping = tmp_path / "rls.json"
    mapping.write_text(json.dumps({"groups": {"acme-readers": ["acme"]}}))
    env.setenv("AW_QUICKSIGHT_RLS_FILE", str(mapping))
    result = dg.materialize([quicksight_exports], resources=resources())
    assert result.success
    (mat,) = result.asset_materializations_for_node("quicksight_exports")
    meta: dict[str, Any] = {k: v.value for k, v in mat.metadata.items()}
    for table in EXPORT_TABLES:
        name = short_name(table)
        assert meta[f"{name}/version"] == meta["version"]
        assert meta[f"{name}/bytes"] > 0 and meta[f"{name}/rows"] >= 0
    assert meta["fct_noise_daily/rows"] == 2
    assert meta["rls_tenant_permissions/rows"] == 1
    assert meta["dagster/row_count"] == sum(
        v for k, v in meta.items() if k.endswith("/rows"))
    assert (tmp_path / "lake" / "exports" / "quicksight" / "fct_noise_daily" /
            "manifest.json").exists()
