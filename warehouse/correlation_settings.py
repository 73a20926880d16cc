"""A tenant's correlation settings (SEMANTICS.md R4-R15): one immutable, validated value.

The registry stores each version as JSON (`to_json`) with durations written the way people
type them ("15m", "1h30m"), so a stored version reads like the command that made it. Every
version is a full snapshot: fields absent from stored JSON take today's defaults, unknown
fields are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from types import MappingProxyType

_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_LABEL_RE = re.compile(r"label:[A-Za-z_][A-Za-z0-9_.-]{0,127}")
# Per-source staleness overrides match an event's `source` exactly; like the canonical
# alert's `source` it is free text of 1-128 characters, here without control characters or
# surrounding blanks so that a typo cannot hide in whitespace.
_SOURCE_RE = re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,126}[^\x00-\x20\x7f])?")
PLAIN_KEY_FIELDS = frozenset({"asset", "signature", "source"})
_DURATION_FIELDS = ("window", "cap", "lateness", "stale_after", "clock_skew")

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Accepted ranges, inclusive. `cap` is additionally at least `window`.
RANGES: dict[str, tuple[timedelta, timedelta]] = {
    "window": (MINUTE, DAY),
    "cap": (MINUTE, 30 * DAY),
    "lateness": (MINUTE, 30 * DAY),
    "stale_after": (5 * MINUTE, 30 * DAY),
    "clock_skew": (timedelta(0), DAY),
}
THRESHOLD_RANGE = (1, 1000)


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "15m", "24h", "7d" or a descending combination such as "1h30m"."""
    match = _DURATION_RE.fullmatch(text) if isinstance(text, str) else None
    if not text or match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number of d, h, m or s, "
            "largest unit first, such as 90s, 15m, 24h, 7d or 1h30m"
        )
    seconds = sum(int(n) * size for n, (_, size) in zip(match.groups(), _UNITS, strict=True) if n)
    if seconds > 3650 * 86400:
        raise ValueError(f"invalid duration {text!r}: longer than 10 years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Write a duration as `parse_duration` reads it.

    Up to one day the largest unit is hours ("24h", "1h30m"); longer ones start with days
    ("7d", "1d1h"). Zero is "0s".
    """
    if value < timedelta(0) or value.microseconds:
        raise ValueError(f"cannot format {value!r}: only whole, non-negative seconds")
    remaining = int(value.total_seconds())
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        if unit == "d" and remaining <= 86400:
            continue
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _to_duration(name: str, value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    raise ValueError(f"{name} must be a duration such as '15m', got {type(value).__name__}")


def _to_key(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError("key must be a list of field names, such as ['asset', 'signature']")
    key = tuple(value)
    if not key:
        raise ValueError("key must name at least one field")
    for item in key:
        if not isinstance(item, str) or not (
            item in PLAIN_KEY_FIELDS or _LABEL_RE.fullmatch(item)
        ):
            raise ValueError(
                f"key field {item!r} is not one of asset, signature, source or label:<name>"
            )
    repeated = sorted({item for item in key if key.count(item) > 1})
    if repeated:
        raise ValueError(f"key fields must not repeat: {', '.join(repeated)}")
    return key


def _to_overrides(value: object) -> Mapping[str, timedelta]:
    if not isinstance(value, Mapping):
        raise ValueError("stale_after_by_source must map source names to durations")
    overrides = {}
    for source, duration in sorted(value.items(), key=lambda item: str(item[0])):
        if not isinstance(source, str) or not _SOURCE_RE.fullmatch(source):
            raise ValueError(f"stale_after_by_source: {source!r} is not a valid source name")
        overrides[source] = _to_duration(f"stale_after_by_source[{source}]", duration)
    return MappingProxyType(overrides)


def _check_range(name: str, value: timedelta, low: timedelta, high: timedelta) -> None:
    if not low <= value <= high:
        raise ValueError(
            f"{name} must be between {format_duration(low)} and {format_duration(high)}, "
            f"got {_show(value)}"
        )


def _show(value: timedelta) -> str:
    try:
        return format_duration(value)
    except ValueError:
        return str(value)


@dataclass(frozen=True)
class CorrelationSettings:
    """How one tenant's events become incidents; see SEMANTICS.md for each rule."""

    window: timedelta = 15 * MINUTE  # R5: W, join while t <= last_activity + W
    key: tuple[str, ...] = ("asset", "signature")  # R4: aggregation key fields
    cap: timedelta = DAY  # R6: M, t > first_seen + M starts a linked incident
    threshold: int = 1  # R13: N member firing/point events before an incident is visible
    lateness: timedelta = DAY  # R9: L, older events are stored but flagged too_late
    stale_after: timedelta = DAY  # R8: T_stale for sources without an override
    stale_after_by_source: Mapping[str, timedelta] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    clock_skew: timedelta = 5 * MINUTE  # R9: F, event times further ahead are clamped

    def __post_init__(self) -> None:
        for name in _DURATION_FIELDS:
            object.__setattr__(self, name, _to_duration(name, getattr(self, name)))
        object.__setattr__(self, "key", _to_key(self.key))
        object.__setattr__(self, "stale_after_by_source", _to_overrides(self.stale_after_by_source))
        self._validate()

    def _validate(self) -> None:
        for name in _DURATION_FIELDS:
            _check_range(name, getattr(self, name), *RANGES[name])
        for source, value in self.stale_after_by_source.items():
            _check_range(f"stale_after_by_source[{source}]", value, *RANGES["stale_after"])
        if self.cap < self.window:
            raise ValueError(
                f"cap must be at least the window ({format_duration(self.window)}), "
                f"got {format_duration(self.cap)}"
            )
        low, high = THRESHOLD_RANGE
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise ValueError(f"threshold must be an integer, got {self.threshold!r}")
        if not low <= self.threshold <= high:
            raise ValueError(f"threshold must be between {low} and {high}, got {self.threshold}")

    def stale_after_for(self, source: str) -> timedelta:
        """R8's T_stale for one source: its override, else `stale_after`."""
        return self.stale_after_by_source.get(source, self.stale_after)

    def with_changes(self, changes: Mapping[str, object]) -> CorrelationSettings:
        """A validated copy with `changes` applied.

        Values take the JSON forms (durations as "15m", key as a list) or Python ones.
        `stale_after_by_source` is merged into the current overrides; a source mapped to None
        loses its override.
        """
        _reject_unknown(changes)
        updates = dict(changes)
        if "stale_after_by_source" in updates:
            given = updates["stale_after_by_source"]
            if not isinstance(given, Mapping):
                raise ValueError("stale_after_by_source must map source names to durations")
            merged: dict[str, object] = dict(self.stale_after_by_source)
            for source, value in given.items():
                if value is None:
                    merged.pop(source, None)
                else:
                    merged[source] = value
            updates["stale_after_by_source"] = merged
        return replace(self, **updates)  # type: ignore[arg-type]  # __post_init__ coerces

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, durations as strings such as "15m"."""
        out: dict[str, object] = {
            name: format_duration(getattr(self, name)) for name in _DURATION_FIELDS
        }
        out["key"] = list(self.key)
        out["threshold"] = self.threshold
        out["stale_after_by_source"] = {
            source: format_duration(value) for source, value in self.stale_after_by_source.items()
        }
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CorrelationSettings:
        """Build from `to_dict` output; missing fields take the defaults."""
        _reject_unknown(data)
        return cls(**data)  # type: ignore[arg-type]  # __post_init__ coerces and validates

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, durations as strings)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CorrelationSettings:
        """Parse `to_json` output."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("correlation settings JSON must be an object")
        return cls.from_dict(data)


def _reject_unknown(data: Mapping[str, object]) -> None:
    known = {f.name for f in fields(CorrelationSettings)}
    unknown = sorted(str(name) for name in data if name not in known)
    if unknown:
        raise ValueError(
            f"unknown correlation setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
