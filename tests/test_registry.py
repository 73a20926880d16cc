"""The tenant registry: ids, credentials at rest, rotation, revocation, settings versions."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from warehouse.config import PlatformSettings
from warehouse.registry import (
    TENANT_ID_PATTERN,
    Registry,
    RegistryError,
    TenantNotFound,
    validate_tenant_id,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(data_dir=tmp_path / "data", master_key=None)


@pytest.fixture
def registry(settings: PlatformSettings) -> Iterator[Registry]:
    with Registry.open(settings) as opened:
        yield opened


def _registry_bytes(settings: PlatformSettings) -> bytes:
    """The database file with its WAL: where a committed row can be before a checkpoint."""
    paths = sorted(settings.registry_path.parent.glob(settings.registry_path.name + "*"))
    assert paths, "no registry file written"
    return b"".join(path.read_bytes() for path in paths)


# -- tenant ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tenant_id",
    ["a", "0", "acme", "acme-eu_2", "a" * 64, "a" + "-" * 62 + "z"],
)
def test_valid_tenant_ids(tenant_id: str) -> None:
    assert validate_tenant_id(tenant_id) == tenant_id
    assert TENANT_ID_PATTERN.fullmatch(tenant_id)


@pytest.mark.parametrize(
    "tenant_id",
    [
        "../x",  # path traversal
        "a;drop",  # SQL-ish
        "A",  # upper case
        "",  # empty
        "a" * 65,  # too long
        "-a",  # must start with a letter or digit
        "a_",  # must end with a letter or digit
        "a b",
        "acme\n",  # a trailing newline must not slip through `$`
        "é",
    ],
)
def test_invalid_tenant_ids_are_refused(tenant_id: str, registry: Registry) -> None:
    with pytest.raises(ValueError, match="invalid tenant id"):
        validate_tenant_id(tenant_id)
    with pytest.raises(ValueError, match="invalid tenant id"):
        registry.create_tenant(tenant_id, "Name")


# -- tenants and credentials -----------------------------------------------------------------


def test_create_tenant_issues_credentials_once(registry: Registry) -> None:
    issued = registry.create_tenant("acme", "  Acme Corp ", now=T0)
    assert issued.tenant_id == "acme"
    assert issued.api_key.startswith("awk_") and len(issued.api_key) == 4 + 43
    assert issued.hmac_secret.startswith("awh_") and len(issued.hmac_secret) == 4 + 43
    assert issued.api_key not in repr(issued) and issued.hmac_secret not in repr(issued)

    tenant = registry.get_tenant("acme")
    assert (tenant.id, tenant.name, tenant.created_at) == ("acme", "Acme Corp", T0)
    assert tenant.key_prefixes == (issued.api_key[:12],)
    assert tenant.secret_count == 1
    assert (tenant.require_signature, tenant.rate_limit_per_second, tenant.rate_limit_burst) == (
        True,
        10_000.0,
        100_000,
    )
    assert issued.api_key not in repr(tenant) and issued.hmac_secret not in repr(tenant)
    assert [t.id for t in registry.list_tenants()] == ["acme"]


def test_duplicate_tenant_is_a_clear_error(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme")
    with pytest.raises(RegistryError, match="tenant 'acme' already exists"):
        registry.create_tenant("acme", "Other")
    assert registry.get_tenant("acme").name == "Acme"


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 201])
def test_bad_names_are_refused(registry: Registry, name: str) -> None:
    with pytest.raises(ValueError, match="tenant name"):
        registry.create_tenant("acme", name)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.get_tenant("ghost"),
        lambda r: r.new_api_key("ghost"),
        lambda r: r.revoke_key("ghost", None),
        lambda r: r.rotate_secret("ghost"),
        lambda r: r.set_options("ghost", require_signature=False),
        lambda r: r.set_settings("ghost", {"window": "10m"}),
        lambda r: r.settings_history("ghost"),
        lambda r: r.settings_at("ghost", T0),
    ],
)
def test_unknown_tenant(registry: Registry, call: object) -> None:
    with pytest.raises(TenantNotFound, match="no tenant 'ghost'"):
        call(registry)  # type: ignore[operator]


def test_only_hashes_and_ciphertexts_reach_the_file(
    registry: Registry, settings: PlatformSettings
) -> None:
    issued = registry.create_tenant("acme", "Acme")
    extra_key = registry.new_api_key("acme")
    rotated = registry.rotate_secret("acme")
    stored = _registry_bytes(settings)
    for plain in (issued.api_key, extra_key, issued.hmac_secret, rotated):
        assert plain.encode() not in stored
        assert plain[4:].encode() not in stored  # not even without the prefix
    assert hashlib.sha256(issued.api_key.encode()).hexdigest().encode() in stored
    registry.close()
    assert issued.hmac_secret.encode() not in _registry_bytes(settings)  # after checkpoint too


def test_auth_snapshot_resolves_keys_and_decrypts_secrets(registry: Registry) -> None:
    acme = registry.create_tenant("acme", "Acme")
    beta = registry.create_tenant("beta", "Beta")
    snapshot = registry.auth_snapshot()
    assert snapshot.tenant_for_key(acme.api_key) == "acme"
    assert snapshot.tenant_for_key(beta.api_key) == "beta"
    assert snapshot.tenant_for_key("awk_unknown") is None
    assert snapshot.secrets_for_tenant["acme"] == (acme.hmac_secret.encode(),)
    assert snapshot.options["beta"].require_signature is True
    assert snapshot.valid_until is None
    assert acme.hmac_secret not in repr(snapshot)
    with pytest.raises(TypeError):
        snapshot.tenant_for_key_hash["x"] = "beta"  # type: ignore[index]


def test_new_key_and_revocation(registry: Registry) -> None:
    first = registry.create_tenant("acme", "Acme").api_key
    second = registry.new_api_key("acme")
    other = registry.create_tenant("beta", "Beta").api_key
    assert registry.get_tenant("acme").key_prefixes == (first[:12], second[:12])

    assert registry.revoke_key("acme", first[:12]) == 1
    snapshot = registry.auth_snapshot()
    assert snapshot.tenant_for_key(first) is None
    assert snapshot.tenant_for_key(second) == "acme"
    assert registry.revoke_key("acme", first[:12]) == 0  # already revoked
    assert registry.revoke_key("acme", "awk_nothere0") == 0
    assert registry.revoke_key("acme", other[:12]) == 0  # another tenant's key is out of reach

    assert registry.revoke_key("acme", None) == 1
    assert registry.get_tenant("acme").key_prefixes == ()
    assert registry.auth_snapshot().tenant_for_key(other) == "beta"


def test_rotation_grace_keeps_both_secrets_until_expiry(registry: Registry) -> None:
    old = registry.create_tenant("acme", "Acme", now=T0).hmac_secret.encode()
    new = registry.rotate_secret("acme", timedelta(hours=24), now=T0 + HOUR).encode()
    expiry = T0 + HOUR + timedelta(hours=24)

    during = registry.auth_snapshot(T0 + 2 * HOUR)
    assert during.secrets_for_tenant["acme"] == (new, old)  # newest first
    assert during.valid_until == expiry
    just_before = registry.auth_snapshot(expiry - timedelta(microseconds=1))
    assert just_before.secrets_for_tenant["acme"] == (new, old)
    at_expiry = registry.auth_snapshot(expiry)
    assert at_expiry.secrets_for_tenant["acme"] == (new,)
    assert at_expiry.valid_until is None
    assert registry.get_tenant("acme", now=T0 + 2 * HOUR).secrets_expire_at == (None, expiry)


def test_a_second_rotation_never_extends_an_earlier_expiry(registry: Registry) -> None:
    first = registry.create_tenant("acme", "Acme", now=T0).hmac_secret.encode()
    second = registry.rotate_secret("acme", timedelta(hours=1), now=T0).encode()
    third = registry.rotate_secret("acme", timedelta(days=2), now=T0 + timedelta(minutes=30))
    snapshot = registry.auth_snapshot(T0 + timedelta(minutes=45))
    assert snapshot.secrets_for_tenant["acme"] == (third.encode(), second, first)
    assert registry.auth_snapshot(T0 + 2 * HOUR).secrets_for_tenant["acme"] == (
        third.encode(),
        second,
    )


def test_zero_grace_retires_old_secrets_at_once(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme", now=T0)
    new = registry.rotate_secret("acme", timedelta(0), now=T0)
    assert registry.auth_snapshot(T0).secrets_for_tenant["acme"] == (new.encode(),)


@pytest.mark.parametrize("grace", [timedelta(seconds=-1), timedelta(days=31)])
def test_grace_out_of_range(registry: Registry, grace: timedelta) -> None:
    registry.create_tenant("acme", "Acme")
    with pytest.raises(ValueError, match="grace must be between 0s and 30d"):
        registry.rotate_secret("acme", grace)


def test_ciphertext_is_bound_to_its_tenant(registry: Registry, settings: PlatformSettings) -> None:
    registry.create_tenant("acme", "Acme")
    registry.create_tenant("evil", "Evil")
    with closing(sqlite3.connect(settings.registry_path)) as conn, conn:
        conn.execute(
            "UPDATE hmac_secrets SET ciphertext ="
            " (SELECT ciphertext FROM hmac_secrets WHERE tenant_id = 'acme')"
            " WHERE tenant_id = 'evil'"
        )
    with pytest.raises(RegistryError, match="tenant 'evil': cannot decrypt"):
        registry.auth_snapshot()


# -- options ---------------------------------------------------------------------------------


def test_set_options_changes_only_what_is_given(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme")
    tenant = registry.set_options("acme", rate_limit_per_second=0)
    assert (tenant.require_signature, tenant.rate_limit_per_second, tenant.rate_limit_burst) == (
        True,
        0.0,
        100_000,
    )
    registry.set_options("acme", require_signature=False, rate_limit_burst=5)
    options = registry.auth_snapshot().options["acme"]
    assert (options.require_signature, options.rate_limit_per_second) == (False, 0.0)
    assert options.rate_limit_burst == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_limit_per_second": -1.0}, "rate limit must be between 0"),
        ({"rate_limit_per_second": float("nan")}, "rate limit must be between 0"),
        ({"rate_limit_per_second": float("inf")}, "rate limit must be between 0"),
        ({"rate_limit_burst": 0}, "rate burst must be an integer between 1"),
        ({"rate_limit_burst": 2.5}, "rate burst must be an integer between 1"),
        ({}, "no option to change"),
    ],
)
def test_bad_options(registry: Registry, kwargs: dict[str, object], message: str) -> None:
    registry.create_tenant("acme", "Acme")
    with pytest.raises(ValueError, match=message):
        registry.set_options("acme", **kwargs)  # type: ignore[arg-type]


# -- settings versions (R15) -----------------------------------------------------------------


def test_settings_at_picks_the_version_by_effective_time(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme")
    t1, t2 = T0, T0 + 10 * HOUR
    v1 = registry.set_settings("acme", {"window": "10m"}, t1)
    v2 = registry.set_settings("acme", {"threshold": 3}, t2)
    assert (v1.version, v2.version) == (1, 2)
    assert v2.settings.window == timedelta(minutes=10)  # built on the version in force at t2

    before = registry.settings_at("acme", t1 - timedelta(microseconds=1))
    assert (before.version, before.effective_at) == (0, datetime(1970, 1, 1, tzinfo=UTC))
    assert before.settings.window == timedelta(minutes=15)
    assert registry.settings_at("acme", t1).version == 1  # the effective time is inclusive
    assert registry.settings_at("acme", t2 - timedelta(seconds=1)).version == 1
    assert registry.settings_at("acme", t2).version == 2
    assert registry.settings_at("acme", t2 + timedelta(days=999)).version == 2
    # Stored times are fixed width, so even year 5 sorts before 2026 (not as "5-..." > "2...").
    assert registry.settings_at("acme", datetime(5, 1, 1, tzinfo=UTC)).version == 0


def test_a_backdated_version_does_not_rewrite_later_ones(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme")
    registry.set_settings("acme", {"window": "10m"}, T0)
    registry.set_settings("acme", {"threshold": 3}, T0 + 10 * HOUR)
    v3 = registry.set_settings("acme", {"key": ["asset"]}, T0 + 5 * HOUR)
    assert v3.settings.threshold == 1  # based on version 1, in force at T0 + 5h
    assert registry.settings_at("acme", T0 + 6 * HOUR).version == 3
    later = registry.settings_at("acme", T0 + 11 * HOUR)
    assert (later.version, later.settings.key) == (2, ("asset", "signature"))
    assert [v.version for v in registry.settings_history("acme")] == [1, 2, 3]


def test_equal_effective_times_go_to_the_newer_version(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme")
    registry.set_settings("acme", {"window": "10m"}, T0)
    registry.set_settings("acme", {"window": "5m"}, T0)
    chosen = registry.settings_at("acme", T0)
    assert (chosen.version, chosen.settings.window) == (2, timedelta(minutes=5))


def test_set_settings_defaults_to_now_and_records_creation(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme")
    version = registry.set_settings("acme", {"cap": "12h"}, now=T0)
    assert (version.effective_at, version.created_at) == (T0, T0)
    stored = registry.settings_history("acme")[0]
    assert stored == version


@pytest.mark.parametrize(
    ("changes", "effective_at", "message"),
    [
        ({"window": "30s"}, T0, "window must be between 1m and 24h, got 30s"),
        ({}, T0, "no correlation setting to change"),
        ({"window": "10m"}, datetime(2026, 3, 1), "effective_at must be a timezone-aware UTC"),
        (
            {"window": "10m"},
            datetime(2026, 3, 1, tzinfo=timezone(timedelta(hours=2))),
            "effective_at must be a timezone-aware UTC",
        ),
    ],
)
def test_invalid_settings_store_nothing(
    registry: Registry, changes: dict[str, object], effective_at: datetime, message: str
) -> None:
    registry.create_tenant("acme", "Acme")
    with pytest.raises(ValueError, match=message):
        registry.set_settings("acme", changes, effective_at)
    assert registry.settings_history("acme") == []


# -- the file, the master key and concurrency ------------------------------------------------


def test_file_is_wal_and_migrated(registry: Registry, settings: PlatformSettings) -> None:
    with closing(sqlite3.connect(settings.registry_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert stat.S_IMODE(settings.registry_path.stat().st_mode) == 0o600
    registry.create_tenant("acme", "Acme")
    with Registry.open(settings) as again:  # reopening migrates nothing and keeps data
        assert again.get_tenant("acme").name == "Acme"


def test_data_version_moves_on_any_commit(registry: Registry, settings: PlatformSettings) -> None:
    start = registry.data_version()
    assert registry.data_version() == start  # reads change nothing
    registry.create_tenant("acme", "Acme")
    after_own = registry.data_version()
    assert after_own != start
    registry.get_tenant("acme")
    assert registry.data_version() == after_own
    with Registry.open(settings) as other:  # stands for another process
        other.new_api_key("acme")
    assert registry.data_version() != after_own


def test_master_key_file_is_private(registry: Registry, settings: PlatformSettings) -> None:
    assert not settings.master_key_path.exists()  # created on first use only
    registry.create_tenant("acme", "Acme")
    assert stat.S_IMODE(settings.master_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.master_key_path.parent.stat().st_mode) == 0o700
    assert len(base64.b64decode(settings.master_key_path.read_text())) == 32


def test_readable_master_key_file_is_refused(settings: PlatformSettings) -> None:
    with Registry.open(settings) as registry:
        registry.create_tenant("acme", "Acme")
    os.chmod(settings.master_key_path, 0o644)
    with Registry.open(settings) as registry, pytest.raises(RegistryError, match="chmod 600"):
        registry.auth_snapshot()


def test_master_key_from_settings_and_wrong_key(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    settings = PlatformSettings(data_dir=tmp_path, master_key=SecretStr(key))
    with Registry.open(settings) as registry:
        secret = registry.create_tenant("acme", "Acme").hmac_secret
        assert registry.auth_snapshot().secrets_for_tenant["acme"] == (secret.encode(),)
    assert not settings.master_key_path.exists()

    other = base64.b64encode(os.urandom(32)).decode()
    wrong = PlatformSettings(data_dir=tmp_path, master_key=SecretStr(other))
    with Registry.open(wrong) as registry, pytest.raises(RegistryError) as raised:
        registry.auth_snapshot()
    assert "wrong master key" in str(raised.value)
    assert other not in str(raised.value) and secret not in str(raised.value)


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_master_key_is_refused_without_echo(tmp_path: Path, bad: str) -> None:
    settings = PlatformSettings(data_dir=tmp_path, master_key=SecretStr(bad))
    with Registry.open(settings) as registry, pytest.raises(RegistryError) as raised:
        registry.create_tenant("acme", "Acme")
    assert "AW_MASTER_KEY" in str(raised.value) and bad not in str(raised.value)


def test_concurrent_writers(registry: Registry, settings: PlatformSettings) -> None:
    others = [Registry.open(settings) for _ in range(3)]
    errors: list[BaseException] = []

    def create(owner: Registry, prefix: str) -> None:
        try:
            for n in range(5):
                owner.create_tenant(f"{prefix}{n}", "Tenant")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    owners = [registry, registry, *others]  # shared instance and separate connections
    threads = [threading.Thread(target=create, args=(o, f"t{i}-")) for i, o in enumerate(owners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        other.close()
    assert errors == []
    assert len(registry.list_tenants()) == 25
    assert len(registry.auth_snapshot().tenant_for_key_hash) == 25
