"""Helpers for in-process tests of the ingest app (TestClient)."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from service.config import ServiceSettings
from warehouse.lake import open_lake


def alert_rows(
    client: TestClient, settings: ServiceSettings, table: str = "raw/alerts"
) -> list[dict[str, Any]]:
    """Rows of a lake table once the app's buffer is empty (everything acknowledged flushed)."""
    buffer = client.app.state.runtime.buffer  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while buffer.depth_bytes:
        assert time.monotonic() < deadline, "the flusher did not empty the buffer in time"
        time.sleep(0.02)
    return open_lake(settings.resolved_lake_uri).read_table(table).to_pylist()
