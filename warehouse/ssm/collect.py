"""Today's SSM snapshot of every tenant, from both collection paths, into the lake.

- **API:** every registry account with a role (`aw tenants set ID --aws-account …
  --role-arn … --external-id … --regions …`) is collected through AssumeRole
  (`warehouse.ssm.api`), accounts and regions isolated from each other's failures.
- **Resource Data Sync:** when a sync location is configured (`AW_SSM_SYNC_URI`, or the
  embedded default `$AW_DATA_DIR/ssm-sync` when that folder exists), it is read for every
  registry account (`warehouse.ssm.resource_data_sync`); accounts the registry does not know
  are reported, never attributed to a tenant.

Both feed the same tables (`warehouse.ssm.schema`), written as today's partition of
`raw/ssm` (`warehouse.ssm.store`). Failures are returned as messages without credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc

from warehouse.config import PlatformSettings
from warehouse.lake import open_lake
from warehouse.registry import Registry
from warehouse.ssm.api import AwsAccount, collect_api
from warehouse.ssm.resource_data_sync import read_resource_data_sync
from warehouse.ssm.snapshot import Snapshot
from warehouse.ssm.store import lake_listing, write_snapshot

UNMAPPED = "_unmapped"


@dataclass
class Taken:
    """What one snapshot run collected and wrote."""

    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    tenants: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sync_uri(settings: PlatformSettings) -> str:
    """The Resource Data Sync location: `AW_SSM_SYNC_URI`, else `$AW_DATA_DIR/ssm-sync` when
    that folder exists (the demo writes one), else none."""
    if settings.ssm_sync_uri:
        return settings.ssm_sync_uri
    default = settings.data_dir / "ssm-sync"
    return default.resolve().as_uri() if default.is_dir() else ""


def snapshot_due(settings: PlatformSettings, now: datetime) -> bool:
    """SSM is configured (a sync location, or an account with a role) and the lake has no
    snapshot of `now`'s day yet."""
    configured = bool(sync_uri(settings))
    if not configured and settings.registry_path.exists():
        with Registry.open(settings) as registry:
            configured = any(a.role_arn for a in registry.aws_accounts())
    if not configured:
        return False
    lake = open_lake(settings.resolved_lake_uri, settings.s3_endpoint_url)
    day = f"/date={now.date().isoformat()}/"
    return not any(day in path for path in lake_listing(lake))


def take_snapshot(settings: PlatformSettings, now: datetime) -> Taken:
    """Collect every configured account and sync now, and write today's snapshot."""
    taken = Taken()
    accounts = []
    if settings.registry_path.exists():
        with Registry.open(settings) as registry:
            accounts = registry.aws_account_access()
    parts: list[Snapshot] = []
    with_role = [(a.tenant_id, AwsAccount(a.account_id, a.role_arn, a.external_id or "",
                                          a.regions))
                 for a in accounts if a.role_arn]
    if with_role:
        parts.append(collect_api(with_role, now))
        taken.sources.append(f"api ({len(with_role)} account(s))")
    location = sync_uri(settings)
    if location:
        sync = open_lake(location, settings.s3_endpoint_url)
        mapping = {a.account_id: a.tenant_id for a in accounts}
        parts.append(read_resource_data_sync(sync.fs, sync.root, mapping, now))
        taken.sources.append(f"resource data sync ({_shown(location)})")
    snapshot = Snapshot.concat(parts) if parts else Snapshot.empty()
    tables = {}
    for name in snapshot.tables:
        table = snapshot[name]
        unmapped = pc.equal(table.column("tenant_id"), UNMAPPED)
        if name == "errors":
            for row in table.to_pylist():
                taken.errors.append(f"{row['tenant_id']} {row['account_id']} {row['region']} "
                                    f"{row['stage']}: {row['error_code'] or ''} "
                                    f"{row['message']}".strip())
        tables[name] = table.filter(pc.invert(unmapped))
    lake = open_lake(settings.resolved_lake_uri, settings.s3_endpoint_url)
    written = write_snapshot(lake, tables, now.date())
    taken.files, taken.rows = written.files, written.rows
    taken.tenants = sorted(set(tables["nodes"].column("tenant_id").to_pylist())
                           if "nodes" in tables else set())
    return taken


def _shown(uri: str) -> str:
    """A location for messages: a local path relative to the working directory if short."""
    if uri.startswith("file://"):
        path = Path(uri[len("file://"):])
        return str(path)
    return uri
