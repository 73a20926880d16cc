"""Value normalization shared by both collection paths (API and Resource Data Sync).

The two paths see the same facts in different clothes: the API returns parsed timestamps and
integers, Resource Data Sync writes every value as a string. Each function here accepts both
and returns the one form the snapshot tables store.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from warehouse.ssm.schema import PATCH_STATE_ALIASES

# DescribeInstancePatches may also report `AVAILABLE_SECURITY_UPDATE` (in the botocore model
# enum, and a count of it in InstancePatchState): a security patch the baseline did not
# approve. The schema's list of states predates it; it is kept in the same PascalCase form
# rather than dropped, so a mart can decide what it means.
_EXTRA_STATE_ALIASES = {
    "AVAILABLE_SECURITY_UPDATE": "AvailableSecurityUpdate",
    "AvailableSecurityUpdate": "AvailableSecurityUpdate",
}
_STATE_BY_KEY = {
    re.sub(r"[^a-z]", "", key.lower()): value
    for key, value in {**PATCH_STATE_ALIASES, **_EXTRA_STATE_ALIASES}.items()
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def text(value: Any) -> str | None:
    """A string with surrounding blanks removed; empty or missing is None."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


def count(value: Any) -> int | None:
    """An integer count from an int or a numeric string; empty or missing is None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    raw = str(value).strip()
    if not raw:
        return None
    try:
        return int(float(raw)) if _NUMBER.match(raw) else int(raw)
    except ValueError as exc:
        raise ValueError(f"not a count: {raw[:40]!r}") from exc


def utc(value: Any) -> datetime | None:
    """A UTC datetime from a datetime, an ISO 8601 string or epoch seconds.

    The epoch itself (and anything before it) is None: SSM reports `InstalledTime` = 0 for
    patches that were never installed. A naive datetime or string is taken as UTC (Resource
    Data Sync writes `...Z` strings; the agent formats with a literal `Z`). An unparseable
    string is None: these are optional descriptive times, never keys.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, tz=UTC)
    else:
        raw = str(value).strip()
        if not raw:
            return None
        if _NUMBER.match(raw):
            moment = datetime.fromtimestamp(float(raw), tz=UTC)
        else:
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return None if moment <= _EPOCH else moment


def patch_state(value: Any) -> str | None:
    """The PascalCase wire form of a patch state (`Missing`, `InstalledPendingReboot`, ...).

    Accepts PascalCase (what the service sends) and UPPER_SNAKE (the botocore model's enum),
    in any letter case. An unknown non-empty state is kept as given, never dropped.
    """
    raw = text(value)
    if raw is None:
        return None
    return _STATE_BY_KEY.get(re.sub(r"[^a-z]", "", raw.lower()), raw)


def compliance_status(value: Any) -> str | None:
    """`COMPLIANT` or `NON_COMPLIANT` (case and separators ignored); unknown kept upper-cased."""
    raw = text(value)
    if raw is None:
        return None
    key = re.sub(r"[^A-Z]", "", raw.upper())
    return {"COMPLIANT": "COMPLIANT", "NONCOMPLIANT": "NON_COMPLIANT"}.get(key, raw.upper())


def operation(value: Any) -> str | None:
    """`Scan` or `Install` (the API's enum; Resource Data Sync's OperationType likewise)."""
    raw = text(value)
    if raw is None:
        return None
    return {"scan": "Scan", "install": "Install"}.get(raw.lower(), raw)


def is_hybrid(node_id: str) -> bool:
    """Hybrid and multicloud (on-premises) managed nodes have ids `mi-…`; EC2 ones `i-…`."""
    return node_id.startswith("mi-")


def snapshot_now(now: datetime) -> datetime:
    """`now` as an aware UTC datetime (a naive one is refused: it would be ambiguous)."""
    if now.tzinfo is None:
        raise ValueError("snapshot time must be timezone-aware (UTC)")
    return now.astimezone(UTC)
