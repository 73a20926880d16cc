"""Exact-duplicate detection (SEMANTICS.md R2), consistent with the durable buffer.

Keys: a delivery id per (tenant, source), with no time limit; the body hash of an alert object
per tenant, within 24 h of receive time (inclusive); and the hash of a whole request body, so
that each accepted body is archived once. Keys are 16-byte digests.

A key is always in one of two tiers once its event is acknowledged:
- `pending` (in the intake process): keys of events still in the buffer, grouped by the buffer
  segment that holds them (rebuilt from the buffer on start);
- `SeenStore` (a SQLite table): written by the flusher after the lake write and *before* it
  deletes the segment; only then does the intake drop the segment's pending keys, adding them
  to a Bloom filter that spares SQLite the lookups of keys never seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from service.bloom import BloomFilter

DELIVERY, BODY, REQUEST = 1, 2, 3
_CHUNK = 500  # keys per SQL statement


def delivery_key(tenant_id: str, source: str, delivery_id: str) -> bytes:
    return _digest(b"d", tenant_id, source, delivery_id)


def body_key(tenant_id: str, body_sha256: str) -> bytes:
    return _digest(b"h", tenant_id, body_sha256)


def request_key(tenant_id: str, body_sha256: str) -> bytes:
    return _digest(b"r", tenant_id, body_sha256)


def _digest(kind: bytes, *parts: str) -> bytes:
    return hashlib.blake2b(kind + b"\0" + "\0".join(parts).encode(), digest_size=16).digest()


@dataclass(slots=True)
class Hit:
    """An earlier event (or request) holding a key; `durable` is None once it is on disk."""

    ref_id: str
    received_us: int
    durable: asyncio.Future[None] | None = None


@dataclass(slots=True)
class KeyEntry:
    key: bytes
    kind: int
    ref_id: str
    received_us: int


class SeenStore:
    """The persisted keys (SQLite, WAL mode): written by the flusher, read by the intake."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._con.execute("pragma journal_mode=wal")
        self._con.execute("pragma synchronous=normal")
        self._con.execute("pragma busy_timeout=10000")
        self._con.execute("pragma cache_size=-32768")  # KiB: 32 MiB at most, touched pages only
        self._con.execute(
            "create table if not exists seen (key blob primary key, kind integer not null,"
            " ref_id text not null, received_us integer not null) without rowid"
        )
        self._con.execute("create index if not exists seen_expiry on seen (kind, received_us)")

    def lookup(self, keys: list[bytes]) -> dict[bytes, Hit]:
        hits: dict[bytes, Hit] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                rows = self._con.execute(
                    "select key, ref_id, received_us from seen where key in "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                hits.update((key, Hit(ref_id, received_us)) for key, ref_id, received_us in rows)
        return hits

    def persist(self, entries: list[KeyEntry]) -> None:
        """Record keys whose events are in the lake (idempotent: a re-flush writes the same
        rows; a body key re-used after its window, i.e. a new event, replaces the old row)."""
        with self._lock:
            self._con.execute("begin")
            # In key order: neighbouring inserts touch the same B-tree pages (random 16-byte
            # keys in arrival order made this 2x slower, the flusher's largest cost).
            self._con.executemany(
                "insert or replace into seen (key, kind, ref_id, received_us) values (?,?,?,?)",
                sorted((e.key, e.kind, e.ref_id, e.received_us) for e in entries),
            )
            self._con.execute("commit")

    def prune(self, older_than_us: int) -> int:
        """Forget body and request keys received before the cut-off (delivery ids stay)."""
        with self._lock:
            cur = self._con.execute(
                "delete from seen where kind != ? and received_us < ?", (DELIVERY, older_than_us)
            )
            return cur.rowcount

    def keys(self, batch: int = 100_000) -> Iterator[list[bytes]]:
        """Every persisted key, in batches (to fill the Bloom filter at start)."""
        cur = self._con.execute("select key from seen")
        while rows := cur.fetchmany(batch):
            yield [row[0] for row in rows]

    def close(self) -> None:
        self._con.close()


class DedupIndex:
    """Pending keys per buffer segment, a Bloom filter, and the persisted store."""

    def __init__(self, store: SeenStore, body_window_us: int, bloom_bits_log2: int = 27) -> None:
        self.store = store
        self.body_window_us = body_window_us
        self._pending: dict[int, dict[bytes, Hit]] = {}
        self._bloom = BloomFilter(bloom_bits_log2)

    def load(self) -> int:
        """Fill the Bloom filter with every persisted key (at start)."""
        for keys in self.store.keys():
            self._bloom.add(keys)
        return self._bloom.count

    def lookup(self, keys: list[tuple[bytes, int]], now_us: int) -> dict[bytes, Hit]:
        """Earlier holders of these keys that still count (body keys expire after 24 h)."""
        hits: dict[bytes, Hit] = {}
        unseen: list[bytes] = []
        # Newest segment first: a body key re-used after its window (the lake down for a day)
        # is in an old and a new segment, and only the newest holder counts.
        generations = list(reversed(self._pending.values()))
        for key, _ in keys:
            for generation in generations:
                hit = generation.get(key)
                if hit is not None:
                    hits[key] = hit
                    break
            else:
                unseen.append(key)
        if unseen:
            probable = [k for k, maybe in zip(unseen, self._bloom.might_contain(unseen),
                                              strict=True) if maybe]
            if probable:
                hits.update(self.store.lookup(probable))
        kinds = dict(keys)
        return {
            k: h for k, h in hits.items()
            if kinds.get(k) == DELIVERY or now_us - h.received_us <= self.body_window_us
        }

    def hold(
        self, entries: Iterable[KeyEntry], durable: asyncio.Future[None] | None, segment: int
    ) -> None:
        """Register keys of events queued into `segment` (durable=None: replayed from disk)."""
        generation = self._pending.setdefault(segment, {})
        for e in entries:
            generation[e.key] = Hit(e.ref_id, e.received_us, durable)

    def hold_hits(
        self, held: list[tuple[bytes, Hit]], durable: asyncio.Future[None], segment: int
    ) -> None:
        """The intake's fast path of `hold`: its Hit objects are kept as they are."""
        for _, hit in held:
            hit.durable = durable
        self._pending.setdefault(segment, {}).update(held)

    def release_hits(self, held: list[tuple[bytes, Hit]], segment: int) -> None:
        """Drop keys of a batch that failed to become durable (unless re-held since)."""
        generation = self._pending.get(segment, {})
        for key, hit in held:
            if generation.get(key) is hit:
                del generation[key]

    def release(self, entries: Iterable[KeyEntry], segment: int) -> None:
        """Drop keys of a batch that failed to become durable."""
        generation = self._pending.get(segment, {})
        for e in entries:
            hit = generation.get(e.key)
            if hit is not None and hit.ref_id == e.ref_id:
                del generation[e.key]

    def segment_flushed(self, segment: int) -> None:
        """The flusher persisted this segment's keys and deleted it: they leave `pending`."""
        generation = self._pending.pop(segment, None)
        if generation:
            self._bloom.add(generation)

    @property
    def pending_count(self) -> int:
        return sum(len(g) for g in self._pending.values())
