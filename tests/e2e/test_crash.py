"""SIGKILL the ingest service mid-stream: every acknowledged event reaches the lake exactly
once, unanswered ones at most once, and exact duplicates (R2) survive the restart."""

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
    create_tenant,
    post_alerts,
    read_rows,
    s3_lake_env,
    wait_drained,
    wait_for,
)
from warehouse.lake import Lake, open_lake

pytestmark = pytest.mark.e2e

KILL_AFTER_ACKED_REQUESTS = 1000  # 5 events each: some segments flushed, some not
DRAIN_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def lake_for(
    kind: str, data_dir: Path, request: pytest.FixtureRequest
) -> tuple[dict[str, str], Lake]:
    if kind == "s3":
        return s3_lake_env(request.getfixturevalue("moto"))
    return {}, open_lake((data_dir / "lake").as_uri())


def assert_exactly_once(lake: Lake, acked_events: dict[str, str], unanswered: set[str]) -> None:
    """acked_events: event id → delivery id of every acknowledged event."""
    rows = read_rows(lake, "raw/alerts", ["event_id", "delivery_id", "tenant_id"])
    events = Counter(r["event_id"] for r in rows)
    deliveries = Counter(r["delivery_id"] for r in rows)
    assert not [e for e, n in events.items() if n > 1], "duplicate event_id in raw/alerts"
    twice = [d for d, n in deliveries.items() if n > 1]
    assert not twice, f"{len(twice)} delivery ids stored more than once, e.g. {twice[:5]}"
    missing = [e for e in acked_events if e not in events]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    by_event = {r["event_id"]: r["delivery_id"] for r in rows}
    assert all(by_event[e] == d for e, d in acked_events.items())
    known = set(acked_events.values()) | unanswered
    phantoms = [d for d in deliveries if d not in known]
    assert not phantoms, f"events nobody sent: {phantoms[:5]}"
    assert {r["tenant_id"] for r in rows} == {"acme"}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    cred = create_tenant(data_dir, "acme")
    lake_env, lake = lake_for(kind, data_dir, request)
    env = {"AW_DATA_DIR": str(data_dir), "AW_FLUSH_MAX_AGE_SECONDS": "0.2", **lake_env}

    with IngestServer(env, tmp_path / "ingest.log") as server:
        sender = AlertSender(server.url, cred, threads=4, batch=5, max_requests=20_000)
        with sender:
            wait_for(lambda: len(sender.acked()) >= KILL_AFTER_ACKED_REQUESTS, 30,
                     lambda: f"only {len(sender.acked())} requests acknowledged: "
                             f"{sender.statuses()}; log:\n{server.log()}")
            server.kill()  # SIGKILL while the senders are still posting
            sender.stop()
        sent = sender.snapshot()
        statuses = Counter(s.status for s in sent)
        assert set(statuses) <= {202, None}, f"unexpected answers: {statuses}"
        acked = [s for s in sent if s.status == 202]
        unanswered = [s for s in sent if s.status is None]
        assert len(acked) >= KILL_AFTER_ACKED_REQUESTS
        acked_events: dict[str, str] = {}
        for s in acked:
            assert s.receipt is not None and s.receipt["accepted"] == len(s.delivery_ids)
            acked_events.update(zip(s.receipt["ids"], s.delivery_ids, strict=True))
        unanswered_ids = {d for s in unanswered for d in s.delivery_ids}

        server.start()  # same data dir, same port
        wait_drained(server, data_dir, DRAIN_TIMEOUT)
        assert_exactly_once(lake, acked_events, unanswered_ids)
        requests = Counter(r["request_id"] for r in read_rows(lake, "raw/requests",
                                                               ["request_id"]))
        assert max(requests.values()) == 1, "a request body was archived twice"
        assert {s.receipt["request_id"] for s in acked if s.receipt} <= set(requests)
        stored_before = len(read_rows(lake, "raw/alerts", ["event_id"]))

        # R2 after the restart: every acknowledged request again, freshly signed, is only
        # duplicates of the original events; the unanswered ones, retried, are accepted
        # or duplicates, never stored twice.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for s in acked:
                response = post_alerts(client, cred, s.body)
                assert response.status_code == 202, response.text
                receipt = response.json()
                assert receipt["accepted"] == 0 and receipt["duplicates"] == len(s.delivery_ids)
                assert s.receipt is not None
                assert [d["duplicate_of"] for d in receipt["duplicate_events"]] == s.receipt["ids"]
                assert {d["reason"] for d in receipt["duplicate_events"]} == {"delivery_id"}
                assert receipt["request_id"] == s.receipt["request_id"]
            retried: dict[str, str] = {}  # event id → delivery id, new or original
            newly_accepted = 0
            for s in unanswered:
                response = post_alerts(client, cred, s.body)
                assert response.status_code == 202, response.text
                receipt = response.json()
                originals = {d["index"]: d["duplicate_of"] for d in receipt["duplicate_events"]}
                new_ids = iter(receipt["ids"])
                for i, delivery in enumerate(s.delivery_ids):
                    retried[originals[i] if i in originals else next(new_ids)] = delivery
                newly_accepted += receipt["accepted"]

        wait_drained(server, data_dir, DRAIN_TIMEOUT)
        assert_exactly_once(lake, acked_events | retried, set())
        stored_after = len(read_rows(lake, "raw/alerts", ["event_id"]))
        assert stored_after == stored_before + newly_accepted
        # Every delivery the senders made is now stored exactly once.
        all_ids = {d for s in sent for d in s.delivery_ids}
        stored = {r["delivery_id"] for r in read_rows(lake, "raw/alerts", ["delivery_id"])}
        assert stored == all_ids
        duplicates = read_rows(lake, "raw/duplicates", ["duplicate_of"])
        assert len(duplicates) >= sum(len(s.delivery_ids) for s in acked)
        stored_events = {r["event_id"] for r in read_rows(lake, "raw/alerts", ["event_id"])}
        assert {d["duplicate_of"] for d in duplicates} <= stored_events
