"""The contract every source adapter keeps (Alertmanager's notify/test idea), run over every
adapter in the registry with the fixtures authored from each tool's documentation in
`tests/fixtures/<route>/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from service.adapters import WEBHOOKS, AdapterError
from warehouse.contracts import AlertRecord, Severity, Status
from warehouse.timestamps import EARLIEST_US, now_us

FIXTURES = Path(__file__).parent / "fixtures"
# Routes whose bodies need more than the adapter (SNS: a signed envelope) are tested apart.
ADAPTER_ROUTES = sorted(r for r, w in WEBHOOKS.items() if w.auth != "sns")


def fixture_cases() -> list[tuple[str, Path]]:
    cases = []
    for route in ADAPTER_ROUTES:
        folder = FIXTURES / route
        cases += [(route, path) for path in sorted(folder.glob("*.json"))]
    return cases


def load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def test_every_adapter_has_fixtures() -> None:
    missing = [r for r in ADAPTER_ROUTES if not list((FIXTURES / r).glob("*.json"))]
    assert not missing, f"adapters without fixtures in tests/fixtures/<route>/: {missing}"


@pytest.mark.parametrize(("route", "path"), fixture_cases(), ids=lambda v: getattr(v, "name", v))
def test_fixture_normalizes_to_valid_canonical_events(route: str, path: Path) -> None:
    received = now_us()
    records = WEBHOOKS[route].normalize(load(path), received)
    assert records, "an adapter never returns no events for a real notification"
    for record in records:
        assert isinstance(record, AlertRecord)
        assert record.severity in set(Severity)
        assert record.status in set(Status)
        assert record.source and record.signature.strip() and record.source_fingerprint
        assert len(record.body_sha256) == 64
        assert record.occurred_at_us is None or EARLIEST_US <= record.occurred_at_us
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in record.labels.items())
        assert isinstance(record.has_resolve_path, bool)
        assert isinstance(record.severity_mapped, bool)


@pytest.mark.parametrize(("route", "path"), fixture_cases(), ids=lambda v: getattr(v, "name", v))
def test_fingerprints_are_stable(route: str, path: Path) -> None:
    first = WEBHOOKS[route].normalize(load(path), now_us())
    again = WEBHOOKS[route].normalize(load(path), now_us() + 5_000_000)
    assert [r.source_fingerprint for r in first] == [r.source_fingerprint for r in again]
    assert [r.body_sha256 for r in first] == [r.body_sha256 for r in again]


@pytest.mark.parametrize("route", ADAPTER_ROUTES)
@pytest.mark.parametrize("document", [{}, [], "text", 42, None, [{}], {"alerts": "x"}])
def test_structurally_wrong_documents_raise_the_adapter_error(route: str, document: Any) -> None:
    with pytest.raises(AdapterError) as caught:
        WEBHOOKS[route].normalize(document, now_us())
    assert str(caught.value), "the error says what is wrong"


@pytest.mark.parametrize(("route", "path"), fixture_cases(), ids=lambda v: getattr(v, "name", v))
def test_truncated_documents_raise_the_adapter_error(route: str, path: Path) -> None:
    """Each top-level member removed in turn: refused precisely, or still valid, never a crash
    of another kind (a KeyError or TypeError here would be a 500 in production)."""
    document = load(path)
    objects = document if isinstance(document, dict) else (document[0] if document else {})
    if not isinstance(objects, dict):
        return
    for key in list(objects):
        cut = {k: v for k, v in objects.items() if k != key}
        shaped = cut if isinstance(document, dict) else [cut]
        try:
            WEBHOOKS[route].normalize(shaped, now_us())
        except AdapterError:
            pass
