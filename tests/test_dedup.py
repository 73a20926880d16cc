"""Exact-duplicate keys (R2): windows in both tiers (pending per buffer segment, persisted
store behind a Bloom filter), idempotent persistence, release, pruning, flushed segments."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from service.dedup import (
    BODY,
    DELIVERY,
    REQUEST,
    DedupIndex,
    KeyEntry,
    SeenStore,
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
SEGMENT = 100


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "dedup.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[SeenStore]:
    opened = SeenStore(db_path)
    yield opened
    opened.close()


@pytest.fixture
def index(store: SeenStore) -> DedupIndex:
    return DedupIndex(store, body_window_us=DAY, bloom_bits_log2=16)


@pytest.fixture
def store_lookups(store: SeenStore, monkeypatch: pytest.MonkeyPatch) -> list[list[bytes]]:
    """Every batch of keys that reached SQLite."""
    calls: list[list[bytes]] = []
    real = store.lookup

    def lookup(keys: list[bytes]) -> dict[bytes, object]:
        calls.append(list(keys))
        return real(keys)  # type: ignore[return-value]

    monkeypatch.setattr(store, "lookup", lookup)
    return calls


def seen_rows(db_path: Path) -> list[tuple[bytes, int, str, int]]:
    """The persisted tier, read through a connection of its own."""
    with closing(sqlite3.connect(db_path)) as con:
        query = "select key, kind, ref_id, received_us from seen order by key"
        return con.execute(query).fetchall()


def hit_ref(index: DedupIndex, key: bytes, kind: int, now_us: int) -> str | None:
    hit = index.lookup([(key, kind)], now_us).get(key)
    return hit.ref_id if hit else None


def many(count: int, prefix: str = "") -> list[KeyEntry]:
    return [KeyEntry(body_key("acme", f"{prefix}{i:060x}"), BODY, f"e{prefix}{i}", T0)
            for i in range(count)]


# How an acknowledged key can be held: still pending in its buffer segment; persisted and
# loaded into the Bloom filter at start; or persisted and moved out of pending at runtime.
def _pending(index: DedupIndex, entries: list[KeyEntry]) -> None:
    index.hold(entries, None, SEGMENT)


def _persisted_then_loaded(index: DedupIndex, entries: list[KeyEntry]) -> None:
    index.store.persist(entries)
    assert index.load() == len(entries)


def _flushed_at_runtime(index: DedupIndex, entries: list[KeyEntry]) -> None:
    index.hold(entries, None, SEGMENT)
    index.store.persist(entries)  # the flusher
    index.segment_flushed(SEGMENT)  # the intake notices the segment is gone


TIERS: dict[str, Callable[[DedupIndex, list[KeyEntry]], None]] = {
    "pending": _pending,
    "store-loaded": _persisted_then_loaded,
    "store-flushed": _flushed_at_runtime,
}


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
    assert delivery_key("acme", "nagios", "x") == delivery_key("acme", "nagios", "x")


# ---- windows --------------------------------------------------------------------------


@pytest.mark.parametrize("tier", list(TIERS))
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
def test_key_windows(index: DedupIndex, tier: str, kind: int, age_us: int, duplicate: bool) -> None:
    key = KINDS[kind]
    TIERS[tier](index, [KeyEntry(key, kind, "evt-1", T0)])
    assert index.pending_count == (1 if tier == "pending" else 0)
    assert hit_ref(index, key, kind, T0 + age_us) == ("evt-1" if duplicate else None)


@pytest.mark.parametrize("tier", list(TIERS))
def test_a_hit_keeps_its_receive_time(index: DedupIndex, tier: str) -> None:
    TIERS[tier](index, [KeyEntry(DKEY, DELIVERY, "evt-1", T0 + 7)])
    hit = index.lookup([(DKEY, DELIVERY)], T0 + DAY)[DKEY]
    assert (hit.ref_id, hit.received_us) == ("evt-1", T0 + 7)


def test_unknown_keys_are_new_and_never_reach_sqlite(
    index: DedupIndex, store_lookups: list[list[bytes]]
) -> None:
    _persisted_then_loaded(index, [KeyEntry(HKEY, BODY, "evt-1", T0)])
    other = body_key("acme", "c" * 64)
    assert index.lookup([(other, BODY), (DKEY, DELIVERY)], T0) == {}
    # The Bloom filter answered "certainly new" for both (no false positive at this size
    # for two keys is near-certain; the keys are fixed, so this is deterministic).
    assert store_lookups == []
    assert hit_ref(index, HKEY, BODY, T0) == "evt-1"
    assert store_lookups == [[HKEY]]


def test_pending_keys_are_answered_without_sqlite(
    index: DedupIndex, store_lookups: list[list[bytes]]
) -> None:
    index.hold([KeyEntry(HKEY, BODY, "evt-1", T0)], None, 1)
    assert hit_ref(index, HKEY, BODY, T0) == "evt-1"
    assert store_lookups == []


def test_lookup_of_many_keys_spans_sqlite_chunks(index: DedupIndex) -> None:
    entries = many(1200)
    _persisted_then_loaded(index, entries[::2])
    index.hold(entries[1::3], None, 7)
    hits = index.lookup([(e.key, BODY) for e in entries], T0 + 1)
    expected = {e.key: e.ref_id for i, e in enumerate(entries) if i % 2 == 0 or i % 3 == 1}
    assert {k: h.ref_id for k, h in hits.items()} == expected


def test_pending_tier_wins_over_persisted(index: DedupIndex) -> None:
    # A body key reused after its window: the new event (pending) is the one that counts.
    _persisted_then_loaded(index, [KeyEntry(HKEY, BODY, "old", T0)])
    index.hold([KeyEntry(HKEY, BODY, "new", T0 + 2 * DAY)], None, SEGMENT)
    assert hit_ref(index, HKEY, BODY, T0 + 2 * DAY) == "new"
    assert hit_ref(index, HKEY, BODY, T0 + 3 * DAY) == "new"


def test_the_newest_pending_segment_wins(index: DedupIndex) -> None:
    # The lake was down for more than a day: the old event's segment is still pending when
    # the same body arrives again (a new event, in a newer segment). Only the new one counts.
    old, new = KeyEntry(HKEY, BODY, "old", T0), KeyEntry(HKEY, BODY, "new", T0 + 2 * DAY)
    index.hold([old], None, 1)
    index.hold([new], None, 9)
    assert index.pending_count == 2
    assert hit_ref(index, HKEY, BODY, T0 + 2 * DAY + 1) == "new"
    assert hit_ref(index, HKEY, BODY, T0 + 3 * DAY) == "new"
    assert hit_ref(index, HKEY, BODY, T0 + 3 * DAY + 1) is None
    # The lake is back: segments are flushed oldest first; the answer never changes.
    for entry, segment in ((old, 1), (new, 9)):
        index.store.persist([entry])
        index.segment_flushed(segment)
        assert hit_ref(index, HKEY, BODY, T0 + 2 * DAY + 1) == "new"
    assert index.pending_count == 0


# ---- persistence ----------------------------------------------------------------------


def test_persist_is_idempotent(store: SeenStore, db_path: Path, index: DedupIndex) -> None:
    entries = [KeyEntry(DKEY, DELIVERY, "evt-1", T0), KeyEntry(HKEY, BODY, "evt-1", T0),
               KeyEntry(RKEY, REQUEST, "req-1", T0)]
    store.persist(entries)
    first = seen_rows(db_path)
    # A segment flushed twice (a crash before its deletion) persists the same keys again.
    store.persist(entries)
    store.persist(entries[1:])
    assert seen_rows(db_path) == first
    assert sorted(first) == sorted((e.key, e.kind, e.ref_id, e.received_us) for e in entries)
    assert index.load() == 3
    assert hit_ref(index, DKEY, DELIVERY, T0) == "evt-1"
    assert hit_ref(index, RKEY, REQUEST, T0) == "req-1"


def test_persist_replaces_a_body_key_reused_after_its_window(
    store: SeenStore, db_path: Path, index: DedupIndex
) -> None:
    store.persist([KeyEntry(HKEY, BODY, "old", T0)])
    store.persist([KeyEntry(HKEY, BODY, "new", T0 + 2 * DAY)])
    assert seen_rows(db_path) == [(HKEY, BODY, "new", T0 + 2 * DAY)]
    index.load()
    assert hit_ref(index, HKEY, BODY, T0 + 3 * DAY) == "new"


def test_persist_of_nothing_is_harmless(store: SeenStore, db_path: Path) -> None:
    store.persist([])
    assert seen_rows(db_path) == []


def test_store_lookup_returns_only_known_keys(store: SeenStore) -> None:
    entries = many(1100)
    store.persist(entries[:600])
    hits = store.lookup([e.key for e in entries])
    assert {k: (h.ref_id, h.received_us) for k, h in hits.items()} == {
        e.key: (e.ref_id, T0) for e in entries[:600]
    }
    assert store.lookup([]) == {}


@pytest.mark.parametrize(("count", "batch", "sizes"), [(0, 7, []), (20, 7, [7, 7, 6]),
                                                        (14, 7, [7, 7]), (3, 100, [3])])
def test_keys_are_read_back_in_batches(
    store: SeenStore, count: int, batch: int, sizes: list[int]
) -> None:
    entries = many(count)
    store.persist(entries)
    batches = list(store.keys(batch))
    assert [len(b) for b in batches] == sizes
    assert sorted(k for b in batches for k in b) == sorted(e.key for e in entries)


def test_persisted_keys_survive_a_restart(db_path: Path) -> None:
    first = SeenStore(db_path)
    first.persist([KeyEntry(DKEY, DELIVERY, "evt-1", T0), KeyEntry(HKEY, BODY, "evt-1", T0)])
    first.close()
    second = SeenStore(db_path)
    try:
        index = DedupIndex(second, body_window_us=DAY, bloom_bits_log2=16)
        assert index.load() == 2
        assert hit_ref(index, DKEY, DELIVERY, T0 + 10 * DAY) == "evt-1"
        assert hit_ref(index, HKEY, BODY, T0 + DAY) == "evt-1"
    finally:
        second.close()


# ---- release --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "released", "segment", "remaining"),
    [
        # the matching ref in the matching segment is removed
        ("evt-1", "evt-1", SEGMENT, None),
        # another event's ref leaves the key alone (a later holder must not lose it)
        ("evt-1", "evt-2", SEGMENT, "evt-1"),
        # the same ref in another segment leaves it alone too
        ("evt-1", "evt-1", SEGMENT + 1, "evt-1"),
    ],
)
def test_release_only_removes_the_matching_ref(
    index: DedupIndex, held: str, released: str, segment: int, remaining: str | None
) -> None:
    index.hold([KeyEntry(HKEY, BODY, held, T0), KeyEntry(DKEY, DELIVERY, "other", T0)], None,
               SEGMENT)
    index.release([KeyEntry(HKEY, BODY, released, T0)], segment)
    assert hit_ref(index, HKEY, BODY, T0) == remaining
    assert hit_ref(index, DKEY, DELIVERY, T0) == "other"
    assert index.pending_count == (1 if remaining is None else 2)


def test_release_of_an_unknown_key_is_harmless(index: DedupIndex) -> None:
    index.release([KeyEntry(HKEY, BODY, "evt-1", T0)], SEGMENT)
    index.hold([KeyEntry(DKEY, DELIVERY, "evt-1", T0)], None, SEGMENT)
    index.release([KeyEntry(HKEY, BODY, "evt-1", T0)], SEGMENT)
    assert index.pending_count == 1


# ---- pruning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cutoff", "pruned", "body_left"),
    [
        # nothing is old enough yet
        (T0 - 1, 0, True),
        # a key received exactly at the cut-off (now - window) can still match: keep it
        (T0, 0, True),
        # past the window: body and request keys go, delivery keys stay
        (T0 + 1, 2, False),
        (T0 + 400 * DAY, 2, False),
    ],
)
def test_prune_keeps_delivery_keys(
    store: SeenStore, index: DedupIndex, db_path: Path, cutoff: int, pruned: int,
    body_left: bool,
) -> None:
    store.persist([KeyEntry(DKEY, DELIVERY, "evt-1", T0), KeyEntry(HKEY, BODY, "evt-1", T0),
                   KeyEntry(RKEY, REQUEST, "req-1", T0)])
    index.load()
    assert store.prune(cutoff) == pruned
    kinds_left = sorted(kind for _, kind, _, _ in seen_rows(db_path))
    assert kinds_left == ([DELIVERY, BODY, REQUEST] if body_left else [DELIVERY])
    now = cutoff + DAY
    assert hit_ref(index, DKEY, DELIVERY, now) == "evt-1"
    # A pruned key is still "probable" in the Bloom filter: SQLite answers "new".
    assert hit_ref(index, HKEY, BODY, T0) == ("evt-1" if body_left else None)


# ---- flushed segments and the Bloom filter --------------------------------------------


def test_segment_flushed_moves_its_keys_behind_the_bloom_filter(
    index: DedupIndex, store: SeenStore, store_lookups: list[list[bytes]]
) -> None:
    first, second = many(30, "a"), many(20, "b")
    index.hold(first, None, 1)
    index.hold(second, None, 2)
    assert index.pending_count == 50

    store.persist(first)  # the flusher: lake write, keys, then the segment is deleted
    index.segment_flushed(1)

    assert index.pending_count == 20
    keys = [(e.key, BODY) for e in first + second]
    hits = index.lookup(keys, T0 + 1)
    assert {k: h.ref_id for k, h in hits.items()} == {e.key: e.ref_id for e in first + second}
    # Only the flushed segment's keys went to SQLite (the pending ones were answered in memory).
    assert [sorted(c) for c in store_lookups] == [sorted(e.key for e in first)]


def test_segment_flushed_for_an_unknown_or_repeated_segment_is_harmless(
    index: DedupIndex,
) -> None:
    index.hold([KeyEntry(HKEY, BODY, "evt-1", T0)], None, 1)
    index.segment_flushed(99)
    assert index.pending_count == 1
    index.store.persist([KeyEntry(HKEY, BODY, "evt-1", T0)])
    index.segment_flushed(1)
    index.segment_flushed(1)
    assert index.pending_count == 0
    assert hit_ref(index, HKEY, BODY, T0) == "evt-1"


def test_released_keys_are_not_moved_into_the_bloom_filter(
    index: DedupIndex, store_lookups: list[list[bytes]]
) -> None:
    kept, failed = many(5, "k"), many(5, "f")
    index.hold(kept + failed, None, 1)
    index.release(failed, 1)  # their write failed: never acknowledged, never persisted
    index.store.persist(kept)
    index.segment_flushed(1)
    hits = index.lookup([(e.key, BODY) for e in kept + failed], T0)
    assert set(hits) == {e.key for e in kept}
    # None of the released keys was even probable (the filter is large for 5 keys; the keys
    # are fixed, so this is deterministic).
    assert [sorted(c) for c in store_lookups] == [sorted(e.key for e in kept)]


def test_without_load_the_persisted_keys_are_not_consulted(index: DedupIndex) -> None:
    # Why the runtime calls load() at start: the Bloom filter gates every store lookup.
    index.store.persist([KeyEntry(HKEY, BODY, "evt-1", T0)])
    assert hit_ref(index, HKEY, BODY, T0) is None
    assert index.load() == 1
    assert hit_ref(index, HKEY, BODY, T0) == "evt-1"


def test_load_of_many_keys_never_loses_one(store: SeenStore) -> None:
    entries = many(3000)
    store.persist(entries)
    index = DedupIndex(store, body_window_us=DAY, bloom_bits_log2=12)  # crowded: many FPs
    assert index.load() == 3000
    hits = index.lookup([(e.key, BODY) for e in entries], T0)
    assert len(hits) == 3000
