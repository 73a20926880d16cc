"""A real Alertmanager (Debian's `prometheus-alertmanager`, which `./dev test` installs as
root) and a real Prometheus posting to the real ingest service: fingerprints, per-alert
status, event times, re-notifications deduplicated, an always-firing rule end to end.

Every wait is bounded; the module runs in about 20 s."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import IngestServer, create_tenant, free_port, log_tail, wait_for
from tests.support.signing import Credentials
from warehouse.lake import Lake, open_lake
from warehouse.timestamps import parse_rfc3339_us

pytestmark = pytest.mark.e2e

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMETHEUS = "/usr/bin/prometheus"
WAIT = 30.0  # seconds, for anything to arrive; every wait is bounded
ALERTNAME = "AwE2EDiskFull"
RULE = "AwE2EAlwaysFiring"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

needs_alertmanager = pytest.mark.skipif(
    shutil.which(ALERTMANAGER) is None,
    reason=f"{ALERTMANAGER} is not installed (apt-get install prometheus-alertmanager; "
           "`./dev test` does it as root)",
)
needs_prometheus = pytest.mark.skipif(
    shutil.which(PROMETHEUS) is None,
    reason=f"{PROMETHEUS} is not installed (apt-get install prometheus; `./dev test` does it "
           "as root)",
)


class Tool:
    """A Prometheus-family binary on a free port, in its own session, stopped by its PID."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name, self.args, self.log_path = name, args, log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, extra: list[str] | None = None) -> Tool:
        for _ in range(3):  # another process may take the port between free_port and bind
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [*self.args, f"--web.listen-address=127.0.0.1:{self.port}", *(extra or [])],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._ready():
                return self
            self.stop()
            if "address already in use" not in log_tail(self.log_path).lower():
                break
        raise AssertionError(f"{self.name} did not start; log:\n{self.log()}")

    def _ready(self) -> bool:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log(self) -> str:
        return log_tail(self.log_path, 30)


@dataclass
class Stack:
    server: IngestServer
    alertmanager: Tool
    lake: Lake
    cred: Credentials
    tmp: Path

    def rows(self, table: str = "raw/alerts") -> list[dict[str, Any]]:
        return self.lake.read_table(table).to_pylist()

    def diagnostics(self) -> str:
        return (f"\n--- alertmanager log:\n{self.alertmanager.log()}"
                f"\n--- ingest log:\n{self.server.log()}")


