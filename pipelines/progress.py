"""Live progress of in-process runs (`aw pipeline run`): each asset reports as it finishes.

`dg.materialize` runs every step of a run in this process, one after another, but hands back
its events only when the run ends, so a build of many minutes would print nothing until then.
Assets call `finished(...)` on their way out; outside `listening` (runs launched by the
Dagster daemon) nobody listens and it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import dagster as dg

Listener = Callable[[str, Mapping[str, object]], None]
_listeners: list[Listener] = []
R = TypeVar("R", bound=dg.MaterializeResult)


def finished(key: dg.AssetKey, result: R) -> R:
    """Report `result` of asset `key` to the listeners, and return it."""
    for listener in list(_listeners):
        listener(key.to_user_string(), result.metadata or {})
    return result


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
