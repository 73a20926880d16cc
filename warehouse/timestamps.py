"""Event times: RFC 3339 in, microseconds since the Unix epoch (UTC) out.

Digits beyond the microsecond are truncated, never rounded (SOURCES.md). Times outside
`[EARLIEST, received + MAX_FUTURE]` are absurd (Go's zero time, year 2999, year 275760) and
refused; a modest future skew is accepted and left to the correlation engine (R9 clamps it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # RFC 3339 digits are ASCII; without it `\d` also matches e.g. "２０２６"
)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)

# 2000-01-01T00:00:00Z: nothing a monitoring tool reports happened before it.
EARLIEST_US = 946_684_800_000_000
MAX_FUTURE_US = 366 * 24 * 3600 * 1_000_000


class TimestampError(ValueError):
    """A timestamp that is not RFC 3339 or not plausible."""


def parse_rfc3339_us(text: str) -> int:
    """`2026-11-26T10:00:00.123456789+01:00` → microseconds since the epoch, UTC."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise TimestampError(f"{text[:40]!r} is not an RFC 3339 timestamp with an offset")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    try:
        naive = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro
        )
    except ValueError as exc:
        raise TimestampError(f"{text[:40]!r} is not a valid date and time: {exc}") from None
    micros = (naive - _EPOCH_NAIVE) // _US
    if not zulu:
        if int(off_h) > 23 or int(off_m) > 59:
            raise TimestampError(f"{text[:40]!r} has an invalid UTC offset")
        offset = (int(off_h) * 60 + int(off_m)) * 60_000_000
        micros = micros - offset if sign == "+" else micros + offset
    return micros


def check_plausible(micros: int, received_us: int, what: str = "occurred_at") -> None:
    """Refuse event times that cannot be real (see the module docstring)."""
    if micros < EARLIEST_US:
        raise TimestampError(f"{what} {format_us(micros)} is before 2000-01-01")
    if micros > received_us + MAX_FUTURE_US:
        raise TimestampError(f"{what} {format_us(micros)} is more than a year in the future")


def format_us(micros: int) -> str:
    try:
        return (_EPOCH_NAIVE + micros * _US).isoformat() + "Z"
    except OverflowError:
        return "<out of range>"


def now_us() -> int:
    return (datetime.now(UTC).replace(tzinfo=None) - _EPOCH_NAIVE) // _US


def us_to_datetime(micros: int) -> datetime:
    return (_EPOCH_NAIVE + micros * _US).replace(tzinfo=UTC)
