"""R10 merge records: replay arrivals where a late event may have bridged visible incidents.
(placeholder until the replay lands)"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Merge:
    record: dict[str, object]
    survivor_event_id: str


def find_merges(adm, timeline, et, as_of):  # type: ignore[no-untyped-def]
    return [], 0
