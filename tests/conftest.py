"""Shared fixtures: an isolated data directory, a tenant, an in-process ingest app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import ServiceSettings, get_settings
from tests.support.signing import Credentials
from warehouse.config import platform_settings
from warehouse.registry import Registry


@pytest.fixture(autouse=True)
def _aws_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real AWS account or the EC2 metadata service from a test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """AW_DATA_DIR in a temp dir, with settings caches cleared before and after."""
    path = tmp_path / "data"
    monkeypatch.setenv("AW_DATA_DIR", str(path))
    monkeypatch.delenv("AW_LAKE_URI", raising=False)
    platform_settings.cache_clear()
    get_settings.cache_clear()
    yield path
    platform_settings.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def settings(data_dir: Path) -> ServiceSettings:
    # Flush quickly so tests see lake files within a fraction of a second.
    return ServiceSettings(data_dir=data_dir, flush_max_age_seconds=0.2, flusher="thread")


@pytest.fixture
def tenant(settings: ServiceSettings) -> Credentials:
    with Registry.open(settings) as registry:
        issued = registry.create_tenant("acme", name="Acme Corp")
    return Credentials(issued.tenant_id, issued.api_key, issued.hmac_secret)


@pytest.fixture
def client(settings: ServiceSettings, tenant: Credentials) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
