"""The durable intake shared by every route: duplicates, ids, sequence numbers, the buffer.

`Intake.submit` runs on the event loop. Everything from the duplicate lookup to queuing the
record happens without an `await`, so two concurrent requests can never both take the same
key as new. The 202 receipt is returned only once the record is fsync'd.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.buffer import BufferFull, BufferWriteError, DurableBuffer, encode_record
from service.dedup import (
    BODY,
    DELIVERY,
    REQUEST,
    DedupIndex,
    Hit,
    KeyEntry,
    body_key,
    delivery_key,
    request_key,
)
from service.errors import unavailable
from warehouse.contracts import AlertRecord


@dataclass(frozen=True)
class RequestInfo:
    """What the archive keeps of a request besides its body (never credentials)."""

    tenant_id: str
    route: str
    received_us: int
    body: bytes
    body_sha256: str
    content_type: str | None
    headers: Mapping[str, str]


@dataclass
class Receipt:
    request_id: str
    ids: list[str] = field(default_factory=list)
    duplicate_events: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "accepted": len(self.ids),
            "duplicates": len(self.duplicate_events),
            "ids": self.ids,
            "duplicate_events": self.duplicate_events,
        }


def new_ids(count: int, received_us: int) -> list[str]:
    """Time-ordered unique ids: 48 bits of milliseconds, 80 random bits, as 32 hex digits."""
    ms = received_us // 1000
    rand = os.urandom(10 * count)
    return [f"{ms:012x}{rand[i * 10 : i * 10 + 10].hex()}" for i in range(count)]


class Intake:
    """Turn normalized records into a durable buffer record and a receipt."""

    def __init__(self, buffer: DurableBuffer, dedup: DedupIndex, retry_after: int) -> None:
        self.buffer = buffer
        self.dedup = dedup
        self.retry_after = retry_after

    async def submit(self, info: RequestInfo, records: list[AlertRecord]) -> Receipt:
        tenant = info.tenant_id
        req_key = request_key(tenant, info.body_sha256)
        record_keys = [
            (delivery_key(tenant, r.source, r.delivery_id) if r.delivery_id else None,
             body_key(tenant, r.body_sha256))
            for r in records
        ]
        lookups: list[tuple[bytes, int]] = [(req_key, REQUEST)]
        for dkey, hkey in record_keys:
            if dkey is not None:
                lookups.append((dkey, DELIVERY))
            lookups.append((hkey, BODY))
        hits = self.dedup.lookup(lookups, info.received_us)

        ids = new_ids(len(records) + 1, info.received_us)
        request_hit = hits.get(req_key)
        batch = _Batch(Receipt(request_hit.ref_id if request_hit else ids[-1]))
        batch.wait_for(request_hit)
        first_seq = self.buffer.allocate(len(records))
        for i, (rec, (dkey, hkey)) in enumerate(zip(records, record_keys, strict=True)):
            batch.add(i, rec, ids[i], first_seq + i, dkey, hkey, hits, info.received_us)
        archive = request_hit is None
        if archive:
            batch.entries.append(
                KeyEntry(req_key, REQUEST, batch.receipt.request_id, info.received_us))
        meta = _meta(info, batch.receipt.request_id, first_seq, len(records), archive,
                     batch.events, batch.duplicates)
        await self._make_durable(
            encode_record(meta, info.body if archive else b""), len(records), first_seq, batch
        )
        return batch.receipt

    async def _make_durable(
        self, record: bytes, events: int, first_seq: int, batch: _Batch
    ) -> None:
        try:
            durable, segment = self.buffer.submit(record, events, first_seq)
        except BufferFull:
            raise unavailable("the intake buffer is full; retry later", self.retry_after) from None
        except BufferWriteError:
            raise unavailable("the intake buffer is unavailable", self.retry_after) from None
        self.dedup.hold(batch.entries, durable, segment)
        try:
            await durable
            # A duplicate of an event that was still on its way to disk is only a duplicate
            # if that event made it; otherwise the sender must retry.
            for wait in batch.waits:
                await wait
        except BufferWriteError:
            self.dedup.release(batch.entries, segment)
            raise unavailable("could not make the alert durable; retry", self.retry_after) from None


@dataclass
class _Batch:
    """What one request becomes: rows for the buffer record, keys to hold, the receipt."""

    receipt: Receipt
    events: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    entries: list[KeyEntry] = field(default_factory=list)
    waits: list[asyncio.Future[None]] = field(default_factory=list)

    def wait_for(self, hit: Hit | None) -> None:
        if hit is not None and hit.durable is not None and not hit.durable.done():
            self.waits.append(hit.durable)

    def add(
        self, index: int, rec: AlertRecord, event_id: str, seq: int, dkey: bytes | None,
        hkey: bytes, hits: dict[bytes, Hit], received_us: int,
    ) -> None:
        hit, reason = _first_hit(hits, dkey, hkey)
        if hit is not None:
            self.wait_for(hit)
            self.duplicates.append(_duplicate_row(rec, event_id, seq, hit.ref_id, reason))
            self.receipt.duplicate_events.append(
                {"index": index, "event_id": event_id, "duplicate_of": hit.ref_id,
                 "reason": reason}
            )
            return
        self.events.append(_event_row(rec, event_id, seq))
        self.receipt.ids.append(event_id)
        # Later objects of this same request see this one as their original.
        new_hit = Hit(event_id, received_us)
        hits[hkey] = new_hit
        self.entries.append(KeyEntry(hkey, BODY, event_id, received_us))
        if dkey is not None:
            hits[dkey] = new_hit
            self.entries.append(KeyEntry(dkey, DELIVERY, event_id, received_us))


def _first_hit(
    hits: dict[bytes, Hit], dkey: bytes | None, hkey: bytes
) -> tuple[Hit | None, str]:
    if dkey is not None and dkey in hits:
        return hits[dkey], "delivery_id"
    if hkey in hits:
        return hits[hkey], "body_hash"
    return None, ""


def _event_row(rec: AlertRecord, event_id: str, seq: int) -> dict[str, Any]:
    return {
        "event_id": event_id, "ingest_seq": seq, "source": rec.source,
        "source_fingerprint": rec.source_fingerprint, "source_alert_id": rec.source_alert_id,
        "delivery_id": rec.delivery_id, "asset": rec.asset, "signature": rec.signature,
        "severity": rec.severity, "raw_severity": rec.raw_severity, "status": rec.status,
        "occurred_at": rec.occurred_at_us, "message": rec.message, "labels": rec.labels,
        "body_sha256": rec.body_sha256,
    }


def _duplicate_row(
    rec: AlertRecord, event_id: str, seq: int, original: str, reason: str
) -> dict[str, Any]:
    return {
        "event_id": event_id, "ingest_seq": seq, "duplicate_of": original, "reason": reason,
        "source": rec.source, "source_fingerprint": rec.source_fingerprint,
        "delivery_id": rec.delivery_id, "body_sha256": rec.body_sha256,
        "occurred_at": rec.occurred_at_us,
    }


def _meta(
    info: RequestInfo, request_id: str, first_seq: int, count: int, archive: bool,
    events: list[dict[str, Any]], duplicates: list[dict[str, Any]],
) -> bytes:
    return orjson.dumps(
        {
            "last_seq": first_seq + count - 1,
            "first_seq": first_seq,
            "tenant_id": info.tenant_id,
            "route": info.route,
            "request_id": request_id,
            "received_us": info.received_us,
            "archive": archive,
            "content_type": info.content_type,
            "headers": dict(info.headers),
            "body_sha256": info.body_sha256,
            "events": events,
            "duplicates": duplicates,
        }
    )
