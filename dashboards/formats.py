"""How the dashboards write numbers: one place, so a page and its test agree on "79.4%".

Missing values (a ratio whose denominator is zero, a median of nothing) are written "—",
never 0 and never "nan".
"""

from __future__ import annotations

import math

MISSING = "—"


def missing(value: object) -> bool:
    """None, NaN or pandas' NA/NaT."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT and pd.NA are not equal to themselves
    except (TypeError, ValueError):
        return False


def pct(share: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage: 0.7938 -> "79.4%"."""
    return MISSING if missing(share) else f"{float(share) * 100:.{digits}f}%"  # type: ignore[arg-type]


def pct100(percent: float | None, digits: int = 1) -> str:
    """A value already in percent (the compliance marts): 44.44 -> "44.4%"."""
    return MISSING if missing(percent) else f"{float(percent):.{digits}f}%"  # type: ignore[arg-type]


def count(value: float | int | None) -> str:
    """A count with thousands separators: 4757 -> "4,757"."""
    return MISSING if missing(value) else f"{int(value):,}"  # type: ignore[arg-type]


def number(value: float | None, digits: int = 2) -> str:
    """A plain ratio such as alerts per incident: 2.4236 -> "2.42"."""
    return MISSING if missing(value) else f"{float(value):,.{digits}f}"  # type: ignore[arg-type]


def duration(seconds: float | None) -> str:
    """Seconds for people: 45 -> "45 s", 1800 -> "30.0 min", 9000 -> "2.5 h", 2 days -> "2.0 d"."""
    if missing(seconds):
        return MISSING
    value = float(seconds)  # type: ignore[arg-type]
    if math.isinf(value):
        return MISSING
    if abs(value) < 120:
        return f"{value:.0f} s"
    if abs(value) < 2 * 3600:
        return f"{value / 60:.1f} min"
    if abs(value) < 2 * 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def hours(value: float | None) -> str:
    """An age given in hours (scan ages): 26.5 -> "26.5 h", 243 -> "10.1 d"."""
    if missing(value):
        return MISSING
    h = float(value)  # type: ignore[arg-type]
    return f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} d"


def window(seconds: float) -> str:
    """A correlation window as `aw tenants set --window` takes it: 900 -> "15m"."""
    total = int(round(seconds))
    if total % 3600 == 0:
        return f"{total // 3600}h"
    if total % 60 == 0:
        return f"{total // 60}m"
    return f"{total}s"
