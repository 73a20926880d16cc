"""The dashboards' fixture warehouse: a real one, built by the real pipeline.

`build(data_dir)` fills a platform under `data_dir` (the caller points `AW_DATA_DIR` at it):

- the registry: tenants acme, globex and initech with the demo AWS accounts
  (`warehouse.ssm.demo.DEFAULT_TENANTS`, Resource Data Sync only), hooli, a client with
  alerts but no AWS account (no patch data), and umbrella, a client registered with
  nothing yet; globex runs a 10-minute window;
- the demo SSM Resource Data Sync in `$AW_DATA_DIR/ssm-sync` (taken as today's snapshot by
  the pipeline), and six earlier daily snapshots for the 30-day trend. The demo fleet has the
  same shape in every account and region; a tenant read in one region only is 40 %
  compliant, in two 44.4 % (acme 8/18). acme improves (one region in the three oldest
  snapshots), initech worsens (one region today);
- a synthetic history (`warehouse.correlation.synthetic.history`) of `EVENTS` events over
  the 14 days before today for acme, globex and initech, plus hooli's few events;
- hand-written events whose incidents the tests know (`KNOWN`): on acme's `web-2` (a demo
  node that misses a critical patch, so it is noisy and unpatched), the SEMANTICS.md
  illustration (points at 10:00:00, 10:02:15, 10:05:30 join one incident; 10:20:31 opens a
  second one 901 s after the last activity: a near miss of the 900 s window);

then runs `pipelines.run.run_once` once, which stages, correlates, builds and publishes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.run import run_once
from tests.pipelines.conftest import events
from warehouse.config import platform_settings
from warehouse.correlation.synthetic import history
from warehouse.lake import open_lake
from warehouse.registry import Registry
from warehouse.ssm.collect import take_snapshot
from warehouse.ssm.demo import DEFAULT_TENANTS, write_demo_sync
from warehouse.synthetic_lake import write_events

EVENTS = 12_000
DAYS = 14
TENANTS = ("acme", "globex", "initech")
NO_PATCH_TENANT = "hooli"
NO_DATA_TENANT = "umbrella"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START = TODAY - timedelta(days=DAYS)
KNOWN_DAY = TODAY - timedelta(days=2)


def _at(hhmmss: str) -> datetime:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return KNOWN_DAY + timedelta(hours=h, minutes=m, seconds=s)


# acme's web-2 disk: the SEMANTICS.md illustration on a noisy and unpatched node.
KNOWN: list[dict[str, Any]] = [
    {"tenant": "acme", "id": "known-1", "t": _at("10:00:00"), "asset": "web-2",
     "signature": "disk_full", "severity": "high"},
    {"tenant": "acme", "id": "known-2", "t": _at("10:02:15"), "asset": "web-2",
     "signature": "disk_full", "severity": "critical"},
    {"tenant": "acme", "id": "known-3", "t": _at("10:05:30"), "asset": "web-2",
     "signature": "disk_full", "severity": "high"},
    {"tenant": "acme", "id": "known-4", "t": _at("10:20:31"), "asset": "web-2",
     "signature": "disk_full", "severity": "warning"},
    # hooli: a client with alerts and no AWS account
    {"tenant": NO_PATCH_TENANT, "id": "hooli-1", "t": _at("08:00:00"), "asset": "nas01",
     "signature": "raid_degraded", "status": "firing", "fp": "h-raid"},
    {"tenant": NO_PATCH_TENANT, "id": "hooli-2", "t": _at("08:05:00"), "asset": "nas01",
     "signature": "raid_degraded", "status": "firing", "fp": "h-raid"},
    {"tenant": NO_PATCH_TENANT, "id": "hooli-3", "t": _at("09:00:00"), "asset": "nas01",
     "signature": "raid_degraded", "status": "resolved", "fp": "h-raid"},
]


def _synthetic() -> pa.Table:
    """The synthetic history, its tenants renamed to the demo clients."""
    table = history(EVENTS, days=DAYS, tenants=len(TENANTS), seed=11, start=START)
    names = dict(zip((f"tenant-{i + 1:02d}" for i in range(len(TENANTS))), TENANTS,
                     strict=True))
    renamed = [names[t] for t in table.column("tenant_id").to_pylist()]
    return table.set_column(table.schema.get_field_index("tenant_id"), "tenant_id",
                            pa.array(renamed, pa.string()))


def _register(data_dir: Path) -> None:
    settings = platform_settings()
    with Registry.open(settings) as registry:
        for tenant, accounts in DEFAULT_TENANTS.items():
            registry.create_tenant(tenant, name=tenant.title() + " Corp")
            for account in accounts:
                registry.set_aws_account(tenant, account)
        registry.create_tenant(NO_PATCH_TENANT, name="Hooli")
        registry.create_tenant(NO_DATA_TENANT, name="Umbrella")
        registry.set_settings("globex", {"window": "10m"},
                              effective_at=START - timedelta(days=1))
    now = datetime.now(UTC)
    for days_ago in range(6, 0, -1):
        past = now - timedelta(days=days_ago)
        one_region = {"acme"} if days_ago > 3 else set()
        folder = _demo_sync(data_dir / "ssm-sync-history" / str(days_ago), past, one_region)
        take_snapshot(settings.model_copy(update={"ssm_sync_uri": str(folder)}), past)
    _demo_sync(data_dir / "ssm-sync", now, {"initech"})


def _demo_sync(folder: Path, now: datetime, one_region: set[str]) -> Path:
    """The demo sync in `folder`, tenants in `one_region` read in us-east-1 only."""
    folder.mkdir(parents=True, exist_ok=True)
    local = open_lake(str(folder))
    for tenant, accounts in DEFAULT_TENANTS.items():
        regions = ("us-east-1",) if tenant in one_region else ("us-east-1", "eu-west-1")
        write_demo_sync(local.fs, local.root, now, tenants={tenant: accounts}, regions=regions)
    return folder


def build(data_dir: Path) -> None:
    """Build and publish the fixture warehouse under `data_dir` (AW_DATA_DIR set by caller)."""
    _register(data_dir)
    lake = open_lake(platform_settings().resolved_lake_uri)
    synthetic = _synthetic()
    write_events(lake, synthetic, prefix="synthetic")
    first = int(pc.max(synthetic.column("ingest_seq")).as_py()) + 1
    write_events(lake, events(KNOWN, first_seq=first), prefix="known")
    run_once(echo=lambda _line: None)
