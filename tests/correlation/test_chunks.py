"""More events than a chunk: correlated a group of whole tenants at a time (R1), with exactly
the answer of one batch, order included."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.engine import correlate, correlate_groups
from warehouse.correlation.synthetic import history
from warehouse.correlation.timeline import SettingsTimeline


def test_tenant_chunks_give_the_one_batch_answer() -> None:
    table = history(12_000, days=4, tenants=7, seed=31)
    timeline = SettingsTimeline()
    whole = correlate(table, timeline)
    chunked = correlate(table, timeline, chunk_events=2_500)
    assert whole.merge_log.num_rows > 0  # the replay's records are put together too
    assert chunked.incidents.equals(whole.incidents)
    assert chunked.memberships.equals(whole.memberships)
    assert chunked.lifecycle.sort_by("incident_id").equals(whole.lifecycle.sort_by("incident_id"))
    assert chunked.merge_log.equals(whole.merge_log)
    assert chunked.funnel == whole.funnel
    assert (chunked.slow_rows, chunked.replayed_rows) == (whole.slow_rows, whole.replayed_rows)


def test_a_tenant_bigger_than_a_chunk_is_correlated_alone() -> None:
    table = history(6_000, days=2, tenants=3, seed=4)
    biggest = max(pc.value_counts(table.column("tenant_id")).to_pylist(),
                  key=lambda c: c["counts"])
    chunked = correlate(table, SettingsTimeline(), chunk_events=biggest["counts"] - 1)
    assert chunked.incidents.equals(correlate(table, SettingsTimeline()).incidents)


def test_groups_are_read_one_ahead_and_answer_for_their_tenants() -> None:
    table = history(12_000, days=4, tenants=7, seed=31)
    timeline = SettingsTimeline()
    whole = correlate(table, timeline)
    column = table.column("tenant_id")
    counts = {c["values"]: c["counts"] for c in pc.value_counts(column).to_pylist()}
    reads: list[list[str]] = []

    def read(tenants: list[str]) -> pa.Table:
        reads.append(tenants)
        return table.filter(pc.is_in(column, pa.array(tenants)))

    groups = correlate_groups(read, counts, timeline, chunk_events=2_500)
    answered: list[str] = []
    for n, (tenants, answer) in enumerate(groups):
        assert reads[n] == tenants
        assert len(reads) <= n + 2  # read at most one group ahead of the one answered
        assert sum(counts[t] for t in tenants) <= 2_500 or len(tenants) == 1
        mine = pa.array(tenants)
        assert answer.incidents.equals(
            whole.incidents.filter(pc.is_in(whole.incidents.column("tenant_id"), mine)))
        assert answer.memberships.equals(
            whole.memberships.filter(pc.is_in(whole.memberships.column("tenant_id"), mine)))
        assert answer.funnel == {t: whole.funnel[t] for t in tenants}
        answered += tenants
    assert answered == sorted(counts) and len(reads) > 2


def test_no_tenants_no_groups() -> None:
    assert list(correlate_groups(lambda _t: pa.table({}), {}, SettingsTimeline())) == []
