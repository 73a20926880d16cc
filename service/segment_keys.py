"""The duplicate keys a buffer segment holds (what the flusher persists, and what the intake
holds again after a restart). No pyarrow here: the intake process imports this."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from service.buffer import Segment
from service.dedup import (
    BODY,
    DELIVERY,
    REQUEST,
    KeyEntry,
    body_key,
    delivery_key,
    request_key,
)


def segment_keys(segment: Segment) -> list[KeyEntry]:
    """Only the duplicate keys of a segment (what the intake holds again after a restart)."""
    keys: list[KeyEntry] = []
    for meta, _ in segment.records():
        keys.extend(record_keys(orjson.loads(meta)))
    return keys


def record_keys(meta: dict[str, Any]) -> Iterator[KeyEntry]:
    tenant, received_us = meta["tenant_id"], meta["received_us"]
    events = meta["events"]
    for event_id, source, delivery_id, body_sha256 in zip(
        events["event_id"], events["source"], events["delivery_id"], events["body_sha256"],
        strict=True,
    ):
        yield KeyEntry(body_key(tenant, body_sha256), BODY, event_id, received_us)
        if delivery_id is not None:
            yield KeyEntry(delivery_key(tenant, source, delivery_id), DELIVERY, event_id,
                           received_us)
    if meta["archive"]:
        yield KeyEntry(request_key(tenant, meta["body_sha256"]), REQUEST, meta["request_id"],
                       received_us)
