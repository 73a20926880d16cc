"""Correlation settings: durations, defaults, validation messages and the JSON form."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warehouse.correlation_settings import CorrelationSettings, format_duration, parse_duration

MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", 15 * MIN),
        ("90s", timedelta(seconds=90)),
        ("24h", DAY),
        ("7d", 7 * DAY),
        ("1h30m", HOUR + 30 * MIN),
        ("1d2h3m4s", DAY + 2 * HOUR + 3 * MIN + timedelta(seconds=4)),
        ("0s", timedelta(0)),  # clock_skew accepts zero
        ("120m", 2 * HOUR),  # no carrying rule: any count per unit
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty
        "15",  # no unit
        "15 m",  # blank inside
        " 15m",  # leading blank
        "m",  # no number
        "1.5h",  # fractions
        "-5m",  # negative
        "15M",  # units are lower case
        "30m1h",  # largest unit first
        "1h1h",  # a unit twice
        "1w",  # no weeks
        "PT15M",  # ISO 8601 is not accepted
        "15min",
        "99999999999999d",  # beyond any sensible range (and timedelta's)
    ],
)
def test_parse_duration_rejects_and_names_the_value(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (15 * MIN, "15m"),
        (HOUR + 30 * MIN, "1h30m"),
        (DAY, "24h"),  # up to a day, hours are the largest unit
        (DAY + HOUR, "1d1h"),
        (30 * DAY, "30d"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize("value", [timedelta(seconds=-1), timedelta(milliseconds=1500)])
def test_format_duration_refuses_negative_or_fractional(value: timedelta) -> None:
    with pytest.raises(ValueError):
        format_duration(value)


@given(st.integers(min_value=0, max_value=3650 * 86400))
def test_format_then_parse_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_defaults_follow_semantics() -> None:
    settings = CorrelationSettings()
    assert settings.window == 15 * MIN  # R5
    assert settings.key == ("asset", "signature")  # R4
    assert settings.cap == DAY  # R6
    assert settings.threshold == 1  # R13
    assert settings.lateness == DAY  # R9
    assert settings.stale_after == DAY  # R8
    assert dict(settings.stale_after_by_source) == {}
    assert settings.clock_skew == 5 * MIN  # R9


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": "30s"}, "window must be between 1m and 24h, got 30s"),
        ({"window": "25h", "cap": "2d"}, "window must be between 1m and 24h, got 1d1h"),
        ({"window": "1h", "cap": "30m"}, "cap must be at least the window (1h), got 30m"),
        ({"cap": "31d"}, "cap must be between 1m and 30d, got 31d"),
        ({"threshold": 0}, "threshold must be between 1 and 1000, got 0"),
        ({"threshold": 1001}, "threshold must be between 1 and 1000, got 1001"),
        ({"threshold": True}, "threshold must be an integer, got True"),
        ({"threshold": "3"}, "threshold must be an integer, got '3'"),
        ({"lateness": "0s"}, "lateness must be between 1m and 30d, got 0s"),
        ({"stale_after": "4m"}, "stale_after must be between 5m and 30d, got 4m"),
        ({"clock_skew": "25h"}, "clock_skew must be between 0s and 24h, got 1d1h"),
        ({"window": "15"}, "window: invalid duration '15'"),
        ({"window": 15}, "window must be a duration such as '15m', got int"),
        ({"key": []}, "key must name at least one field"),
        ({"key": "asset"}, "key must be a list of field names"),
        ({"key": ["asset", "asset"]}, "key fields must not repeat: asset"),
        ({"key": ["host"]}, "key field 'host' is not one of asset, signature, source"),
        ({"key": ["label:1env"]}, "key field 'label:1env' is not one of"),
        ({"key": ["label:"]}, "key field 'label:' is not one of"),
        ({"key": ["label:" + "a" * 129]}, "is not one of"),
        ({"stale_after_by_source": {"am": "1m"}}, "stale_after_by_source[am] must be between 5m"),
        ({"stale_after_by_source": {" am": "1h"}}, "' am' is not a valid source name"),
        ({"stale_after_by_source": "am=1h"}, "stale_after_by_source must map source names"),
        ({"windw": "10m"}, "unknown correlation setting(s): windw"),
    ],
)
def test_invalid_changes_give_precise_messages(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        CorrelationSettings().with_changes(changes)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "key",
    [
        ["asset"],
        ["asset", "signature", "source"],
        ["asset", "label:env"],
        ["label:_k8s.namespace-1"],
        ["label:" + "a" * 128],  # the longest label name
    ],
)
def test_valid_keys(key: list[str]) -> None:
    assert CorrelationSettings().with_changes({"key": key}).key == tuple(key)


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"window": "1m"}, "window", MIN),  # lower bound is inclusive
        ({"window": "24h"}, "window", DAY),  # upper bound is inclusive
        ({"window": "24h", "cap": "24h"}, "cap", DAY),  # cap may equal the window
        ({"clock_skew": "0s"}, "clock_skew", timedelta(0)),
        ({"threshold": 1000}, "threshold", 1000),
        ({"window": timedelta(minutes=7)}, "window", 7 * MIN),  # Python values work too
    ],
)
def test_boundaries_accepted(changes: dict[str, object], field: str, expected: object) -> None:
    assert getattr(CorrelationSettings().with_changes(changes), field) == expected


def test_json_round_trip_writes_durations_as_strings() -> None:
    settings = CorrelationSettings().with_changes(
        {
            "window": "10m",
            "key": ["asset", "label:env"],
            "threshold": 3,
            "stale_after_by_source": {"alertmanager": "1h"},
        }
    )
    data = json.loads(settings.to_json())
    assert data == {
        "cap": "24h",
        "clock_skew": "5m",
        "key": ["asset", "label:env"],
        "lateness": "24h",
        "stale_after": "24h",
        "stale_after_by_source": {"alertmanager": "1h"},
        "threshold": 3,
        "window": "10m",
    }
    assert CorrelationSettings.from_json(settings.to_json()) == settings


def test_from_json_fills_missing_fields_and_refuses_unknown_ones() -> None:
    assert CorrelationSettings.from_json('{"window": "5m"}').window == 5 * MIN
    assert CorrelationSettings.from_json('{"window": "5m"}').cap == DAY
    with pytest.raises(ValueError, match="unknown correlation setting"):
        CorrelationSettings.from_json('{"window": "5m", "colour": "red"}')
    with pytest.raises(ValueError, match="must be an object"):
        CorrelationSettings.from_json('["window"]')


def test_source_overrides_merge_and_none_removes() -> None:
    first = CorrelationSettings().with_changes(
        {"stale_after_by_source": {"alertmanager": "1h", "zabbix": "2h"}}
    )
    second = first.with_changes({"stale_after_by_source": {"alertmanager": None, "grafana": "3h"}})
    assert dict(second.stale_after_by_source) == {"zabbix": 2 * HOUR, "grafana": 3 * HOUR}
    assert second.stale_after_for("grafana") == 3 * HOUR
    assert second.stale_after_for("datadog") == DAY  # no override: the tenant default


def test_settings_are_immutable_and_hashable() -> None:
    settings = CorrelationSettings().with_changes({"stale_after_by_source": {"am": "1h"}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.window = MIN  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.stale_after_by_source["am"] = MIN  # type: ignore[index]
    assert hash(settings) == hash(CorrelationSettings.from_json(settings.to_json()))
    assert settings != CorrelationSettings()
