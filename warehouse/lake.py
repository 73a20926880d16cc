"""The lake: Hive-partitioned Parquet on a local directory or any S3-compatible endpoint.

One filesystem layer for both, through pyarrow (`pyarrow.fs`): not DuckDB httpfs (cannot be
installed here) and not s3fs (pins old botocore). Writes are atomic per file (local: write a
hidden temp file then rename; S3: a PUT is atomic) and idempotent when the caller chooses a
deterministic file name, which is how the ingest flusher survives a crash between a lake write
and the truncation of its buffer.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from warehouse.files import fsync_path
from warehouse.lake_uri import parse_lake_uri
from warehouse.schema import PARTITIONING, TABLES

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "use_dictionary": True}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class LakeError(OSError):
    """The lake could not be read or written (retryable: the lake may come back)."""


@dataclass(frozen=True)
class Lake:
    """A lake rooted at `root` on filesystem `fs` (local or S3)."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def partition_dir(self, table: str, tenant_id: str, day: date) -> str:
        """`<root>/<table>/tenant_id=<t>/date=<YYYY-MM-DD>` (tenant ids are validated upstream)."""
        if table not in TABLES:
            raise ValueError(f"unknown lake table {table!r}")
        return posixpath.join(self.root, table, f"tenant_id={tenant_id}", f"date={day:%Y-%m-%d}")

    def write_parquet(self, directory: str, name: str, table: pa.Table) -> str:
        """Write `table` as `<directory>/<name>` atomically; rewriting the same name is harmless."""
        if not _SAFE_NAME.match(name):
            raise ValueError(f"unsafe lake file name {name!r}")
        path = posixpath.join(directory, name)
        try:
            if self.is_local:
                self.fs.create_dir(directory, recursive=True)
                tmp = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
                with self.fs.open_output_stream(tmp) as out:
                    pq.write_table(table, out, **PARQUET_OPTIONS)
                    out.flush()
                fsync_path(tmp)
                self.fs.move(tmp, path)
                fsync_path(directory)
            else:
                with self.fs.open_output_stream(path) as out:
                    pq.write_table(table, out, **PARQUET_OPTIONS)
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"lake write failed for {path}: {exc}") from exc
        return path

    def files(self, table: str) -> list[pafs.FileInfo]:
        """Every Parquet file of a table, sorted by path (hidden temp files excluded)."""
        base = posixpath.join(self.root, table)
        try:
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            infos = self.fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"cannot list {base}: {exc}") from exc
        keep = [
            i for i in infos
            if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
            and not i.base_name.startswith(".")
        ]
        return sorted(keep, key=lambda i: i.path)

    def dataset(self, table: str) -> ds.Dataset:
        """A pyarrow dataset over a table with typed Hive partition columns."""
        paths = [i.path for i in self.files(table)]
        return ds.dataset(
            paths,
            schema=_with_partitions(TABLES[table]),
            filesystem=self.fs,
            format="parquet",
            partitioning=ds.partitioning(PARTITIONING, flavor="hive"),
            partition_base_dir=posixpath.join(self.root, table),
        )

    def read_table(self, table: str, filter: ds.Expression | None = None) -> pa.Table:
        return self.dataset(table).to_table(filter=filter)

    def probe(self) -> None:
        """Prove the lake is writable by overwriting one tiny marker object.

        It is overwritten, never deleted: deleting an S3 object through pyarrow leaves a
        zero-byte "directory" marker behind.
        """
        path = posixpath.join(self.root, "_aw_probe")
        try:
            if self.is_local:
                self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(path) as out:
                out.write(b"ok")
        except (OSError, pa.ArrowException) as exc:
            raise LakeError(f"lake not writable: {exc}") from exc


def _with_partitions(schema: pa.Schema) -> pa.Schema:
    return pa.schema(list(schema) + list(PARTITIONING), metadata=schema.metadata)


def open_lake(
    uri: str, s3_endpoint_url: str | None = None, timeout_seconds: float = 10.0
) -> Lake:
    """Open `file:///abs/path` (or a plain path) or `s3://bucket/prefix`."""
    location = parse_lake_uri(uri)
    if location.scheme == "file":
        return Lake(fs=pafs.LocalFileSystem(), root=location.root, uri=f"file://{location.root}")
    kwargs: dict[str, object] = {
        "connect_timeout": timeout_seconds,
        "request_timeout": timeout_seconds,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        "check_directory_existence_before_creation": False,
    }
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    if s3_endpoint_url:
        endpoint = urlparse(s3_endpoint_url)
        kwargs["endpoint_override"] = endpoint.netloc or s3_endpoint_url
        kwargs["scheme"] = endpoint.scheme or "https"
    return Lake(fs=pafs.S3FileSystem(**kwargs), root=location.root, uri=uri)


def iter_partition_dirs(lake: Lake, table: str) -> Iterator[tuple[str, str]]:
    """Yield (tenant_id, date) of every partition that holds at least one file."""
    seen: set[tuple[str, str]] = set()
    for info in lake.files(table):
        parts = dict(
            p.split("=", 1) for p in info.path.split("/") if p.startswith(("tenant_id=", "date="))
        )
        key = (parts.get("tenant_id", ""), parts.get("date", ""))
        if key not in seen:
            seen.add(key)
            yield key
