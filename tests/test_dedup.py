"""Exact-duplicate keys (R2): windows, the two tiers, idempotent persistence, pruning."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from service.dedup import (
    BODY,
    DELIVERY,
    REQUEST,
    DedupIndex,
    KeyEntry,
    body_key,
    delivery_key,
    request_key,
)

US = 1_000_000
DAY = 24 * 3600 * US
T0 = 1_795_000_000 * US  # late 2026

DKEY = delivery_key("acme", "nagios", "delivery-1")
HKEY = body_key("acme", "a" * 64)
RKEY = request_key("acme", "b" * 64)
KINDS = {DELIVERY: DKEY, BODY: HKEY, REQUEST: RKEY}


@pytest.fixture
def index(tmp_path: Path) -> Iterator[DedupIndex]:
    opened = DedupIndex(tmp_path / "state" / "dedup.sqlite", body_window_us=DAY)
    yield opened
    opened.close()


def seen_rows(tmp_path: Path) -> list[tuple[bytes, int, str, int]]:
    """The persisted tier, read through a connection of its own."""
    with closing(sqlite3.connect(tmp_path / "state" / "dedup.sqlite")) as con:
        query = "select key, kind, ref_id, received_us from seen order by key"
        return con.execute(query).fetchall()


def hit_ref(index: DedupIndex, key: bytes, kind: int, now_us: int) -> str | None:
    hit = index.lookup([(key, kind)], now_us).get(key)
    return hit.ref_id if hit else None


def test_keys_are_scoped_by_kind_tenant_and_source() -> None:
    keys = {
        delivery_key("acme", "nagios", "x"),
        delivery_key("acme", "zabbix", "x"),  # same id, other source
        delivery_key("globex", "nagios", "x"),  # same id, other tenant
        body_key("acme", "x"),  # same text, other kind
        request_key("acme", "x"),
        body_key("globex", "x"),
        # separators cannot be forged by moving text between parts
        delivery_key("acme", "nagios\0x", ""),
    }
    assert len(keys) == 7 and all(len(k) == 16 for k in keys)


@pytest.mark.parametrize("tier", ["pending", "persisted"])
@pytest.mark.parametrize(
    ("kind", "age_us", "duplicate"),
    [
        # delivery ids never expire
        (DELIVERY, 0, True),
        (DELIVERY, DAY + 1, True),
        (DELIVERY, 3650 * DAY, True),
        # body hashes: within 24 h of the receive time, inclusive
        (BODY, 0, True),
        (BODY, DAY - 1, True),
        (BODY, DAY, True),  # exactly 24 h later is still a duplicate
        (BODY, DAY + 1, False),  # 24 h and 1 µs later is a new event
        (BODY, 30 * DAY, False),
        # whole request bodies follow the same window
        (REQUEST, DAY, True),
        (REQUEST, DAY + 1, False),
    ],
)
def test_key_windows(
    index: DedupIndex, tier: str, kind: int, age_us: int, duplicate: bool
) -> None:
    key = KINDS[kind]
    entry = KeyEntry(key, kind, "evt-1", T0)
    if tier == "pending":
        index.hold([entry], None)
    else:
        index.persist([entry])
        assert index.pending_count == 0
    assert hit_ref(index, key, kind, T0 + age_us) == ("evt-1" if duplicate else None)


def test_unknown_keys_are_new(index: DedupIndex) -> None:
    index.persist([KeyEntry(HKEY, BODY, "evt-1", T0)])
    other = body_key("acme", "c" * 64)
    assert index.lookup([(other, BODY), (DKEY, DELIVERY)], T0) == {}


def test_lookup_of_many_keys_spans_sqlite_chunks(index: DedupIndex) -> None:
    entries = [KeyEntry(body_key("acme", f"{i:064x}"), BODY, f"e{i}", T0) for i in range(1200)]
    index.persist(entries[::2])
    index.hold(entries[1::3], None)
    hits = index.lookup([(e.key, BODY) for e in entries], T0 + 1)
    expected = {e.key: e.ref_id for i, e in enumerate(entries) if i % 2 == 0 or i % 3 == 1}
    assert {k: h.ref_id for k, h in hits.items()} == expected


def test_pending_tier_wins_over_persisted(index: DedupIndex) -> None:
    # A body key reused after its window: the new event (pending) is the one that counts.
    index.persist([KeyEntry(HKEY, BODY, "old", T0)])
    index.hold([KeyEntry(HKEY, BODY, "new", T0 + 2 * DAY)], None)
    assert hit_ref(index, HKEY, BODY, T0 + 2 * DAY) == "new"


def test_persist_is_idempotent(index: DedupIndex, tmp_path: Path) -> None:
    entries = [KeyEntry(DKEY, DELIVERY, "evt-1", T0), KeyEntry(HKEY, BODY, "evt-1", T0),
               KeyEntry(RKEY, REQUEST, "req-1", T0)]
    index.hold(entries, None)
    index.persist(entries)
    first = seen_rows(tmp_path)
    # A segment flushed twice (a crash before its deletion) persists the same keys again.
    index.persist(entries)
    assert seen_rows(tmp_path) == first
    assert len(first) == 3
    assert index.pending_count == 0
    assert hit_ref(index, DKEY, DELIVERY, T0) == "evt-1"
    assert hit_ref(index, RKEY, REQUEST, T0) == "req-1"


def test_persist_replaces_a_body_key_reused_after_its_window(
    index: DedupIndex, tmp_path: Path
) -> None:
    index.persist([KeyEntry(HKEY, BODY, "old", T0)])
    index.persist([KeyEntry(HKEY, BODY, "new", T0 + 2 * DAY)])
    assert seen_rows(tmp_path) == [(HKEY, BODY, "new", T0 + 2 * DAY)]
    assert hit_ref(index, HKEY, BODY, T0 + 2 * DAY + DAY) == "new"


def test_persist_releases_only_its_own_pending_keys(index: DedupIndex) -> None:
    # The key was taken over in `pending` by a newer event before the old one was persisted.
    index.hold([KeyEntry(HKEY, BODY, "new", T0 + 2 * DAY)], None)
    index.persist([KeyEntry(HKEY, BODY, "old", T0)])
    assert index.pending_count == 1
    assert hit_ref(index, HKEY, BODY, T0 + 2 * DAY) == "new"


@pytest.mark.parametrize(
    ("held", "released", "remaining"),
    [
        # the matching ref is removed
        ("evt-1", "evt-1", None),
        # another event's ref leaves the key alone (a later holder must not lose it)
        ("evt-1", "evt-2", "evt-1"),
    ],
)
def test_release_only_removes_the_matching_ref(
    index: DedupIndex, held: str, released: str, remaining: str | None
) -> None:
    index.hold([KeyEntry(HKEY, BODY, held, T0)], None)
    index.release([KeyEntry(HKEY, BODY, released, T0)])
    assert hit_ref(index, HKEY, BODY, T0) == remaining
    assert index.pending_count == (0 if remaining is None else 1)


def test_release_of_an_unknown_key_is_harmless(index: DedupIndex) -> None:
    index.release([KeyEntry(HKEY, BODY, "evt-1", T0)])
    assert index.pending_count == 0


@pytest.mark.parametrize(
    ("now", "pruned", "body_left"),
    [
        # nothing is old enough yet
        (T0 + DAY - 1, 0, True),
        # exactly at the window's end, a body key can still match: keep it
        (T0 + DAY, 0, True),
        # past the window: body and request keys go, delivery keys stay
        (T0 + DAY + 1, 2, False),
        (T0 + 400 * DAY, 2, False),
    ],
)
def test_prune_keeps_delivery_keys(
    index: DedupIndex, tmp_path: Path, now: int, pruned: int, body_left: bool
) -> None:
    index.persist([KeyEntry(DKEY, DELIVERY, "evt-1", T0), KeyEntry(HKEY, BODY, "evt-1", T0),
                   KeyEntry(RKEY, REQUEST, "req-1", T0)])
    assert index.prune(now) == pruned
    kinds_left = sorted(kind for _, kind, _, _ in seen_rows(tmp_path))
    assert kinds_left == ([DELIVERY, BODY, REQUEST] if body_left else [DELIVERY])
    assert hit_ref(index, DKEY, DELIVERY, now) == "evt-1"


def test_persisted_keys_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "dedup.sqlite"
    first = DedupIndex(path, body_window_us=DAY)
    first.persist([KeyEntry(DKEY, DELIVERY, "evt-1", T0), KeyEntry(HKEY, BODY, "evt-1", T0)])
    first.close()
    second = DedupIndex(path, body_window_us=DAY)
    try:
        assert hit_ref(second, DKEY, DELIVERY, T0 + 10 * DAY) == "evt-1"
        assert hit_ref(second, HKEY, BODY, T0 + DAY) == "evt-1"
    finally:
        second.close()
