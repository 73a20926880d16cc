"""Tuning hints for noisy keys: what to change, read from the marts' numbers.

- **Flapping** (`flaps >= 1`): the check fires and resolves in cycles; each reopening is a
  flap (R7). Fix it at the source (hysteresis: Alertmanager `for:`, a Zabbix recovery
  expression, a Datadog recovery threshold).
- **Every event pages** (at least `MANY_INCIDENTS` incidents and at most
  `PAGING_RATIO` events per incident): correlation does nothing for the key; a threshold
  N >= 2 (R13) or a longer window would.
- **Well compressed** (`COMPRESSED_RATIO` or more events per incident): the window works;
  the volume comes from the source's re-send interval.
- **Near misses** (`data.near_miss_keys`): incidents opened with a gap just above the window
  W (W < gap <= 2W); a window as wide as the widest such gap would have merged each into
  the incident before it.
"""

from __future__ import annotations

import math

from dashboards import formats as f

MANY_INCIDENTS = 5
PAGING_RATIO = 1.2
COMPRESSED_RATIO = 20.0


def noisy_key(member_events: int, incidents: int, flapping_incidents: int, flaps: int) -> str:
    """The hint for one row of `fct_top_noisy_keys`."""
    if flaps >= 1:
        return (f"Flapping: {flaps} reopenings in {flapping_incidents} incident(s). Add "
                "hysteresis at the source (Alertmanager `for:`, a recovery threshold).")
    if incidents >= MANY_INCIDENTS and member_events / incidents <= PAGING_RATIO:
        return ("Every event pages: try a threshold N ≥ 2 or a longer window in "
                "Settings and what-if.")
    if incidents and member_events / incidents >= COMPRESSED_RATIO:
        return ("Well compressed by the window; the volume comes from the source's "
                "re-send interval.")
    return ""


def near_miss(near_misses: int, widest_gap_seconds: float, window_seconds: float) -> str:
    """The hint for one row of `data.near_miss_keys`."""
    proposed = math.ceil(widest_gap_seconds / 60) * 60
    return (f"{near_misses} incident(s) opened just after the {f.window(window_seconds)} "
            f"window; a window of {f.window(proposed)} would have merged them into the "
            "previous incident (backtest it in Settings and what-if).")
