"""Both collection paths into the marts: the demo Resource Data Sync read through the pipeline
(`aw pipeline run` takes today's snapshot), and the API path's failures isolated."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.run import run_once
from tests.pipelines.conftest import rows
from warehouse.config import platform_settings
from warehouse.lake import open_lake
from warehouse.registry import Registry
from warehouse.ssm.collect import sync_uri, take_snapshot
from warehouse.ssm.demo import DEFAULT_TENANTS, write_demo_sync


@pytest.fixture
def demo_registry(data_dir):
    settings = platform_settings()
    with Registry.open(settings) as registry:
        for tenant, accounts in DEFAULT_TENANTS.items():
            registry.create_tenant(tenant, name=tenant.title())
            for account in accounts:
                registry.set_aws_account(tenant, account)  # Resource Data Sync only
    sync = data_dir / "ssm-sync"
    sync.mkdir(parents=True)
    local = open_lake(str(sync))
    write_demo_sync(local.fs, local.root, datetime.now(UTC))
    return settings


def test_demo_sync_through_the_pipeline(demo_registry, published) -> None:
    assert sync_uri(demo_registry).endswith("/ssm-sync")
    summary = run_once(echo=lambda _line: None)
    assert "ssm_snapshot" in summary.steps
    acme = rows(published(), "SELECT * FROM marts.fct_patch_compliance_daily "
                             "WHERE tenant_id = 'acme'")[0]
    # per account and region: web-1 C, web-2 NC (1 critical), db-1 NC (1 critical),
    # db-2 hybrid C with a stale scan; per account: new-1 never scanned, old-1 terminated.
    # acme has 2 accounts x 2 regions.
    assert (acme["in_scope_nodes"], acme["compliant_nodes"]) == (18, 8)
    assert acme["compliance_pct"] == pytest.approx(100 * 8 / 18)
    assert acme["critical_noncompliant_count"] == 8
    assert (acme["stale_scan_nodes"], acme["never_scanned_nodes"]) == (4, 2)
    assert (acme["hybrid_nodes"], acme["out_of_scope_nodes"]) == (4, 2)
    groups = {r["patch_group"] for r in rows(published(), """
        SELECT patch_group FROM marts.fct_patch_compliance_group_daily
        WHERE tenant_id = 'globex'""")}
    assert {"prod-web", "prod-db"} <= groups
    # a second run the same day takes no second snapshot and finds nothing to do
    assert run_once(echo=lambda _line: None).up_to_date


def test_unreachable_role_is_reported_and_the_sync_still_read(demo_registry,
                                                              monkeypatch) -> None:
    with Registry.open(demo_registry) as registry:
        registry.create_tenant("umbrella", name="Umbrella")
        registry.set_aws_account("umbrella", "555555555555",
                                 role_arn="arn:aws:iam::555555555555:role/Read",
                                 external_id="umbrella-ext-1", regions=["us-east-1"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")  # nothing listens
    platform_settings.cache_clear()
    taken = take_snapshot(platform_settings(), datetime.now(UTC))
    assert any("555555555555" in e and "assume_role" in e for e in taken.errors)
    assert not any("umbrella-ext-1" in e for e in taken.errors)  # no secret in a message
    assert {"acme", "globex", "initech"} <= set(taken.tenants)
