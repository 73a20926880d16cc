"""The buffer's on-disk format: segments of length-prefixed, checksummed records.

Record layout: magic `AWR1`, meta length (u32), body length (u32), crc32 of meta+body (u32),
then the meta JSON and the raw body bytes. A segment is `seg-<id>.wal` while written and
`seg-<id>.sealed` once closed; the id is the first sequence number it holds.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from warehouse.files import fsync_path

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<4sIII")
_MAGIC = b"AWR1"


def encode_record(meta: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(meta))
    return _HEADER.pack(_MAGIC, len(meta), len(body), crc) + meta + body


@dataclass(frozen=True)
class Segment:
    """A sealed segment on disk and the records it holds."""

    path: Path
    first_seq: int

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield (meta, body) of every complete record (a torn tail ends the iteration).

        One record at a time: a segment is up to `flush_max_bytes` (64 MB), and the flusher
        should not hold all of it on top of the rows it builds from it (peak RSS).
        """
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            while True:
                header = fh.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    return
                magic, meta_len, body_len, crc = _HEADER.unpack(header)
                length = meta_len + body_len
                if magic != _MAGIC or length > size - fh.tell():
                    return
                payload = fh.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    return
                yield payload[:meta_len], payload[meta_len:]


def sealed_segments(directory: Path) -> list[Segment]:
    """Sealed segments, oldest first (what the flusher works through)."""
    return [
        Segment(path=p, first_seq=int(p.stem.split("-")[1]))
        for p in sorted(directory.glob("seg-*.sealed"))
    ]


def delete_segment(segment: Segment) -> None:
    """Forget a segment whose records are confirmed in the lake (the flusher's last step)."""
    try:
        segment.path.unlink()
    except FileNotFoundError:  # another flusher got there first: same outcome
        return
    fsync_dir(segment.path.parent)


def sealed_path(directory: Path, segment: int) -> Path:
    return directory / f"seg-{segment:020d}.sealed"


def truncate_torn_tail(path: Path) -> None:
    good = 0
    with open(path, "rb") as fh:
        data = fh.read()
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, meta_len, body_len, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + meta_len + body_len
        if magic != _MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        good = offset = end
    if good < len(data):
        log.warning("cutting %d torn bytes off %s", len(data) - good, path.name)
        with open(path, "r+b") as fh:
            fh.truncate(good)
            fh.flush()
            os.fsync(fh.fileno())


def fsync_dir(directory: Path) -> None:
    fsync_path(directory)
