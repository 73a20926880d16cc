"""The lake (S3 on a moto server) freezes (SIGSTOP) while clients post: the service keeps
acknowledging into its durable buffer, reports not-ready, refuses with 503 + Retry-After once
the buffer is full (never 500), and drains everything exactly once when the lake is back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import (
    AlertSender,
    IngestServer,
    MotoServer,
    Sent,
    create_tenant,
    post_alerts,
    read_rows,
    s3_lake_env,
    wait_drained,
    wait_for,
)
from tests.support.signing import Credentials
from warehouse.lake import Lake

pytestmark = pytest.mark.e2e

OUTAGE_TIMEOUT = 30.0  # to notice the outage (lake timeout 1 s, a few retries)
RECOVERY_TIMEOUT = 45.0  # to drain after it (the flusher's backoff grows while it lasts)


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    """A moto server of this test alone: it is frozen and thawed."""
    server = MotoServer(log_path=tmp_path / "moto.log")
    with server:
        try:
            yield server
        finally:
            if server.paused:
                server.resume()


def start_service(tmp_path: Path, moto: MotoServer, **extra: str) -> tuple[
    IngestServer, Lake, Credentials, Path
]:
    data_dir = tmp_path / "data"
    cred = create_tenant(data_dir, "acme")
    lake_env, lake = s3_lake_env(moto, timeout=1.0)
    env = {"AW_DATA_DIR": str(data_dir), "AW_FLUSH_MAX_AGE_SECONDS": "0.2", **lake_env, **extra}
    return IngestServer(env, tmp_path / "ingest.log"), lake, cred, data_dir


def readiness(server: IngestServer) -> tuple[int, dict[str, object]]:
    response = httpx.get(f"{server.url}/readyz", timeout=5)
    return response.status_code, response.json()


def acked_events(sent: list[Sent]) -> dict[str, str]:
    """event id → delivery id of every acknowledged event."""
    events: dict[str, str] = {}
    for s in sent:
        if s.status == 202:
            assert s.receipt is not None and s.receipt["accepted"] == len(s.delivery_ids)
            events.update(zip(s.receipt["ids"], s.delivery_ids, strict=True))
    return events


def assert_lake_holds_exactly(lake: Lake, expected: dict[str, str]) -> None:
    rows = read_rows(lake, "raw/alerts", ["event_id", "delivery_id"])
    events = Counter(r["event_id"] for r in rows)
    deliveries = Counter(r["delivery_id"] for r in rows)
    assert max(events.values(), default=1) == 1, "an event id is stored twice"
    assert max(deliveries.values(), default=1) == 1, "a delivery id is stored twice"
    missing = expected.keys() - events.keys()
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    extra = events.keys() - expected.keys()
    assert not extra, f"{len(extra)} events stored that were never acknowledged"
    assert {r["event_id"]: r["delivery_id"] for r in rows} == expected


def test_lake_outage_buffers_then_drains(tmp_path: Path, moto: MotoServer) -> None:
    server, lake, cred, data_dir = start_service(tmp_path, moto)
    with server, AlertSender(server.url, cred, threads=2, batch=5, interval=0.01,
                             stop_on_transport_error=False) as sender:
        wait_for(lambda: len(sender.acked()) >= 20, 20, "no acknowledgements before the outage")
        wait_for(lambda: read_rows(lake, "raw/alerts", ["event_id"]), 20,
                 "nothing reached the lake before the outage")

        moto.pause()
        acked_at_pause = len(sender.acked())

        def not_ready() -> dict[str, object] | None:
            status, body = readiness(server)
            return body if status == 503 and body["lake"] == "unavailable" else None

        body = wait_for(not_ready, OUTAGE_TIMEOUT,
                        lambda: f"/readyz never reported the lake unavailable: "
                                f"{readiness(server)}; log:\n{server.log()}")
        assert body["status"] == "unavailable" and body["buffer"] == "ok"
        # Still acknowledging: every alert is durable in the buffer, none in the lake.
        acked_when_noticed = len(sender.acked())
        wait_for(lambda: len(sender.acked()) >= acked_when_noticed + 30, 20,
                 lambda: f"the service stopped acknowledging during the outage: "
                         f"{sender.statuses()}")
        assert len(sender.acked()) > acked_at_pause
        assert server.metrics()["aw_lake_up"] == 0
        assert server.metrics()["aw_buffer_bytes"] > 0

        moto.resume()
        wait_for(lambda: readiness(server)[0] == 200, RECOVERY_TIMEOUT,
                 lambda: f"/readyz never recovered: {readiness(server)}; "
                         f"log:\n{server.log()}")
        sender.stop()
        wait_drained(server, data_dir, RECOVERY_TIMEOUT)

        sent = sender.snapshot()
        statuses = Counter(s.status for s in sent)
        assert statuses == {202: len(sent)}, f"not every request was acknowledged: {statuses}"
        assert_lake_holds_exactly(lake, acked_events(sent))
        metrics = server.metrics()
        assert metrics["aw_lake_errors_total"] >= 1
        assert metrics["aw_lake_up"] == 1
        assert readiness(server) == (200, {"status": "ok", "buffer": "ok", "buffer_bytes": 0,
                                           "lake": "ok"})


def test_full_buffer_answers_503_with_retry_after(tmp_path: Path, moto: MotoServer) -> None:
    server, lake, cred, data_dir = start_service(
        tmp_path, moto, AW_BUFFER_MAX_BYTES=str(64 * 1024), AW_RETRY_AFTER_SECONDS="2"
    )
    with server:
        sender = AlertSender(server.url, cred, threads=2, batch=5,
                             stop_on_transport_error=False)
        moto.pause()
        with sender:
            wait_for(lambda: sender.statuses()[503] >= 20, OUTAGE_TIMEOUT,
                     lambda: f"the full buffer was never refused: {sender.statuses()}; "
                             f"log:\n{server.log()}")
        # Not ready: the buffer has no room for a maximal request, and (once the flusher's
        # write times out) the lake is reported unavailable.
        wait_for(lambda: readiness(server)[1]["lake"] == "unavailable", OUTAGE_TIMEOUT,
                 lambda: f"/readyz never reported the lake: {readiness(server)}")
        status, body = readiness(server)
        assert status == 503 and body["buffer"] == "full", body
        sent = sender.snapshot()
        statuses = Counter(s.status for s in sent)
        assert set(statuses) == {202, 503}, f"answers other than 202/503: {statuses}"
        refused = [s for s in sent if s.status == 503]
        assert {s.retry_after for s in refused} == {"2"}, "a 503 without Retry-After"
        acked = acked_events(sent)
        # Each buffered record holds its request body: the bodies alone stay under the bound.
        acked_bytes = sum(len(s.body) for s in sent if s.status == 202)
        assert 0 < acked_bytes <= 64 * 1024, f"{acked_bytes} bytes accepted past the bound"

        moto.resume()
        wait_drained(server, data_dir, RECOVERY_TIMEOUT)
        # A 503 means not stored: the lake holds exactly what was acknowledged.
        assert_lake_holds_exactly(lake, acked)

        # Accepting again: the refused requests, retried as a sender would, are stored. The
        # tiny buffer fills again faster than a segment ages (0.2 s), so a retry may meet
        # another 503: then it waits (less than Retry-After, to keep the test short).
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for s in refused:
                def accepted(body: bytes = s.body) -> httpx.Response | None:
                    response = post_alerts(client, cred, body)
                    assert response.status_code in (202, 503), response.text
                    assert response.status_code == 202 or response.headers["retry-after"]
                    return response if response.status_code == 202 else None

                response = wait_for(accepted, RECOVERY_TIMEOUT, "a retry was never accepted",
                                    interval=0.2)
                receipt = response.json()
                assert receipt["accepted"] == len(s.delivery_ids), receipt
                acked.update(zip(receipt["ids"], s.delivery_ids, strict=True))
        wait_drained(server, data_dir, RECOVERY_TIMEOUT)
        assert_lake_holds_exactly(lake, acked)
        assert readiness(server)[0] == 200
