"""The synthetic alert history (warehouse.correlation.synthetic): deterministic, in the engine's
schema, shaped as its docstring says, split into ordered daily batches, and fit for the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from warehouse.correlation.engine import FUNNEL_FIELDS, correlate
from warehouse.correlation.events import EVENTS
from warehouse.correlation.synthetic import DEFAULT_START, day_batches, describe, history
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings

N = 50_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return history(N)


@pytest.fixture(scope="module")
def shape(table: pa.Table) -> dict[str, int | float]:
    return describe(table)


def us(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.int64()).to_numpy()


def test_same_seed_gives_the_same_table_and_another_seed_another(table: pa.Table) -> None:
    assert history(N).equals(table)
    other = history(N, seed=8)
    assert other.num_rows == N
    assert not other.column("event_id").equals(table.column("event_id"))


def test_schema_is_the_engines_and_row_count_exact(table: pa.Table) -> None:
    assert table.schema.equals(EVENTS)
    assert table.num_rows == N
    assert history(1234, tenants=5, days=3).num_rows == 1234  # small and odd sizes too


def test_event_ids_and_ingest_seq_are_unique(table: pa.Table) -> None:
    assert pc.count_distinct(table.column("event_id")).as_py() == N
    assert np.array_equal(np.sort(table.column("ingest_seq").to_numpy()), np.arange(1, N + 1))


def test_ingest_seq_follows_receive_time_inside_the_history(table: pa.Table) -> None:
    ordered = table.take(pc.sort_indices(table, [("ingest_seq", "ascending")]))
    received = us(ordered.column("received_at"))
    assert np.all(np.diff(received) >= 0)
    start = int(DEFAULT_START.timestamp()) * 1_000_000
    assert received.min() >= start
    assert received.max() < start + 30 * 86_400 * 1_000_000


# (figure, lowest, highest) as a share of all events: the docstring's proportions, with the
# slack a 50k-event sample needs.
PROPORTIONS = [
    ("duplicates", 0.065, 0.075),  # 7 % of all rows
    ("duplicates_delivery_id", 0.02, 0.05),  # Datadog and CloudWatch retries
    ("duplicates_body", 0.01, 0.04),  # the other sources, no delivery id
    ("duplicates_flagged", 0.01, 0.025),  # a quarter of the duplicates
    ("late", 0.01, 0.03),  # 2 % arrive minutes to hours late
    ("too_late", 0.0005, 0.003),  # 7 % of the late ones: beyond 24 h
    ("clock_skew", 0.001, 0.006),  # 0.3 %: clock ahead by more than 5 min
    ("no_occurred_at", 0.002, 0.01),  # 0.5 %
    ("missing_asset", 0.005, 0.08),  # ~2 % of the checks, weighted by their volume
    ("point", 0.12, 0.30),  # ~20 % of the non-duplicate events
    ("resolved", 0.10, 0.40),
    ("hot_keys_share", 0.10, 0.60),  # top 1 % of keys carry much of the volume
    ("biggest_tenant_share", 0.05, 0.40),
]


@pytest.mark.parametrize(("figure", "low", "high"), PROPORTIONS)
def test_proportions_are_as_documented(shape: dict[str, int | float], figure: str, low: float,
                                       high: float) -> None:
    value = shape[figure] if isinstance(shape[figure], float) else shape[figure] / N
    assert low <= value <= high, (figure, value)


def test_who_and_what(shape: dict[str, int | float]) -> None:
    assert shape["tenants"] == 50
    assert 250 <= shape["assets"] <= 300  # max(300, n / 2000); a quiet asset may not show
    assert shape["assets"] < shape["keys"] < 6 * shape["assets"]  # a few checks per asset
    assert shape["days"] == 30


def test_every_event_of_an_alert_has_its_asset_signature_and_labels(table: pa.Table) -> None:
    stateful = table.filter(pc.not_equal(table.column("status"), "point"))
    frame = stateful.select(["tenant_id", "source", "source_fingerprint", "asset",
                             "signature"]).to_pandas()
    frame["labels"] = [repr(x) for x in stateful.column("labels").to_pylist()]
    frame["asset"] = frame["asset"].fillna("<null>")
    per_alert = frame.groupby(["tenant_id", "source", "source_fingerprint"])
    assert per_alert[["asset", "signature", "labels"]].nunique().max().max() == 1


def test_day_batches_partition_the_history_in_arrival_order(table: pa.Table) -> None:
    batches = day_batches(table)
    assert len(batches) == 30
    assert sum(b.num_rows for b in batches) == N
    joined = pa.concat_tables(batches)
    assert np.all(np.diff(joined.column("ingest_seq").to_numpy()) > 0)
    assert pc.count_distinct(joined.column("event_id")).as_py() == N
    for batch in batches:
        days = np.unique(us(batch.column("received_at")) // (86_400 * 1_000_000))
        assert len(days) == 1


def test_day_batches_refuse_a_table_whose_seq_does_not_follow_arrival() -> None:
    small = history(200, tenants=3, days=2)
    received = small.column("received_at")
    shuffled = small.set_column(small.schema.get_field_index("received_at"), "received_at",
                                received.take(pa.array(np.arange(199, -1, -1))))
    with pytest.raises(ValueError, match="ingest_seq does not follow received_at"):
        day_batches(shuffled)


def test_history_starts_where_asked() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    small = history(500, tenants=4, days=2, start=start)
    first = pc.min(small.column("received_at")).as_py()
    assert start <= first < start + timedelta(days=2)


def test_engine_runs_and_its_funnel_adds_up() -> None:
    events = history(20_000, seed=3)
    expected = describe(events)
    result = correlate(events, SettingsTimeline.constant(CorrelationSettings()))
    total = {name: sum(f[name] for f in result.funnel.values()) for name in FUNNEL_FIELDS}
    assert len(result.funnel) == 50
    assert total["events_accepted"] == events.num_rows == result.memberships.num_rows
    # R2 and R9 as the generator made them: every planted fault is found, nothing more.
    assert total["duplicates"] == expected["duplicates"]
    assert total["too_late"] == expected["too_late"]
    assert total["clock_skew"] == expected["clock_skew"]
    assert 0 < total["incidents"] <= total["alerts"]
    assert total["alerts"] <= total["events_accepted"] - total["duplicates"] - total["too_late"]
    live = result.incidents.filter(pc.is_null(result.incidents.column("merged_into")))
    assert pc.sum(live.column("visible")).as_py() == total["incidents"]
    assert result.slow_rows >= 0 and result.replayed_rows >= 0
