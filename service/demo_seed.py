"""`aw demo seed`: a realistic multi-tenant history, posted through the real ingest endpoint.

What it does, in order:

1. **Tenants** (`DEMO_TENANTS`): four clients with different tools and settings (one a 10-minute
   window, one a threshold of 2, one keyed on the asset alone), created in the registry when
   absent. Their settings versions take effect 32 days back, so the whole history is
   correlated under them; their lateness horizon L is 30 days, because the demo replays 30
   days of history in a few seconds: with the default 24 h nearly every event would be
   "too late" (R9). Events older than that still are, as a real late feed would be.
2. **Alerts** (`warehouse.correlation.synthetic.history`, seeded): storms, flapping,
   re-sends, resolves, late and skewed events, duplicates (re-sent with the same delivery id
   or body, so the service's R2 finds them), quiet days; five source tools. Each event is a
   canonical alert object posted to `POST /v1/alerts` with the tenant's API key and HMAC
   signature, in batches, in the history's arrival order, with a progress bar. A few alerts
   name the demo patch fleet's hosts, so the noisy-and-unpatched view has something to show.
3. **Patch fleets**: client AWS accounts registered (Resource Data Sync only), a demo Resource
   Data Sync written to `$AW_DATA_DIR/ssm-sync` (the embedded default location, read by the
   pipeline's daily snapshot), and the 29 earlier daily snapshots the platform would have
   taken (`raw/ssm`): fully patched 13 to 24 days ago, between two monthly patch releases, so
   the 30-day trend dips after each release.

For a tenant that already exists, seeding issues a temporary API key (revoked at the end) and
rotates its HMAC secret (the old one stays valid for the rotation grace period).
"""

from __future__ import annotations

import hashlib
import hmac
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.config import PlatformSettings
from warehouse.correlation.synthetic import history
from warehouse.lake import open_lake
from warehouse.registry import Registry
from warehouse.ssm.demo import DEFAULT_TENANTS as DEMO_ACCOUNTS
from warehouse.ssm.demo import write_demo_sync
from warehouse.ssm.resource_data_sync import read_resource_data_sync
from warehouse.ssm.schema import NONCOMPLIANT_STATES
from warehouse.ssm.store import write_snapshot

DEMO_TENANTS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("acme", "Acme Corp", {}),
    ("globex", "Globex", {"window": "10m"}),
    ("initech", "Initech", {"threshold": 2}),
    ("umbrella", "Umbrella Health", {"key": ["asset"]}),
)
LATENESS = "30d"
BATCH = 250
SETTINGS_EFFECTIVE_DAYS = 32
PATCHED_BETWEEN = (13, 24)  # days back when the demo fleets were fully patched
class Progress(Protocol):
    """Told the number of alerts to post, then each batch posted."""

    def start(self, total: int) -> None: ...
    def advance(self, n: int) -> None: ...


class SeedError(RuntimeError):
    """The ingest service refused or could not be reached; the message says which."""


@dataclass
class Seeded:
    tenants: list[str] = field(default_factory=list)
    posted: int = 0
    accepted: int = 0
    duplicates: int = 0
    requests: int = 0
    ssm_days: int = 0


@dataclass(frozen=True)
class _Sender:
    tenant_id: str
    api_key: str
    secret: str
    key_prefix: str | None  # a temporary key to revoke afterwards


def seed(settings: PlatformSettings, url: str, *, events: int = 40_000, days: int = 30,
         seed_value: int = 11, now: datetime | None = None,
         progress: Progress | None = None) -> Seeded:
    """Seed tenants, alerts (through `url`) and patch fleets; see the module docstring."""
    now = now or datetime.now(UTC)
    done = Seeded()
    senders = _tenants(settings, now)
    done.tenants = [s.tenant_id for s in senders]
    try:
        objects = _alerts(events, days, seed_value, now, [s.tenant_id for s in senders])
        if progress:
            progress.start(len(objects))
        _post(url, {s.tenant_id: s for s in senders}, objects, done, progress)
    finally:
        _revoke(settings, senders)
    done.ssm_days = _patch_fleets(settings, now, days)
    return done


# ---- tenants ---------------------------------------------------------------------------------


