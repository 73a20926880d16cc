"""Exact-duplicate detection (SEMANTICS.md R2), consistent with the durable buffer.

Keys: a delivery id per (tenant, source), with no time limit; the body hash of an alert object
per tenant, within 24 h of receive time (inclusive); and the hash of a whole request body, so
that each accepted body is archived once. Keys are 16-byte digests.

Two tiers, so that a key is always in one of them once its event is acknowledged:
- `pending`: in memory, keys of events still in the buffer (rebuilt from the buffer on start);
- `seen`: a SQLite table, written by the flusher after the lake write and *before* the buffer
  segment is deleted and the keys leave `pending`.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DELIVERY, BODY, REQUEST = 1, 2, 3
_CHUNK = 500  # SQLite's bound-parameter limit is far above; keeps statements small


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


class DedupIndex:
    """Pending keys in memory, persisted keys in SQLite; see the module docstring."""

    def __init__(self, path: Path, body_window_us: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.body_window_us = body_window_us
        self._pending: dict[bytes, Hit] = {}
        self._lock = threading.Lock()
        self._read = self._connect(path)
        self._write = self._connect(path)
        self._write.execute(
            "create table if not exists seen (key blob primary key, kind integer not null,"
            " ref_id text not null, received_us integer not null) without rowid"
        )
        self._write.execute("create index if not exists seen_expiry on seen (kind, received_us)")
        self._write.commit()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        con.execute("pragma journal_mode=wal")
        con.execute("pragma synchronous=normal")
        con.execute("pragma busy_timeout=5000")
        return con

    def lookup(self, keys: list[tuple[bytes, int]], now_us: int) -> dict[bytes, Hit]:
        """Earlier holders of these keys that still count (body keys expire after 24 h)."""
        hits: dict[bytes, Hit] = {}
        missing: list[bytes] = []
        for key, _ in keys:
            hit = self._pending.get(key)
            if hit is not None:
                hits[key] = hit
            else:
                missing.append(key)
        for i in range(0, len(missing), _CHUNK):
            chunk = missing[i : i + _CHUNK]
            rows = self._read.execute(
                f"select key, kind, ref_id, received_us from seen where key in "
                f"({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for key, _kind, ref_id, received_us in rows:
                hits[key] = Hit(ref_id, received_us)
        kinds = dict(keys)
        return {
            k: h for k, h in hits.items()
            if kinds.get(k) == DELIVERY or now_us - h.received_us <= self.body_window_us
        }

    def hold(self, entries: Iterable[KeyEntry], durable: asyncio.Future[None] | None) -> None:
        """Register keys of events just queued (durable=None when replayed from disk)."""
        for e in entries:
            self._pending[e.key] = Hit(e.ref_id, e.received_us, durable)

    def release(self, entries: Iterable[KeyEntry]) -> None:
        """Drop keys of a batch that failed to become durable."""
        for e in entries:
            hit = self._pending.get(e.key)
            if hit is not None and hit.ref_id == e.ref_id:
                del self._pending[e.key]

    def persist(self, entries: list[KeyEntry]) -> None:
        """Record keys whose events are in the lake, then let them leave `pending`.

        Idempotent: a segment flushed twice (crash before its deletion) writes the same rows.
        A body key re-used after its window (a new event) replaces the old row.
        """
        with self._lock:
            self._write.execute("begin")
            self._write.executemany(
                "insert or replace into seen (key, kind, ref_id, received_us) values (?,?,?,?)",
                [(e.key, e.kind, e.ref_id, e.received_us) for e in entries],
            )
            self._write.execute("commit")
        self.release(entries)

    def prune(self, now_us: int) -> int:
        """Forget body and request keys older than the window (delivery ids are kept)."""
        with self._lock:
            cur = self._write.execute(
                "delete from seen where kind != ? and received_us < ?",
                (DELIVERY, now_us - self.body_window_us),
            )
            return cur.rowcount

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._read.close()
        self._write.close()