def alertmanager_config(stack_url: str, api_key: str) -> str:
    # Short intervals: a notification 1 s after the first alert, a re-notification of the
    # unchanged group every 3 s (the R2 duplicates this test wants to see).
    return f"""\
route:
  receiver: aw
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 3s
receivers:
  - name: aw
    webhook_configs:
      - url: {stack_url}/v1/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {api_key}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which(ALERTMANAGER) is None:
        pytest.skip(f"{ALERTMANAGER} is not installed")
    tmp = tmp_path_factory.mktemp("real-alertmanager")
    data_dir = tmp / "data"
    cred = create_tenant(data_dir, "acme", "Acme Corp")
    server = IngestServer({"AW_DATA_DIR": str(data_dir), "AW_FLUSH_MAX_AGE_SECONDS": "0.2"},
                          tmp / "ingest.log")
    config = tmp / "alertmanager.yml"
    alertmanager = Tool("alertmanager", [
        ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp / 'am-data'}",
        "--cluster.listen-address=",  # no HA mode, no gossip port
    ], tmp / "alertmanager.log")
    try:
        server.start()
        config.write_text(alertmanager_config(server.url, cred.api_key))
        alertmanager.start()
        yield Stack(server, alertmanager, open_lake((data_dir / "lake").as_uri()), cred, tmp)
    finally:
        alertmanager.stop()
        server.stop()


def rfc3339_ns(at: datetime) -> str:
    """Nanoseconds, as Go senders write them; the lake keeps `at` (microseconds)."""
    return f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond:06d}321Z"


def at_least(count: int, rows: Callable[[], list[dict[str, Any]]]) -> Callable[[], Any]:
    def check() -> list[dict[str, Any]] | None:
        found = rows()
        return found if len(found) >= count else None

    return check


@needs_alertmanager
def test_pushed_alerts_fire_and_resolve_per_alert(stack: Stack) -> None:
    now = datetime.now(UTC)
    started = [now - timedelta(minutes=5, seconds=i) for i in range(3)]
    starts = [rfc3339_ns(at) for at in started]
    alerts = [
        {"labels": {"alertname": ALERTNAME, "instance": f"db0{i}.example:9100",
                    "severity": ["critical", "warning", "P5"][i]},
         "annotations": {"summary": f"/var on db0{i} is 9{i}% full & growing"},
         "startsAt": starts[i], "generatorURL": "http://prometheus.example/graph?g0.expr=x&y"}
        for i in range(3)
    ]
    am = stack.alertmanager.url
    pushed = httpx.post(f"{am}/api/v2/alerts", json=alerts, timeout=5)
    assert pushed.status_code == 200, pushed.text

    def ours(status: str) -> list[dict[str, Any]]:
        return [r for r in stack.rows() if r["signature"] == ALERTNAME and r["status"] == status]

    firing = wait_for(at_least(3, lambda: ours("firing")), WAIT,
                      lambda: f"3 firing events never arrived{stack.diagnostics()}")
    listed = httpx.get(f"{am}/api/v2/alerts", params={"filter": f'alertname="{ALERTNAME}"'},
                       timeout=5).json()
    fingerprints = {a["labels"]["instance"]: a["fingerprint"] for a in listed}
    assert len(fingerprints) == 3
    by_fp = {r["source_fingerprint"]: r for r in firing}
    assert set(by_fp) == set(fingerprints.values())
    for i in range(3):
        row = by_fp[fingerprints[f"db0{i}.example:9100"]]
        assert (row["tenant_id"], row["source"], row["asset"]) == (
            "acme", "alertmanager", f"db0{i}.example")
        assert row["severity"] == ["critical", "warning", "info"][i]
        assert row["occurred_at"] == started[i]
        assert row["message"] == f"/var on db0{i} is 9{i}% full & growing"
        assert row["truncated_alerts"] == 0

    # Alertmanager re-sends the unchanged group every repeat interval: R2 duplicates.
    def renotified() -> list[dict[str, Any]]:
        return [d for d in stack.rows("raw/duplicates") if d["source_fingerprint"] in by_fp]

    wait_for(at_least(3, renotified), WAIT,
             lambda: f"no re-notification arrived{stack.diagnostics()}")

    ended = [datetime.now(UTC) - timedelta(seconds=2 + i) for i in range(3)]
    resolved_push = [{**a, "endsAt": rfc3339_ns(ended[i])} for i, a in enumerate(alerts)]
    pushed = httpx.post(f"{am}/api/v2/alerts", json=resolved_push, timeout=5)
    assert pushed.status_code == 200, pushed.text
    resolved = wait_for(at_least(3, lambda: ours("resolved")), WAIT,
                        lambda: f"3 resolved events never arrived{stack.diagnostics()}")
    for i in range(3):
        [row] = [r for r in resolved
                 if r["source_fingerprint"] == fingerprints[f"db0{i}.example:9100"]]
        assert row["occurred_at"] == ended[i]

    time.sleep(3.5)  # let a repeat interval pass: nothing new may be stored
    counts = Counter((r["source_fingerprint"], r["status"])
                     for r in stack.rows() if r["signature"] == ALERTNAME)
    assert counts == {(fp, s): 1 for fp in fingerprints.values() for s in ("firing", "resolved")}
    # Every notification was answered 2xx: Alertmanager logged no failed notify.
    failed = [line for line in log_tail(stack.alertmanager.log_path, 10_000).splitlines()
              if "level=error" in line]
    assert not failed, "\n".join(failed)


@needs_alertmanager
@needs_prometheus
def test_prometheus_rule_alert_arrives_through_alertmanager(stack: Stack) -> None:
    rules = stack.tmp / "rules.yml"
    rules.write_text(f"""\
groups:
  - name: aw-e2e
    interval: 1s
    rules:
      - alert: {RULE}
        expr: vector(1)
        for: 0s
        labels: {{severity: page, instance: "prom-e2e.example:9090"}}
        annotations: {{summary: "always firing"}}
""")
    config = stack.tmp / "prometheus.yml"
    config.write_text(f"""\
global:
  evaluation_interval: 1s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{stack.alertmanager.port}"]
""")
    # Prometheus finds its Alertmanager about 5 s after start and drops what it sent before;
    # a 1 s resend delay (default 1 m) sends the firing alert again right after that.
    prometheus = Tool("prometheus", [
        PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={stack.tmp / 'tsdb'}",
        "--rules.alert.resend-delay=1s",
    ], stack.tmp / "prometheus.log")
    try:
        prometheus.start()

        def arrived() -> list[dict[str, Any]]:
            return [r for r in stack.rows() if r["signature"] == RULE]

        [row] = wait_for(arrived, WAIT, lambda: f"the rule's alert never arrived; prometheus "
                         f"log:\n{prometheus.log()}{stack.diagnostics()}")
        # Asked while Prometheus still keeps it active (the API leaves resolved alerts out).
        listed = httpx.get(f"{stack.alertmanager.url}/api/v2/alerts",
                           params={"filter": f'alertname="{RULE}"'}, timeout=5).json()
    finally:
        prometheus.stop()
    assert [a["fingerprint"] for a in listed] == [row["source_fingerprint"]]
    assert (row["status"], row["severity"], row["asset"], row["message"]) == (
        "firing", "critical", "prom-e2e.example", "always firing")
    # The v2 API shows milliseconds; the webhook (and so the lake) keeps microseconds.
    listed_start = EPOCH + timedelta(microseconds=parse_rfc3339_us(listed[0]["startsAt"]))
    assert timedelta(0) <= row["occurred_at"] - listed_start < timedelta(milliseconds=1)
