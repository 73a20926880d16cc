"""The lake layer (`warehouse.lake`) on a local directory and on a real S3 endpoint (moto).

Each test runs twice: once on a temp directory, once on a bucket + prefix of a moto server
running as a separate process (module-scoped; every test gets its own bucket).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tests.support.servers import MotoServer
from warehouse.lake import Lake, LakeError, iter_partition_dirs, open_lake
from warehouse.schema import ALERT_EVENTS, REQUESTS

DAY = date(2026, 11, 2)
OTHER_DAY = date(2026, 11, 3)


@dataclass
class LakeCase:
    lake: Lake
    # Every stored object/file under the lake root: (path relative to the root, size).
    listing: Callable[[], list[tuple[str, int]]]
    # Put raw bytes at a path relative to the root, bypassing the lake layer.
    put_raw: Callable[[str, bytes], None]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoServer(log_path=log) as server:
        yield server


def _local_case(tmp_path: Path) -> LakeCase:
    root = tmp_path / "lake"
    lake = open_lake(root.as_uri())

    def listing() -> list[tuple[str, int]]:
        if not root.exists():
            return []
        return sorted(
            (str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()
        )

    def put_raw(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return LakeCase(lake, listing, put_raw)


def _s3_case(moto: MotoServer) -> LakeCase:
    bucket, prefix = f"lake-{uuid.uuid4().hex[:12]}", "tenants/lake"
    moto.create_bucket(bucket)
    lake = open_lake(f"s3://{bucket}/{prefix}/", moto.endpoint_url, timeout_seconds=5)
    def listing() -> list[tuple[str, int]]:
        out = []
        for key, size in moto.list_objects(bucket):
            assert key.startswith(prefix + "/"), f"object {key!r} outside the lake prefix"
            out.append((key[len(prefix) + 1 :], size))
        return out

    def put_raw(rel: str, data: bytes) -> None:
        moto.client().put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)

    return LakeCase(lake, listing, put_raw)


@pytest.fixture(params=["local", "s3"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> LakeCase:
    if request.param == "local":
        return _local_case(tmp_path)
    return _s3_case(request.getfixturevalue("moto"))


def alert_rows(n: int, tenant: str = "acme", start: int = 0) -> pa.Table:
    at = datetime(2026, 11, 2, 10, 0, 0, 123456, tzinfo=UTC)
    rows = [
        {
            "event_id": f"{tenant}-{start + i:06d}", "ingest_seq": start + i, "request_id": "r1",
            "source": "generic", "source_fingerprint": f"fp-{i}", "source_alert_id": None,
            "delivery_id": f"d-{start + i}", "asset": f"web{i:02d}", "signature": "disk_full",
            "severity": "critical", "raw_severity": "critical", "status": "point",
            "occurred_at": at, "occurred_at_defaulted": False, "received_at": at,
            "message": "full", "labels": [("env", "prod"), ("i", str(i))],
            "body_sha256": f"{i:064x}", "missing_asset": False, "severity_mapped": True,
            "has_resolve_path": False, "truncated_alerts": None,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=ALERT_EVENTS)


def assert_clean(case: LakeCase) -> None:
    """Only Parquet files (and the probe marker): no temp files, no directory markers."""
    for rel, size in case.listing():
        name = rel.rsplit("/", 1)[-1]
        assert not rel.endswith("/"), f"directory marker {rel!r} left in the lake"
        assert size > 0, f"zero-byte object {rel!r} left in the lake"
        assert not name.startswith("."), f"hidden/temp file {rel!r} left in the lake"
        assert name.endswith(".parquet") or rel == "_aw_probe", f"unexpected object {rel!r}"


def test_write_and_read_back_with_typed_partitions(case: LakeCase) -> None:
    lake = case.lake
    a = lake.partition_dir("raw/alerts", "acme", DAY)
    b = lake.partition_dir("raw/alerts", "globex", OTHER_DAY)
    assert a.endswith("raw/alerts/tenant_id=acme/date=2026-11-02")
    lake.write_parquet(a, "seg-00000000000000000001-000.parquet", alert_rows(3))
    lake.write_parquet(b, "seg-00000000000000000004-000.parquet", alert_rows(2, "globex", 3))

    table = lake.read_table("raw/alerts")
    assert table.schema.field("tenant_id").type == pa.string()
    assert table.schema.field("date").type == pa.date32()
    assert table.schema.field("occurred_at").type == pa.timestamp("us", tz="UTC")
    assert table.num_rows == 5
    rows = sorted(table.to_pylist(), key=lambda r: r["event_id"])
    assert [(r["tenant_id"], r["date"]) for r in rows] == [("acme", DAY)] * 3 + [
        ("globex", OTHER_DAY)
    ] * 2
    first = rows[0]
    assert first["event_id"] == "acme-000000"
    assert first["occurred_at"] == datetime(2026, 11, 2, 10, 0, 0, 123456, tzinfo=UTC)
    assert first["labels"] == [("env", "prod"), ("i", "0")]

    only_globex = lake.read_table("raw/alerts", filter=ds.field("tenant_id") == "globex")
    assert sorted(only_globex.column("event_id").to_pylist()) == ["globex-000003", "globex-000004"]
    by_date = lake.read_table("raw/alerts", filter=ds.field("date") == DAY)
    assert by_date.num_rows == 3
    assert sorted(iter_partition_dirs(lake, "raw/alerts")) == [
        ("acme", "2026-11-02"), ("globex", "2026-11-03")
    ]
    assert lake.read_table("raw/requests").num_rows == 0
    assert lake.read_table("raw/requests").schema.field("date").type == pa.date32()
    assert_clean(case)


def test_rewriting_the_same_name_is_idempotent(case: LakeCase) -> None:
    lake = case.lake
    directory = lake.partition_dir("raw/alerts", "acme", DAY)
    name = "seg-00000000000000000001-000.parquet"
    for _ in range(3):
        lake.write_parquet(directory, name, alert_rows(4))
    assert lake.read_table("raw/alerts").num_rows == 4
    assert [i.base_name for i in lake.files("raw/alerts")] == [name]
    assert_clean(case)


def test_requests_table_keeps_bodies_byte_exact(case: LakeCase) -> None:
    lake = case.lake
    body = b'{"signature": "x",\n "asset":"\xc3\xa9"}\x00'
    at = datetime(2026, 11, 2, 1, 2, 3, tzinfo=UTC)
    table = pa.Table.from_pylist(
        [{"request_id": "r1", "route": "generic", "received_at": at,
          "content_type": "application/json", "headers": [("user-agent", "t")], "body": body,
          "body_sha256": "0" * 64, "event_count": 1, "duplicate_count": 0}],
        schema=REQUESTS,
    )
    lake.write_parquet(lake.partition_dir("raw/requests", "acme", DAY), "r.parquet", table)
    [row] = lake.read_table("raw/requests").to_pylist()
    assert row["body"] == body
    assert (row["tenant_id"], row["date"]) == ("acme", DAY)
    assert_clean(case)


def test_files_ignore_hidden_temp_files(case: LakeCase) -> None:
    lake = case.lake
    directory = lake.partition_dir("raw/alerts", "acme", DAY)
    lake.write_parquet(directory, "seg-1.parquet", alert_rows(2))
    rel_dir = "raw/alerts/tenant_id=acme/date=2026-11-02"
    # What a crash mid-write leaves behind (local) and other hidden files: never data.
    case.put_raw(f"{rel_dir}/.seg-2.parquet.0123abcd.tmp", b"partial")
    case.put_raw(f"{rel_dir}/.hidden.parquet", b"not parquet at all")
    case.put_raw(f"{rel_dir}/notes.txt", b"not parquet")

    assert [i.base_name for i in lake.files("raw/alerts")] == ["seg-1.parquet"]
    assert lake.read_table("raw/alerts").num_rows == 2  # the junk is never opened


def test_unsafe_names_and_tables_are_refused(case: LakeCase) -> None:
    lake = case.lake
    directory = lake.partition_dir("raw/alerts", "acme", DAY)
    for name in ("../escape.parquet", ".hidden.parquet", "a/b.parquet", ""):
        with pytest.raises(ValueError):
            lake.write_parquet(directory, name, alert_rows(1))
    with pytest.raises(ValueError):
        lake.partition_dir("raw/nope", "acme", DAY)
    assert case.listing() == []


def test_probe_writes_one_small_marker(case: LakeCase) -> None:
    lake = case.lake
    lake.probe()
    lake.probe()  # overwritten, never deleted: still one object
    assert case.listing() == [("_aw_probe", 2)]
    assert lake.files("raw/alerts") == []
    assert_clean(case)


def test_probe_and_write_fail_with_lake_error_when_the_bucket_is_missing(
    moto: MotoServer,
) -> None:
    lake = open_lake(f"s3://missing-{uuid.uuid4().hex[:8]}/p", moto.endpoint_url, 5)
    with pytest.raises(LakeError):
        lake.probe()
    with pytest.raises(LakeError):
        lake.write_parquet(lake.partition_dir("raw/alerts", "acme", DAY), "x.parquet",
                           alert_rows(1))


def test_probe_fails_with_lake_error_on_an_unwritable_local_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the lake directory should be")
    lake = open_lake((blocker / "lake").as_uri())
    with pytest.raises(LakeError):
        lake.probe()


@pytest.mark.parametrize(
    "uri", ["http://example.com/lake", "gs://bucket/lake", "s3://", "s3:///prefix-only"]
)
def test_open_lake_rejects_bad_uris(uri: str) -> None:
    with pytest.raises(ValueError):
        open_lake(uri)


def test_open_lake_accepts_plain_paths_and_s3_prefixes(tmp_path: Path) -> None:
    local = open_lake(str(tmp_path / "x"))
    assert local.is_local and local.root == str(tmp_path / "x")
    assert open_lake((tmp_path / "y").as_uri()).root == str(tmp_path / "y")
    s3 = open_lake("s3://bucket/a/b/", "http://127.0.0.1:1", 1)
    assert not s3.is_local and s3.root == "bucket/a/b"
    assert open_lake("s3://bucket", "http://127.0.0.1:1", 1).root == "bucket"
