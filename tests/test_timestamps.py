"""RFC 3339 event times → microseconds since the epoch (UTC), and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from warehouse.timestamps import (
    EARLIEST_US,
    MAX_FUTURE_US,
    TimestampError,
    check_plausible,
    format_us,
    parse_rfc3339_us,
    us_to_datetime,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(*args: int) -> int:
    """Microseconds of a UTC wall-clock time, computed independently of the parser."""
    return (datetime(*args, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)  # type: ignore[misc]


T0 = us(2026, 11, 26, 10, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Zulu, the common case.
        ("2026-11-26T10:00:00Z", T0),
        # Positive offset: local 11:00 at +01:00 is 10:00 UTC.
        ("2026-11-26T11:00:00+01:00", T0),
        # Negative half-hour offset: local 04:30 at -05:30 is 10:00 UTC.
        ("2026-11-26T04:30:00-05:30", T0),
        # -00:00 (offset unknown, RFC 3339 §4.3) is still UTC.
        ("2026-11-26T10:00:00-00:00", T0),
        # The offset moves the instant across midnight into the previous day.
        ("2026-11-26T00:30:00+01:00", us(2026, 11, 25, 23, 30, 0)),
        # Lowercase t and z are allowed by RFC 3339 §5.6.
        ("2026-11-26t10:00:00z", T0),
        # A space for the T: RFC 3339 §5.6 NOTE lets applications use one for readability.
        ("2026-11-26 10:00:00Z", T0),
        ("2026-11-26t11:00:00+01:00", T0),
        # Nine digits (Go's nanoseconds): truncated to the microsecond; rounding would give …457.
        ("2026-11-26T10:00:00.123456789Z", T0 + 123_456),
        # Truncation, never a carry into the next second.
        ("2026-11-26T10:00:00.999999999Z", T0 + 999_999),
        # Fewer digits are a fraction, not a count: .5 is half a second.
        ("2026-11-26T10:00:00.5Z", T0 + 500_000),
        ("2026-11-26T10:00:00.000001Z", T0 + 1),
        # Fraction together with an offset.
        ("2026-11-26T11:00:00.250+01:00", T0 + 250_000),
        # A leap day.
        ("2028-02-29T12:00:00Z", us(2028, 2, 29, 12, 0, 0)),
        # The earliest plausible instant.
        ("2000-01-01T00:00:00Z", EARLIEST_US),
    ],
)
def test_parse_rfc3339_to_micros(text: str, expected: int) -> None:
    assert parse_rfc3339_us(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-26T10:00:00",  # no offset: a local time of unknown zone
        "2026-02-30T10:00:00Z",  # February 30 does not exist
        "2026-02-29T10:00:00Z",  # 2026 is not a leap year
        "2026-13-01T10:00:00Z",  # month 13
        "2026-11-26T24:00:00Z",  # hour 24
        "2026-11-26T10:60:00Z",  # minute 60
        "2026-11-26T10:00:60Z",  # leap seconds are not representable
        "2026-11-26T10:00:00+24:00",  # offset hour 24
        "2026-11-26T10:00:00+01:60",  # offset minute 60
        "2026-11-26T10:00:00+0100",  # offset without a colon
        "2026-11-26T10:00:00.1234567890Z",  # ten fractional digits
        "2026-11-26T10:00:00.Z",  # a dot without digits
        "0000-01-01T00:00:00Z",  # year 0 does not exist
        "26-11-26T10:00:00Z",  # two-digit year
        "2026-11-26T10:00:00Z ",  # trailing space
        "",  # empty
        "\u0662\u0660\u0662\u0666-11-26T10:00:00Z",  # Arabic-Indic digits are not ASCII digits
        "\uff12\uff10\uff12\uff16-11-26T10:00:00Z",  # fullwidth digits neither
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_rfc3339_us(text)


RECEIVED = T0


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-11-26T10:00:00Z", True),  # now
        ("2000-01-01T00:00:00Z", True),  # the earliest accepted instant
        ("1999-12-31T23:59:59.999999Z", False),  # one microsecond before 2000
        ("0001-01-01T00:00:00Z", False),  # Go's zero time
        ("1970-01-01T00:00:00Z", False),  # a zero unix timestamp
        ("2027-11-27T10:00:00Z", True),  # within a year (366 days) of the receive time
        ("2999-01-01T00:00:00Z", False),  # year 2999: a placeholder, not a time
    ],
)
def test_plausibility(text: str, ok: bool) -> None:
    micros = parse_rfc3339_us(text)
    if ok:
        check_plausible(micros, RECEIVED)
    else:
        with pytest.raises(TimestampError):
            check_plausible(micros, RECEIVED)


def test_future_bound_is_inclusive() -> None:
    check_plausible(RECEIVED + MAX_FUTURE_US, RECEIVED)
    with pytest.raises(TimestampError, match="future"):
        check_plausible(RECEIVED + MAX_FUTURE_US + 1, RECEIVED)


@pytest.mark.parametrize("micros", [EARLIEST_US, T0, T0 + 123_456, us(2028, 2, 29, 23, 59, 59)])
def test_micros_round_trip_through_datetime(micros: int) -> None:
    dt = us_to_datetime(micros)
    assert dt.tzinfo is UTC
    assert (dt - _EPOCH) // timedelta(microseconds=1) == micros
    assert parse_rfc3339_us(format_us(micros)) == micros
