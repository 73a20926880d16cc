"""The engine against the reference model on random histories (hypothesis).

Histories mix tenants, keys, alerts, every event kind, late and skewed arrival, duplicates by
delivery id and by body, equal event times, arrival permutations, and settings that make caps,
thresholds, staleness and versions (R15) matter. `check` asserts the engine's funnels, every
event's explanation and every incident (merge records included) equal the model's.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.correlation.engine_adapter import check
from tests.correlation.reference import Event
from warehouse.correlation.timeline import SettingsTimeline, Version, to_us
from warehouse.correlation_settings import CorrelationSettings as CFG

SEC = timedelta(seconds=1)
T0 = datetime(2026, 11, 26, 10, tzinfo=UTC)
CFGS = [
    CFG(window="15m", cap="1h", stale_after="30m", lateness="1h", threshold=1),
    CFG(window="10m", cap="30m", stale_after="20m", lateness="1h", threshold=2),
    CFG(window="5m", cap="20m", stale_after="5m", lateness="2h", clock_skew="1m", threshold=1),
    CFG(window="15m", key=["asset"], cap="24h", stale_after="1h", threshold=3),
    CFG(window="10m", key=["asset", "label:env"], cap="45m", stale_after="10m", threshold=1,
        stale_after_by_source={"zabbix": "1h"}),
]


@st.composite
def histories(draw: st.DrawFn, max_events: int = 25) -> list[Event]:
    dense = draw(st.booleans())  # dense: one tenant, few keys, long incidents that hit caps
    n = draw(st.integers(1, max_events * (2 if dense else 1)))
    span = draw(st.sampled_from([30 * 60, 3 * 3600]))
    events = []
    for i in range(1, n + 1):
        offset = draw(st.integers(0, span // 30)) * 30  # whole half-minutes: equal times occur
        t = T0 + offset * SEC
        delay = draw(st.sampled_from([0, 0, 0, 0, 30, 600, 4000, 9000, -120, -400][
            :5 if dense else 10]))
        occurred = None if draw(st.integers(0, 9)) == 0 else t
        status = draw(st.sampled_from(["firing", "firing", "resolved", "point"]))
        delivery = draw(st.sampled_from([None, None, None, "d1", "d2", "d3"]))
        events.append(Event(
            tenant_id="t1" if dense else draw(st.sampled_from(["t1", "t1", "t1", "t2"])),
            event_id=f"e{i}", ingest_seq=i,
            source=draw(st.sampled_from(["nagios", "nagios", "zabbix"])),
            source_fingerprint=draw(st.sampled_from(["A", "A", "B", "C", ""])),
            asset="web01" if dense else draw(st.sampled_from(
                ["web01", "web01", "Web01 ", "db01", None, "  "])),
            signature=draw(st.sampled_from(["disk_full", "disk_full", "cpu"][:1 + (not dense)])),
            severity=draw(st.sampled_from(["info", "warning", "high", "critical"])),
            status=status, occurred_at=occurred, received_at=t + delay * SEC,
            labels={"env": draw(st.sampled_from(["prod", "dev"]))},
            delivery_id=delivery,
            body_sha256=draw(st.sampled_from(["", f"b{i}", f"b{i}", "same"])),
            duplicate=draw(st.integers(0, 19)) == 0,
        ))
    order = draw(st.permutations(range(1, n + 1)))
    return [replace(e, ingest_seq=s) for e, s in zip(events, order, strict=True)]


@st.composite
def timelines(draw: st.DrawFn) -> SettingsTimeline:
    first = draw(st.sampled_from(CFGS))
    if draw(st.booleans()):
        return SettingsTimeline.constant(first, "v1")
    second = draw(st.sampled_from(CFGS))
    switch = T0 + draw(st.integers(0, 120)) * 60 * SEC
    return SettingsTimeline({"t1": [Version("v1", to_us(T0 - timedelta(days=1)), first),
                                    Version("v2", to_us(switch), second)]})


PROPS = settings(max_examples=400, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPS
@given(events=histories(), timeline=timelines(), fixed_clock=st.booleans())
def test_engine_equals_reference(events: list[Event], timeline: SettingsTimeline,
                                 fixed_clock: bool) -> None:
    # R1-R15: the engine's whole answer is the model's, for any history and settings
    check(events, timeline, T0 + timedelta(hours=6) if fixed_clock else None)
