"""Staging lake files into the build file: one load for many receive days stages what loads
day by day stage, each file exactly once and all or nothing; DuckDB's own reader (local lake)
and pyarrow's (S3, or a path DuckDB would take for a glob) stage identical rows, including
files an older flusher wrote without a nullable column."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.servers import MotoServer
from warehouse import staging
from warehouse.correlation.synthetic import history
from warehouse.lake import Lake, open_lake
from warehouse.synthetic_lake import write_events

READERS = ["duckdb", "pyarrow"]


@pytest.fixture(params=READERS)
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with DuckDB reading the local files, then with the pyarrow (S3) reader."""
    if request.param == "pyarrow":
        monkeypatch.setattr(staging, "_duckdb_can_read", lambda lake, files: False)
    return str(request.param)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def _connect(tmp_path: Path, name: str = "build") -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(tmp_path / f"{name}.duckdb"))


def _staged(con: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
    """A staged table's rows without their load id, in a fixed order."""
    return con.sql(f"SELECT * EXCLUDE (load_id) FROM lake.{table} "
                   "ORDER BY tenant_id, date, ingest_seq, event_id").to_arrow_table()


def _files(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    """`lake.files` without load ids and times, paths without the lake root."""
    rows = con.execute("SELECT path, lake_table, tenant_id, date, size_bytes, row_count "
                       "FROM lake.files").fetchall()
    return sorted((staging.file_label(r[0]), *r[1:]) for r in rows)


def _drop_columns(lake: Lake, path: str, names: list[str]) -> None:
    """Rewrite a lake file as a flusher from before columns `names` existed would have."""
    table = pq.read_table(path, filesystem=lake.fs)
    lake.write_parquet(posixpath.dirname(path), posixpath.basename(path), table.drop(names))


def test_one_load_of_many_days_stages_what_day_by_day_loads_stage(lake, tmp_path,
                                                                   reader) -> None:
    write_events(lake, history(3_000, days=3, tenants=3, seed=11))
    files = staging.lake_files(lake)
    days = sorted({f.day for f in files})
    by_day = _connect(tmp_path, "by_day")
    results = [staging.load_day(by_day, lake, day, files) for day in days]
    at_once = _connect(tmp_path, "at_once")
    result = staging.load_days(at_once, lake, days, files)

    assert len(days) >= 3 and [r.load_id for r in results] == list(range(1, len(days) + 1))
    assert result.load_id == 1 and result.days == days and result.day == days[0]
    assert at_once.execute("SELECT DISTINCT load_id FROM lake.raw_alerts "
                           "UNION SELECT DISTINCT load_id FROM lake.raw_duplicates "
                           "UNION SELECT DISTINCT load_id FROM lake.files").fetchall() == [(1,)]
    assert result.files == len(files) == sum(r.files for r in results)
    assert sum(result.rows.values()) == 3_000
    for table in result.rows:
        assert result.rows[table] == sum(r.rows.get(table, 0) for r in results)
    assert result.tenants == sorted({t for r in results for t in r.tenants})
    assert result.received_min == min(r.received_min for r in results if r.received_min)
    assert result.received_max == max(r.received_max for r in results if r.received_max)
    for table in ("raw_alerts", "raw_duplicates"):
        assert _staged(at_once, table).equals(_staged(by_day, table))
    assert _files(at_once) == _files(by_day)
    assert sum(r[-1] for r in _files(at_once)) == 3_000


def test_loading_again_stages_nothing_and_new_files_get_the_next_load_id(lake, tmp_path,
                                                                          reader) -> None:
    table = history(2_000, days=2, tenants=2, seed=3).sort_by("ingest_seq")
    write_events(lake, table.slice(0, 1_000), prefix="first")
    con = _connect(tmp_path)
    days = sorted({f.day for f in staging.lake_files(lake)})
    first = staging.load_days(con, lake, days)
    again = staging.load_days(con, lake, days)
    assert first.load_id == 1 and sum(first.rows.values()) == 1_000
    assert again.load_id is None and again.files == 0 and again.rows == {}
    assert staging.load_day(con, lake, days[0]).files == 0

    write_events(lake, table.slice(1_000), prefix="late")  # a late flush: new files only
    files = staging.lake_files(lake)
    later = staging.load_days(con, lake, sorted({f.day for f in files}), files)
    assert later.load_id == 2 and sum(later.rows.values()) == 1_000
    assert later.files == sum("/late-" in f.path for f in files) > 0
    assert staging.pending(con, files) == []
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM ("
                       "SELECT event_id FROM lake.raw_alerts UNION ALL "
                       "SELECT event_id FROM lake.raw_duplicates)").fetchall() == [(2_000, 2_000)]


def test_a_lake_moved_elsewhere_is_not_staged_again(lake, tmp_path) -> None:
    # A data directory moved to a bigger disk (or a lake copied to another prefix): the
    # files staged from the old place are the same files, only new ones are staged
    table = history(1_000, days=2, tenants=2, seed=5).sort_by("ingest_seq")
    write_events(lake, table.slice(0, 600), prefix="first")
    con = _connect(tmp_path)
    days = sorted({f.day for f in staging.lake_files(lake)})
    assert sum(staging.load_days(con, lake, days).rows.values()) == 600
    moved = open_lake(str(tmp_path / "moved-lake"))
    for f in staging.lake_files(lake):
        relative = posixpath.relpath(f.path, lake.root)
        target = posixpath.join(moved.root, relative)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(Path(f.path).read_bytes())
    assert staging.pending(con, staging.lake_files(moved)) == []
    write_events(moved, table.slice(600), prefix="later")
    files = staging.lake_files(moved)
    later = staging.load_days(con, moved, sorted({f.day for f in files}), files)
    assert sum(later.rows.values()) == 400 and later.files == sum("/later-" in f.path
                                                                  for f in files)
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM ("
                       "SELECT event_id FROM lake.raw_alerts UNION ALL "
                       "SELECT event_id FROM lake.raw_duplicates)").fetchall() == [(1_000, 1_000)]


def test_only_the_days_asked_for_are_staged(lake, tmp_path, reader) -> None:
    write_events(lake, history(1_500, days=3, tenants=2, seed=5))
    files = staging.lake_files(lake)
    days = sorted({f.day for f in files})
    con = _connect(tmp_path)
    result = staging.load_days(con, lake, [days[2], days[0]], files)
    assert result.days == [days[0], days[2]]
    assert {f.day for f in staging.pending(con, files)} == {days[1]}
    assert {r[0] for r in con.execute("SELECT DISTINCT date FROM lake.raw_alerts").fetchall()
            } == {days[0], days[2]}
    with pytest.raises(ValueError):
        staging.load_days(con, lake, [], files)


def test_a_file_without_a_nullable_column_stages_it_as_nulls(lake, tmp_path, reader) -> None:
    write_events(lake, history(1_200, days=2, tenants=2, seed=9))
    files = [f for f in staging.lake_files(lake) if f.lake_table == "raw/alerts"]
    old = files[0]
    _drop_columns(lake, old.path, ["labels", "truncated_alerts", "message"])
    for f in files:  # no file at all has `message`: the column is nulls everywhere
        if f is not old:
            _drop_columns(lake, f.path, ["message"])
    expected = {f.path: pq.read_table(f.path) for f in files}

    con = _connect(tmp_path)
    staging.load_days(con, lake, sorted({f.day for f in files}))

    assert [f.path for f in files if (f.tenant_id, f.day) == (old.tenant_id, old.day)] == [
        old.path]  # the old file's rows are its partition's
    staged = con.execute(
        "SELECT count(*), count(labels), count(truncated_alerts), count(message) "
        "FROM lake.raw_alerts WHERE tenant_id = ? AND date = ?", [old.tenant_id, old.day])
    assert staged.fetchall() == [(expected[old.path].num_rows, 0, 0, 0)]
    assert expected[old.path].num_rows > 0
    others = con.execute("SELECT count(labels) FROM lake.raw_alerts "
                         "WHERE NOT (tenant_id = ? AND date = ?)", [old.tenant_id, old.day])
    assert others.fetchall()[0][0] > 0  # the other files' labels are there
    assert con.execute("SELECT count(message) FROM lake.raw_alerts").fetchall() == [(0,)]


def test_maps_and_timestamps_survive_exactly(lake, tmp_path, reader) -> None:
    events = history(800, days=1, tenants=2, seed=13)
    write_events(lake, events)
    con = _connect(tmp_path)
    con.execute("SET TimeZone = 'America/New_York'")  # must not shift anything
    staging.load_days(con, lake, sorted({f.day for f in staging.lake_files(lake)}))
    got = con.sql("SELECT event_id, labels, occurred_at, received_at FROM lake.raw_alerts "
                  "ORDER BY event_id").to_arrow_table()
    want = pa.concat_tables(
        pq.read_table(f.path, columns=["event_id", "labels", "occurred_at", "received_at"])
        for f in staging.lake_files(lake) if f.lake_table == "raw/alerts").sort_by("event_id")
    assert got.column("event_id").equals(want.column("event_id"))
    assert got.column("labels").to_pylist() == want.column("labels").to_pylist()
    assert any(got.column("labels").to_pylist())
    for name in ("occurred_at", "received_at"):
        assert got.schema.field(name).type == pa.timestamp("us", tz="America/New_York")
        assert got.column(name).cast(pa.int64()).equals(want.column(name).cast(pa.int64()))


def test_a_naive_timestamp_is_read_as_utc_by_both_readers(lake, tmp_path, reader) -> None:
    write_events(lake, history(300, days=1, tenants=1, seed=17))
    f = next(f for f in staging.lake_files(lake) if f.lake_table == "raw/alerts")
    table = pq.read_table(f.path)
    received = table.column("received_at")
    naive = table.set_column(table.schema.get_field_index("received_at"), "received_at",
                             received.cast(pa.timestamp("us")))
    lake.write_parquet(posixpath.dirname(f.path), posixpath.basename(f.path), naive)
    con = _connect(tmp_path)
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    staging.load_day(con, lake, f.day)
    got = con.sql("SELECT received_at FROM lake.raw_alerts ORDER BY ingest_seq").to_arrow_table()
    assert got.column(0).cast(pa.int64()).equals(
        table.sort_by("ingest_seq").column("received_at").cast(pa.int64()))


def test_a_load_is_all_or_nothing(lake, tmp_path, reader) -> None:
    write_events(lake, history(1_000, days=2, tenants=2, seed=19))
    files = staging.lake_files(lake)
    days = sorted({f.day for f in files})
    broken = posixpath.join(lake.partition_dir("raw/alerts", files[-1].tenant_id, days[-1]),
                            "broken.parquet")
    with lake.fs.open_output_stream(broken) as out:
        out.write(b"not a parquet file")
    con = _connect(tmp_path)
    with pytest.raises((duckdb.Error, pa.ArrowException)):
        staging.load_days(con, lake, days)
    assert con.execute("SELECT (SELECT count(*) FROM lake.files), "
                       "(SELECT count(*) FROM lake.raw_alerts), "
                       "(SELECT count(*) FROM lake.raw_duplicates)").fetchall() == [(0, 0, 0)]
    lake.fs.delete_file(broken)
    result = staging.load_days(con, lake, days)
    assert result.load_id == 1 and sum(result.rows.values()) == 1_000


def test_a_path_duckdb_would_expand_as_a_glob_is_read_through_pyarrow(tmp_path) -> None:
    plain = open_lake(str(tmp_path / "plain"))
    globbed = open_lake(str(tmp_path / "lake[1]"))
    events = history(600, days=2, tenants=2, seed=23)
    for lake in (plain, globbed):
        write_events(lake, events)
    assert staging._duckdb_can_read(plain, staging.lake_files(plain))
    assert not staging._duckdb_can_read(globbed, staging.lake_files(globbed))
    cons = {}
    for name, lake in (("plain", plain), ("globbed", globbed)):
        cons[name] = _connect(tmp_path, name)
        staging.load_days(cons[name], lake, sorted({f.day for f in staging.lake_files(lake)}))
    for table in ("raw_alerts", "raw_duplicates"):
        assert _staged(cons["globbed"], table).equals(_staged(cons["plain"], table))
    assert _files(cons["globbed"]) == _files(cons["plain"])


@pytest.mark.e2e
def test_an_s3_lake_stages_what_a_local_lake_stages(lake, moto, tmp_path) -> None:
    events = history(2_000, days=3, tenants=3, seed=29)
    write_events(lake, events)
    bucket = f"staging-{uuid.uuid4().hex[:10]}"
    moto.create_bucket(bucket)
    s3 = open_lake(f"s3://{bucket}/lake", moto.endpoint_url, timeout_seconds=5)
    write_events(s3, events)
    _drop_columns(lake, staging.lake_files(lake)[0].path, ["labels"])
    _drop_columns(s3, staging.lake_files(s3)[0].path, ["labels"])

    local_con, s3_con = _connect(tmp_path, "local"), _connect(tmp_path, "s3")
    days = sorted({f.day for f in staging.lake_files(lake)})
    local = staging.load_days(local_con, lake, days)
    remote = staging.load_days(s3_con, s3, days)
    assert not s3.is_local and not staging._duckdb_can_read(s3, staging.lake_files(s3))
    assert (remote.files, remote.rows, remote.tenants, remote.received_min,
            remote.received_max) == (local.files, local.rows, local.tenants,
                                     local.received_min, local.received_max)
    for table in ("raw_alerts", "raw_duplicates"):
        assert _staged(s3_con, table).equals(_staged(local_con, table))
    assert _files(s3_con) == _files(local_con)
    assert staging.load_days(s3_con, s3, days).files == 0


def test_load_day_is_a_load_of_one_day(lake, tmp_path) -> None:
    write_events(lake, history(400, days=2, tenants=1, seed=31))
    day: date = min(f.day for f in staging.lake_files(lake))
    result = staging.load_day(_connect(tmp_path), lake, day)
    assert result.day == day and result.days == [day] and result.load_id == 1
