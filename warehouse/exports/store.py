"""The export area of the lake (`<lake>/exports/…`): paths, URIs, atomic writes, versions.

Every export is written under a new version folder (`v=<version>`) that no reader looks at,
then made current by replacing one small pointer file (the QuickSight manifest, the Athena
table definition). Replacing a file is atomic on both backends: locally a temp file is
renamed over it, on S3 a PUT replaces the object whole. A reader therefore sees the previous
export or the new one, never a mix; a failed export leaves only an unreferenced folder, which
`prune` deletes later.

Deleting a folder on S3 through pyarrow leaves a zero-byte marker for its parent (the table
folder, which holds the pointer files anyway); nothing is ever left inside a version folder.
"""

from __future__ import annotations

import json
import posixpath
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from warehouse.files import fsync_path
from warehouse.lake import Lake, LakeError

VERSION_PREFIX = "v="
_VERSION = re.compile(r"^(\d{8}T\d{6})-(\d{6})-[0-9a-f]{8}$")


def new_version(now: datetime | None = None) -> str:
    """A version id that sorts by time: `20261127T043856-123456-ab12cd34` (UTC)."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{at:%Y%m%dT%H%M%S}-{at:%f}-{uuid.uuid4().hex[:8]}"


def version_time(version: str) -> datetime | None:
    match = _VERSION.match(version)
    if not match:
        return None
    return datetime.strptime(match.group(1) + match.group(2), "%Y%m%dT%H%M%S%f").replace(
        tzinfo=UTC)


@dataclass(frozen=True)
class ExportStore:
    """Reads and writes under `<lake root>/exports` on the lake's filesystem."""

    lake: Lake

    @property
    def root(self) -> str:
        return posixpath.join(self.lake.root, "exports")

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def uri(self, path: str) -> str:
        """`s3://bucket/key` on S3, `file:///abs/path` locally."""
        return ("file://" if self.lake.is_local else "s3://") + path

    def path_of(self, uri: str) -> str:
        for scheme in ("s3://", "file://"):
            if uri.startswith(scheme):
                return uri[len(scheme):]
        raise ValueError(f"not a lake URI: {uri!r}")

    def bucket_key(self, path: str) -> tuple[str, str]:
        """(bucket, key) of an S3 path; ValueError on a local lake."""
        if self.lake.is_local:
            raise ValueError(f"the lake is local ({self.lake.uri}): QuickSight and Athena "
                             "read S3 only; set AW_LAKE_URI=s3://bucket/prefix")
        bucket, _, key = path.partition("/")
        return bucket, key

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file atomically (this is how a pointer file switches versions)."""
        with self.open_write(path) as out:
            out.write(data)

    def write_json(self, path: str, value: Any) -> None:
        self.write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())

    @contextmanager
    def open_write(self, path: str) -> Iterator[pa.NativeFile]:
        """A stream whose file appears at `path` only once the block ends without error
        (locally; on S3 the object appears when the upload completes)."""
        directory = posixpath.dirname(path)
        try:
            if not self.lake.is_local:
                with self.lake.fs.open_output_stream(path) as out:
                    yield out
                return
            self.lake.fs.create_dir(directory, recursive=True)
            tmp = posixpath.join(directory, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
            try:
                with self.lake.fs.open_output_stream(tmp) as out:
                    yield out
                fsync_path(tmp)
                self.lake.fs.move(tmp, path)
                fsync_path(directory)
            finally:
                if self.lake.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                    self.lake.fs.delete_file(tmp)
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"export write failed for {path}: {exc}") from exc

    def read_json(self, path: str) -> Any | None:
        """The parsed JSON file at `path`, or None when there is none."""
        try:
            if self.lake.fs.get_file_info(path).type != pafs.FileType.File:
                return None
            with self.lake.fs.open_input_stream(path) as src:
                return json.loads(src.read())
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"cannot read {path}: {exc}") from exc

    def versions(self, folder: str) -> list[str]:
        """Version ids under `folder`, newest first."""
        try:
            infos = self.lake.fs.get_file_info(
                pafs.FileSelector(folder, recursive=False, allow_not_found=True))
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"cannot list {folder}: {exc}") from exc
        found = [i.base_name[len(VERSION_PREFIX):] for i in infos
                 if i.type == pafs.FileType.Directory and i.base_name.startswith(VERSION_PREFIX)]
        return sorted(found, reverse=True)

    def prune(self, folder: str, current: str | None, keep: int, grace: timedelta,
              now: datetime | None = None) -> list[str]:
        """Delete versions beyond the newest `keep` that are older than `grace`, never the
        current one: a reader that followed an older pointer (a SPICE ingestion in progress,
        an Athena table not yet re-pointed) keeps its files for at least `grace`."""
        cutoff = (now or datetime.now(UTC)) - grace
        removed = []
        for version in self.versions(folder)[keep:]:
            made = version_time(version)
            if version == current or made is None or made > cutoff:
                continue
            path = posixpath.join(folder, VERSION_PREFIX + version)
            try:
                self.lake.fs.delete_dir(path)
            except (OSError, pa.ArrowException) as exc:
                raise LakeError(f"cannot delete old export {path}: {exc}") from exc
            removed.append(path)
        return removed
