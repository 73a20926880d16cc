"""What every source adapter shares: the adapter error, SOURCES.md's severity words and asset
rule, event times, and the R2 body hash. Adapters declare their maps as data next to this."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from warehouse.timestamps import TimestampError, check_plausible, parse_rfc3339_us


class AdapterError(ValueError):
    """The payload is valid JSON but not a valid alert for this source (HTTP 422)."""


# SOURCES.md "Label severity words" (case-insensitive); missing or unknown → warning, unmapped.
SEVERITY_WORDS: dict[str, str] = {
    **dict.fromkeys(
        ("critical", "crit", "fatal", "emergency", "page", "p1", "sev1", "disaster"), "critical"),
    **dict.fromkeys(("high", "error", "err", "major", "p2", "sev2"), "high"),
    **dict.fromkeys(("warning", "warn", "average", "medium", "minor", "p3", "sev3"), "warning"),
    **dict.fromkeys(
        ("info", "informational", "information", "low", "none", "notice", "debug", "p4", "p5",
         "sev4", "sev5"), "info"),
}
DEFAULT_SEVERITY = "warning"

# SOURCES.md: the asset is the first present of these labels; `host:port` becomes `host`.
ASSET_LABELS = ("host", "hostname", "instance", "node", "device", "pod")


def severity_from_word(word: object) -> tuple[str, bool]:
    """(canonical severity, whether the word was recognised)."""
    if isinstance(word, str):
        mapped = SEVERITY_WORDS.get(word.strip().lower())
        if mapped is not None:
            return mapped, True
    return DEFAULT_SEVERITY, False


def asset_from_labels(labels: Mapping[str, str]) -> str | None:
    for name in ASSET_LABELS:
        value = labels.get(name)
        if value and value.strip():
            return strip_port(value.strip())
    return None


def strip_port(value: str) -> str:
    """`web01:9100` → `web01`, `[2001:db8::1]:9100` → `2001:db8::1`; a bare IPv6 stays."""
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and ":" not in host:
        return host
    return value


def event_time_us(value: object, received_us: int, where: str) -> int:
    """An RFC 3339 event time → µs since the epoch; absurd or malformed → AdapterError."""
    if not isinstance(value, str):
        raise AdapterError(f"{where}: expected an RFC 3339 string, got {type(value).__name__}")
    try:
        micros = parse_rfc3339_us(value)
        check_plausible(micros, received_us, where)
    except TimestampError as exc:
        raise AdapterError(f"{where}: {exc}") from None
    return micros


def body_hash(obj: Any) -> str:
    """sha256 of the object in canonical JSON (sorted keys, compact): whitespace-proof."""
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def required(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    """`mapping[key]`, or an AdapterError naming the missing member."""
    if not isinstance(mapping, Mapping):
        raise AdapterError(f"{where}: expected an object, got {type(mapping).__name__}")
    if key not in mapping:
        raise AdapterError(f"{where}.{key}: missing")
    return mapping[key]


def text(value: Any, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise AdapterError(f"{where}: expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise AdapterError(f"{where}: must not be empty")
    return value


def string_map(value: Any, where: str) -> dict[str, str]:
    """A JSON object of strings (labels, annotations); anything else → AdapterError."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise AdapterError(f"{where}: expected an object of strings")
    return value
