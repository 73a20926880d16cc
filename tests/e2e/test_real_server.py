"""The ingest service as a real process (`aw serve` under uvicorn), over a local lake and
over an S3 lake on a moto server: signed alerts in, rows in the lake out."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.servers import (
    IngestServer,
    MotoServer,
    PortInUse,
    StartError,
    create_tenant,
    post_alerts,
    read_rows,
    s3_lake_env,
    wait_for,
)
from tests.support.signing import Credentials, signed_headers
from warehouse.lake import Lake, open_lake

pytestmark = pytest.mark.e2e

LAKE_TIMEOUT = 20.0  # seconds to wait for flushed rows (flush age is 0.2 s)


@dataclass
class Deployment:
    server: IngestServer
    lake: Lake
    cred: Credentials
    data_dir: Path
    # Every object under the lake (S3 only): (key, size).
    objects: Callable[[], list[tuple[str, int]]] | None = None


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def deploy(request: pytest.FixtureRequest, tmp_path: Path, kind: str,
           **extra: str) -> tuple[dict[str, str], Deployment]:
    data_dir = tmp_path / "data"
    cred = create_tenant(data_dir, "acme", "Acme Corp")
    env = {"AW_DATA_DIR": str(data_dir), "AW_FLUSH_MAX_AGE_SECONDS": "0.2", **extra}
    objects = None
    if kind == "s3":
        moto: MotoServer = request.getfixturevalue("moto")
        lake_env, lake = s3_lake_env(moto)
        env |= lake_env
        bucket = lake.root.split("/", 1)[0]

        def objects() -> list[tuple[str, int]]:
            return moto.list_objects(bucket)
    else:
        lake = open_lake((data_dir / "lake").as_uri())
    server = IngestServer(env, tmp_path / "ingest.log")
    return env, Deployment(server, lake, cred, data_dir, objects)


@pytest.fixture(params=["local", "s3"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    _, dep = deploy(request, tmp_path, request.param)
    with dep.server:
        yield dep


def rfc3339_ns(at: datetime, offset: str = "Z") -> str:
    """A timestamp with nanoseconds (as Go senders emit): the service keeps microseconds."""
    return f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond:06d}789{offset}"


def test_signed_alerts_land_in_the_lake(deployment: Deployment) -> None:
    server, cred = deployment.server, deployment.cred
    day_before = datetime.now(UTC).date()
    t1 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=123456)
    t2 = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=654321)

    single = {
        "source_alert_id": "disk-web01-var", "delivery_id": "d-single-1", "asset": "web01",
        "signature": "disk_full", "severity": "critical", "status": "firing",
        "occurred_at": rfc3339_ns(t1), "message": "/var is 97% full",
        "labels": {"env": "prod", "mount": "/var"}, "source": "nagios",
    }
    # Odd whitespace and non-ASCII: the archive must keep the body exactly as sent.
    single_body = orjson.dumps(single).replace(b",", b" ,\n ") + b"\n"
    # Same wall time written with a +02:00 offset: stored in UTC.
    t2_local = (t2 + timedelta(hours=2)).replace(tzinfo=None)
    by_key_header = {"asset": "r\u00e9seau-01", "signature": "link_down", "severity": "high",
                     "occurred_at": rfc3339_ns(t2_local, "+02:00"), "labels": {"site": "b\u00e2le"}}
    by_key_body = orjson.dumps(by_key_header)
    batch = [
        {"delivery_id": f"d-batch-{i}", "asset": f"db{i:02d}", "signature": "backup_failed",
         "severity": sev, "labels": {"i": str(i)}}
        for i, sev in enumerate(["info", "warning", "high"])
    ]
    batch_body = orjson.dumps(batch)

    with httpx.Client(base_url=server.url, timeout=10) as client:
        r1 = client.post("/v1/alerts", content=single_body,
                         headers=signed_headers(cred, single_body))
        headers = signed_headers(cred, by_key_body)
        headers["X-API-Key"] = headers.pop("Authorization").removeprefix("Bearer ")
        r2 = client.post("/v1/webhooks/generic", content=by_key_body, headers=headers)
        r3 = client.post("/v1/alerts", content=batch_body,
                         headers=signed_headers(cred, batch_body))
        for response in (r1, r2, r3):
            assert response.status_code == 202, response.text
        receipts = [r.json() for r in (r1, r2, r3)]
        assert [r["accepted"] for r in receipts] == [1, 1, 3]
        assert [r["duplicates"] for r in receipts] == [0, 0, 0]

        # Refused without a valid signature, whatever the API key.
        unsigned = {"Authorization": f"Bearer {cred.api_key}",
                    "Content-Type": "application/json"}
        body = orjson.dumps({"signature": "unsigned"})
        assert client.post("/v1/alerts", content=body, headers=unsigned).status_code == 401
        bad = signed_headers(cred, body, secret="awh_not-the-secret")
        assert client.post("/v1/alerts", content=body, headers=bad).status_code == 401
        no_key = signed_headers(cred, body)
        del no_key["Authorization"]
        assert client.post("/v1/alerts", content=body, headers=no_key).status_code == 401

    event_ids = [i for r in receipts for i in r["ids"]]
    lake = deployment.lake

    def alerts_arrived() -> list[dict[str, Any]] | None:
        rows = lake.read_table("raw/alerts").to_pylist()
        return rows if len(rows) >= len(event_ids) else None

    rows = wait_for(alerts_arrived, LAKE_TIMEOUT,
                    lambda: f"raw/alerts never held {len(event_ids)} rows; log:\n"
                            + server.log())
    day_after = datetime.now(UTC).date()
    assert sorted(r["event_id"] for r in rows) == sorted(event_ids)
    by_id = {r["event_id"]: r for r in rows}
    for row in rows:
        assert row["tenant_id"] == "acme"
        assert isinstance(row["date"], date) and day_before <= row["date"] <= day_after
        assert row["date"] == row["received_at"].date()

    first = by_id[receipts[0]["ids"][0]]
    assert first["request_id"] == receipts[0]["request_id"]
    assert (first["asset"], first["signature"], first["severity"], first["status"]) == (
        "web01", "disk_full", "critical", "firing")
    assert first["occurred_at"] == t1  # nanoseconds truncated to the microsecond
    assert first["occurred_at_defaulted"] is False
    assert dict(first["labels"]) == {"env": "prod", "mount": "/var"}
    assert (first["source"], first["source_alert_id"], first["delivery_id"]) == (
        "nagios", "disk-web01-var", "d-single-1")
    assert first["message"] == "/var is 97% full"

    second = by_id[receipts[1]["ids"][0]]
    assert (second["asset"], second["signature"], second["severity"], second["status"]) == (
        "r\u00e9seau-01", "link_down", "high", "point")
    assert second["occurred_at"] == t2
    assert dict(second["labels"]) == {"site": "b\u00e2le"}

    for i, event_id in enumerate(receipts[2]["ids"]):
        row = by_id[event_id]
        assert (row["asset"], row["severity"], row["delivery_id"], row["status"]) == (
            f"db{i:02d}", batch[i]["severity"], f"d-batch-{i}", "point")
        assert row["occurred_at_defaulted"] is True
        assert row["occurred_at"] == row["received_at"]
        assert dict(row["labels"]) == {"i": str(i)}

    # raw/requests: each body once, byte-exact, without any credential header.
    def requests_arrived() -> list[dict[str, Any]] | None:
        found = lake.read_table("raw/requests").to_pylist()
        return found if len(found) >= 3 else None

    archived = wait_for(requests_arrived, LAKE_TIMEOUT, "raw/requests never held 3 rows")
    assert len(archived) == 3
    by_request = {r["request_id"]: r for r in archived}
    for receipt, body, route, count in zip(
        receipts, (single_body, by_key_body, batch_body), ("generic",) * 3, (1, 1, 3),
        strict=True,
    ):
        row = by_request[receipt["request_id"]]
        assert row["body"] == body
        assert (row["tenant_id"], row["route"], row["event_count"]) == ("acme", route, count)
        names = {k.lower() for k, _ in row["headers"]}
        assert not names & {"authorization", "x-api-key", "x-signature"}, names
        assert "content-type" in names
        credentials = (cred.api_key, cred.hmac_secret)
        assert not any(c in v for _, v in row["headers"] for c in credentials)

    assert lake.read_table("raw/duplicates").num_rows == 0

    ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["lake"] == "ok"
    metrics = server.metrics()
    accepted = {k: v for k, v in metrics.items()
                if k.startswith("aw_events_accepted_total{") and 'tenant="acme"' in k}
    assert sum(accepted.values()) == 5, accepted
    assert metrics['aw_events_accepted_total{source="nagios",tenant="acme"}'] == 1
    assert metrics["aw_events_flushed_total"] == 5
    assert metrics['aw_requests_rejected_total{reason="unauthorized",tenant="-"}'] >= 1

    if deployment.objects is not None:  # S3: only Parquet files and the probe marker
        for key, size in deployment.objects():
            assert size > 0 and not key.endswith("/"), f"directory marker {key!r}"
            assert key.endswith(".parquet") or key.endswith("/_aw_probe"), key
            assert not key.rsplit("/", 1)[-1].startswith("."), key

    server.stop()  # SIGTERM: a graceful shutdown (uvicorn re-raises the signal at the end)
    assert server.last_returncode in (0, -signal.SIGTERM), server.log()
    log = server.log(1000)
    assert "Application shutdown complete" in log
    assert "Traceback" not in log and "internal_error" not in log


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_graceful_stop_flushes_and_restart_keeps_duplicates(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGTERM seals and flushes what is buffered (segments would otherwise wait 60 s), and
    the duplicate index outlives the process."""
    _, dep = deploy(request, tmp_path, kind, AW_FLUSH_MAX_AGE_SECONDS="60")
    body = orjson.dumps([{"delivery_id": f"g-{i}", "signature": "svc_down", "asset": f"h{i}"}
                         for i in range(4)])
    with dep.server as server, httpx.Client(base_url=server.url, timeout=10) as client:
        response = post_alerts(client, dep.cred, body)
        assert response.status_code == 202, response.text
        receipt = response.json()
        assert read_rows(dep.lake, "raw/alerts") == []  # still buffered

        server.stop()
        assert "Application shutdown complete" in server.log()
        rows = read_rows(dep.lake, "raw/alerts", ["event_id"])
        assert sorted(r["event_id"] for r in rows) == sorted(receipt["ids"])
        assert not list((dep.data_dir / "buffer").glob("seg-*"))

        server.start()
        again = post_alerts(client, dep.cred, body)
        assert again.status_code == 202, again.text
        assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 4
        assert [d["duplicate_of"] for d in again.json()["duplicate_events"]] == receipt["ids"]


def test_a_service_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = IngestServer({"AW_DATA_DIR": str(data_dir), "AW_LAKE_URI": "gs://bucket/lake"},
                          tmp_path / "ingest.log")
    with pytest.raises(StartError, match="unsupported lake URI scheme"):
        server.start()
    assert not server.running

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = IngestServer({"AW_DATA_DIR": str(data_dir)}, tmp_path / "busy.log", port=port)
        with pytest.raises(PortInUse, match="address already in use"):
            busy.start()
        assert not busy.running