def _tenants(settings: PlatformSettings, now: datetime) -> list[_Sender]:
    senders = []
    effective = now - timedelta(days=SETTINGS_EFFECTIVE_DAYS)
    with Registry.open(settings) as registry:
        existing = {t.id for t in registry.list_tenants()}
        for tenant_id, name, changes in DEMO_TENANTS:
            if tenant_id in existing:
                key = registry.new_api_key(tenant_id)
                secret = registry.rotate_secret(tenant_id)
                senders.append(_Sender(tenant_id, key, secret, key[:12]))
                continue
            issued = registry.create_tenant(tenant_id, name=name)
            registry.set_settings(tenant_id, {**changes, "lateness": LATENESS},
                                  effective_at=effective)
            senders.append(_Sender(tenant_id, issued.api_key, issued.hmac_secret, None))
    return senders


def _revoke(settings: PlatformSettings, senders: list[_Sender]) -> None:
    with Registry.open(settings) as registry:
        for sender in senders:
            if sender.key_prefix:
                registry.revoke_key(sender.tenant_id, sender.key_prefix)


# ---- alerts ----------------------------------------------------------------------------------


def _alerts(events: int, days: int, seed_value: int, now: datetime,
            tenants: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(tenant, canonical alert object) in arrival order; the synthetic history's time axis is
    moved so that it ends now."""
    start = (now - timedelta(days=days)).replace(microsecond=0)
    table = history(events, days=days, tenants=len(tenants), seed=seed_value, start=start)
    table = table.sort_by("ingest_seq")
    codes = sorted(set(table.column("tenant_id").to_pylist()))
    rename = dict(zip(codes, tenants, strict=False))
    out = [(rename[r["tenant_id"]], _canonical(r)) for r in _rows(table)]
    out += _fleet_alerts(now, tenants[0])
    return out


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    columns = ["tenant_id", "source", "source_fingerprint", "asset", "signature", "severity",
               "status", "occurred_at", "labels", "delivery_id"]
    yield from table.select(columns).to_pylist()


def _canonical(row: dict[str, Any]) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "source": row["source"], "source_alert_id": row["source_fingerprint"][:200],
        "signature": row["signature"], "severity": row["severity"], "status": row["status"],
        "message": f"{row['signature']} on {row['asset'] or 'an unnamed host'}",
    }
    if row["asset"] is not None:
        alert["asset"] = row["asset"]
    if row["occurred_at"] is not None:
        alert["occurred_at"] = row["occurred_at"].isoformat().replace("+00:00", "Z")
    if row["delivery_id"] is not None:
        alert["delivery_id"] = row["delivery_id"]
    if row["labels"]:
        alert["labels"] = dict(row["labels"])
    return alert


def _fleet_alerts(now: datetime, tenant: str) -> list[tuple[str, dict[str, Any]]]:
    """A flapping service on two of the demo fleet's unpatched hosts (by computer name and by
    a Prometheus `instance` label), so noisy-and-unpatched assets show in the demo."""
    out = []
    hosts = [("web-2.us-east-1.demo.internal", None),
             ("payments-api", "db-1.eu-west-1.demo.internal:9100")]
    for h, (asset, instance) in enumerate(hosts):
        for i in range(12):
            t = now - timedelta(hours=20 - i, minutes=7 * h)
            status = "firing" if i % 2 == 0 else "resolved"
            alert: dict[str, Any] = {
                "source": "alertmanager", "source_alert_id": f"demo-fleet-{h}",
                "asset": asset, "signature": "HighLatency", "severity": "high",
                "status": status, "occurred_at": t.isoformat().replace("+00:00", "Z"),
                "message": f"p99 latency above 2 s on {asset}"}
            if instance:
                alert["labels"] = {"instance": instance, "job": "node"}
            out.append((tenant, alert))
    return out


def _post(url: str, senders: dict[str, _Sender], objects: list[tuple[str, dict[str, Any]]],
          done: Seeded, progress: Progress | None) -> None:
    pending: dict[str, list[dict[str, Any]]] = {t: [] for t in senders}
    with httpx.Client(base_url=url, timeout=30) as client:
        def flush(tenant: str) -> None:
            batch = pending[tenant]
            if not batch:
                return
            body = orjson.dumps(batch)
            _send(client, senders[tenant], body, done)
            done.posted += len(batch)
            if progress:
                progress.advance(len(batch))
            pending[tenant] = []

        for tenant, alert in objects:
            pending[tenant].append(alert)
            if len(pending[tenant]) >= BATCH:
                flush(tenant)
        for tenant in senders:
            flush(tenant)


def _send(client: httpx.Client, sender: _Sender, body: bytes, done: Seeded) -> None:
    for attempt in range(5):
        ts = str(int(time.time()))
        digest = hmac.new(sender.secret.encode(), ts.encode() + b"." + body,
                          hashlib.sha256).hexdigest()
        headers = {"Authorization": f"Bearer {sender.api_key}", "X-Timestamp": ts,
                   "X-Signature": f"sha256={digest}", "Content-Type": "application/json"}
        try:
            response = client.post("/v1/alerts", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SeedError(f"the ingest service at {client.base_url} is not reachable: "
                            f"{exc}") from None
        done.requests += 1
        if response.status_code == 202:
            receipt = response.json()
            done.accepted += int(receipt.get("accepted", 0))
            done.duplicates += int(receipt.get("duplicates", 0))
            return
        if response.status_code in (429, 503):
            time.sleep(float(response.headers.get("Retry-After", "1")) * (attempt + 1))
            continue
        raise SeedError(f"the ingest service answered {response.status_code} for tenant "
                        f"{sender.tenant_id}: {response.text[:300]}")
    raise SeedError(f"the ingest service kept refusing tenant {sender.tenant_id} (429/503)")


# ---- patch fleets ----------------------------------------------------------------------------


def _patch_fleets(settings: PlatformSettings, now: datetime, days: int) -> int:
    """Register the demo accounts, write today's sync and the earlier daily snapshots."""
    with Registry.open(settings) as registry:
        known = {a.account_id for a in registry.aws_accounts()}
        for tenant, accounts in DEMO_ACCOUNTS.items():
            for account in accounts:
                if account not in known:
                    registry.set_aws_account(tenant, account)
    sync_dir = settings.data_dir / "ssm-sync"
    sync_dir.mkdir(parents=True, exist_ok=True)
    sync = open_lake(str(sync_dir.resolve()))
    mapping = write_demo_sync(sync.fs, sync.root, now)
    lake = open_lake(settings.resolved_lake_uri, settings.s3_endpoint_url)
    written = 0
    for back in range(1, days):
        at = now - timedelta(days=back)
        with tempfile.TemporaryDirectory(prefix="aw-demo-sync-") as folder:
            past = open_lake(folder)
            write_demo_sync(past.fs, past.root, at)
            snapshot = read_resource_data_sync(past.fs, past.root, mapping, at)
        tables = {name: _drift(snapshot[name], name, back) for name in snapshot.tables}
        write_snapshot(lake, tables, at.date())
        written += 1
    return written


