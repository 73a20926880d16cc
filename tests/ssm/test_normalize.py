"""Value normalization shared by the API and Resource Data Sync paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from warehouse.ssm import normalize as nz
from warehouse.ssm.schema import PATCH_STATES_ORDER


@pytest.mark.parametrize("raw, expected", [
    ("Missing", "Missing"),  # PascalCase: what the service actually sends
    ("MISSING", "Missing"),  # UPPER_SNAKE: the botocore model's enum
    ("INSTALLED_PENDING_REBOOT", "InstalledPendingReboot"),
    ("InstalledPendingReboot", "InstalledPendingReboot"),
    ("installed_other", "InstalledOther"),  # any letter case
    ("NOT_APPLICABLE", "NotApplicable"),
    ("AVAILABLE_SECURITY_UPDATE", "AvailableSecurityUpdate"),  # newer than the schema's list
    ("SomethingNew", "SomethingNew"),  # unknown: kept, never dropped
    ("", None),
    (None, None),
])
def test_patch_state(raw: Any, expected: str | None) -> None:
    assert nz.patch_state(raw) == expected


def test_every_schema_state_round_trips_in_both_forms() -> None:
    for state in PATCH_STATES_ORDER:
        snake = "".join(f"_{c}" if c.isupper() else c for c in state).lstrip("_").upper()
        assert nz.patch_state(state) == nz.patch_state(snake) == state


@pytest.mark.parametrize("raw, expected", [
    # Resource Data Sync strings, as the Patch Manager agent formats them.
    ("2026-11-01T03:02:41Z", datetime(2026, 11, 1, 3, 2, 41, tzinfo=UTC)),
    ("2026-11-01T03:02:41.250Z", datetime(2026, 11, 1, 3, 2, 41, 250000, tzinfo=UTC)),
    ("2026-11-01T03:02:41", datetime(2026, 11, 1, 3, 2, 41, tzinfo=UTC)),  # naive: UTC
    ("2026-11-01T05:02:41+02:00", datetime(2026, 11, 1, 3, 2, 41, tzinfo=UTC)),
    ("1793502161", datetime(2026, 11, 1, 3, 2, 41, tzinfo=UTC)),  # epoch seconds as text
    # botocore datetimes, in whatever zone its parser chose.
    (datetime(2026, 11, 1, 4, 2, 41, tzinfo=timezone(timedelta(hours=1))),
     datetime(2026, 11, 1, 3, 2, 41, tzinfo=UTC)),
    # InstalledTime 0 (never installed) and the epoch in any form are absent.
    (0, None), ("0", None), ("1970-01-01T00:00:00Z", None),
    (datetime(1970, 1, 1, tzinfo=UTC), None),
    ("", None), (None, None), ("not a time", None),
])
def test_utc(raw: Any, expected: datetime | None) -> None:
    got = nz.utc(raw)
    assert got == expected
    assert got is None or got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("raw, expected", [
    ("COMPLIANT", "COMPLIANT"), ("NON_COMPLIANT", "NON_COMPLIANT"),
    ("NonCompliant", "NON_COMPLIANT"), ("compliant", "COMPLIANT"), ("", None),
])
def test_compliance_status(raw: str, expected: str | None) -> None:
    assert nz.compliance_status(raw) == expected


def test_counts_text_and_operations() -> None:
    assert (nz.count("12"), nz.count(12), nz.count(""), nz.count(None)) == (12, 12, None, None)
    with pytest.raises(ValueError, match="not a count"):
        nz.count("twelve")
    assert (nz.text("  a "), nz.text(""), nz.text("   ")) == ("a", None, None)
    assert (nz.operation("SCAN"), nz.operation("Install"), nz.operation(None)) == (
        "Scan", "Install", None)
    assert nz.is_hybrid("mi-0123456789abcdef0") and not nz.is_hybrid("i-0123456789abcdef0")
