"""`bench/correlate`'s engine measurement covers every event and stores every answer: its
history is one file per tenant, and the answers it writes group by group are the engine's
whole answer."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from bench.correlate import AnswerFiles, measure_engine, measure_floor, write_by_tenant
from warehouse.correlation.engine import FUNNEL_FIELDS, correlate, correlate_groups
from warehouse.correlation.synthetic import history
from warehouse.correlation.timeline import SettingsTimeline
from warehouse.correlation_settings import CorrelationSettings


def test_the_engine_measurement_correlates_every_tenant_file(tmp_path: Path) -> None:
    table = history(6_000, days=3, tenants=5, seed=11)
    write_by_tenant(table, tmp_path / "history")
    files = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert len(files) == 5 and files[0].endswith(".parquet")
    whole = correlate(table, SettingsTimeline.constant(CorrelationSettings()))
    measured = measure_engine(tmp_path / "history")
    assert measured["funnel"] == {
        name: sum(f[name] for f in whole.funnel.values()) for name in FUNNEL_FIELDS}
    assert measured["incident_rows"] == whole.incidents.num_rows
    assert measured["answer_mb"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["history"]  # the answers are removed
    assert measure_floor(tmp_path / "history")["rows"] == table.num_rows


def test_answer_files_hold_the_whole_answer(tmp_path: Path) -> None:
    table = history(6_000, days=3, tenants=5, seed=11)
    timeline = SettingsTimeline()
    whole = correlate(table, timeline)
    per_tenant = table.group_by("tenant_id").aggregate([("event_id", "count")]).to_pydict()
    counts = dict(zip(per_tenant["tenant_id"], per_tenant["event_id_count"], strict=True))
    with AnswerFiles(tmp_path / "answers") as answers:
        for _tenants, answer in correlate_groups(
                lambda ts: table.filter(pq.filters_to_expression([("tenant_id", "in", ts)])),
                counts, timeline, chunk_events=1_500):
            answers.write(answer)
    memberships = pq.read_table(tmp_path / "answers" / "memberships.parquet")
    assert memberships.sort_by("event_id").equals(whole.memberships.sort_by("event_id"))
    incidents = pq.read_table(tmp_path / "answers" / "incidents.parquet")
    assert incidents.sort_by("incident_id").equals(whole.incidents.sort_by("incident_id"))
    merge_log = pq.read_table(tmp_path / "answers" / "merge_log.parquet")
    assert whole.merge_log.num_rows > 0
    assert merge_log.sort_by("arrival_seq").equals(whole.merge_log)
    lifecycle = pq.read_table(tmp_path / "answers" / "lifecycle.parquet")
    assert lifecycle.sort_by("incident_id").equals(whole.lifecycle.sort_by("incident_id"))