def _drift(table: pa.Table, name: str, days_back: int) -> pa.Table:
    """Earlier days' patch state: this month's patches were released 12 days ago and last
    month's 25 days ago; in between, every node that had been scanned was fully patched. So
    the trend dips after each release and the dashboards' 30-day chart has a shape."""
    if not PATCHED_BETWEEN[0] <= days_back <= PATCHED_BETWEEN[1]:
        return table
    if name == "compliance":
        table = _set(table, "status", pa.array(["COMPLIANT"] * table.num_rows))
        return _zero(table, [c for c in table.column_names if c.startswith("noncompliant")])
    if name == "patch_states":
        return _zero(table, ["missing_count", "failed_count", "installed_pending_reboot_count",
                             "installed_rejected_count", "critical_noncompliant_count",
                             "security_noncompliant_count", "other_noncompliant_count"])
    if name == "patches":
        return table.filter(pc.invert(pc.is_in(table.column("state"),
                                               pa.array(NONCOMPLIANT_STATES))))
    return table


def _set(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), values.cast(
        table.schema.field(index).type))


def _zero(table: pa.Table, columns: list[str]) -> pa.Table:
    for column in columns:
        table = _set(table, column, pa.array([0] * table.num_rows, pa.int64()))
    return table


def lake_is_empty(settings: PlatformSettings) -> bool:
    """No alert in the lake yet (what `aw up --demo` checks before seeding)."""
    lake = open_lake(settings.resolved_lake_uri, settings.s3_endpoint_url)
    return not lake.files("raw/alerts")


def default_url(settings: PlatformSettings) -> str:
    host = getattr(settings, "host", "127.0.0.1")
    port = getattr(settings, "port", 8001)
    return f"http://{host}:{port}"
