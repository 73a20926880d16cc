"""R15: which correlation settings are in force for a tenant at a moment, for many at once.

A timeline holds, per tenant, its settings versions ordered by effective time; a lookup is a
`searchsorted` per tenant, so millions of events find their version without a Python loop
over events. Tenants without versions run under the defaults of SEMANTICS.md (version 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from warehouse.correlation_settings import CorrelationSettings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(t: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (the engine's time unit)."""
    delta = t.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class Version:
    """One version in force from `effective_us` on; `label` names it in explanations."""

    label: str
    effective_us: int
    settings: CorrelationSettings


class SettingsTimeline:
    """Settings versions of every tenant; `versions` is the flat table lookups index into."""

    def __init__(self, by_tenant: Mapping[str, Iterable[Version]] | None = None,
                 default: Version | None = None) -> None:
        self.default = default or Version("v0", to_us(EPOCH), CorrelationSettings())
        self.versions: list[Version] = [self.default]
        self._tenants: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for tenant, versions in (by_tenant or {}).items():
            ordered = sorted(versions, key=lambda v: v.effective_us)  # stable: ties keep order
            if not ordered:
                continue  # a tenant that never changed its settings runs under the default
            starts = np.array([v.effective_us for v in ordered], dtype=np.int64)
            index = np.arange(len(self.versions), len(self.versions) + len(ordered))
            self.versions.extend(ordered)
            self._tenants[tenant] = (starts, index.astype(np.int64))

    @classmethod
    def constant(cls, settings: CorrelationSettings, label: str = "v0") -> SettingsTimeline:
        """Every tenant under one settings value (backtests with `--config`)."""
        return cls(default=Version(label, to_us(EPOCH), settings))

    def lookup(self, tenants: np.ndarray, tenant_names: list[str], times: np.ndarray) -> np.ndarray:
        """Index into `versions` for each (tenant code, time): the latest effective <= time,
        the last listed on ties; before a tenant's first version, the default."""
        out = np.zeros(len(times), dtype=np.int64)
        for code, name in enumerate(tenant_names):
            found = self._tenants.get(name)
            if found is None:
                continue
            starts, index = found
            rows = np.flatnonzero(tenants == code)
            at = np.searchsorted(starts, times[rows], side="right") - 1
            out[rows] = np.where(at >= 0, index[np.maximum(at, 0)], 0)
        return out

    def tenant_versions(self, tenant: str) -> list[int]:
        """Indexes into `versions` a tenant can be correlated under: the default first."""
        found = self._tenants.get(tenant)
        return [0] + ([] if found is None else [int(i) for i in found[1]])

    def column(self, version_index: np.ndarray, name: str) -> np.ndarray:
        """One settings field (durations in microseconds) for each looked-up version."""
        values = np.array([_field_us(v.settings, name) for v in self.versions], dtype=np.int64)
        return values[version_index]


def _field_us(settings: CorrelationSettings, name: str) -> int:
    value = getattr(settings, name)
    if isinstance(value, int):
        return value
    return int(value.total_seconds() * 1_000_000)
