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
from warehouse.registry_store import MIGRATIONS

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
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 3
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


def test_version_1_file_is_migrated_with_its_data(settings: PlatformSettings) -> None:
    # A registry written before Grafana signing and SNS topics existed (user_version 1).
    settings.registry_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(settings.registry_path)) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO tenants (id, name, created_at) VALUES ('old', 'Old', ?)",
                     ("2026-01-01T00:00:00.000000Z",))
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    with Registry.open(settings) as registry:
        tenant = registry.add_sns_topic("old", "arn:aws:sns:us-east-1:123456789012:alarms")
        assert tenant.sns_topics == ("arn:aws:sns:us-east-1:123456789012:alarms",)
    with closing(sqlite3.connect(settings.registry_path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


# -- Grafana signing -------------------------------------------------------------------------

GRAFANA_SECRET = "grafana-s3cret-Xq7pV2mZ"


def test_grafana_signing_is_sealed_and_in_the_snapshot(
    registry: Registry, settings: PlatformSettings
) -> None:
    registry.create_tenant("acme", "Acme")
    registry.create_tenant("beta", "Beta")
    tenant = registry.set_grafana_signing(
        "acme", GRAFANA_SECRET, "X-Grafana-Alert-Signature", "X-Grafana-Alert-Timestamp"
    )
    assert tenant.has_grafana_signing
    assert tenant.grafana_signature_header == "X-Grafana-Alert-Signature"
    assert tenant.grafana_timestamp_header == "X-Grafana-Alert-Timestamp"
    assert GRAFANA_SECRET not in repr(tenant)
    snapshot = registry.auth_snapshot()
    signing = snapshot.grafana_signing["acme"]
    assert signing.secret == GRAFANA_SECRET.encode()
    assert (signing.header, signing.timestamp_header) == (
        "X-Grafana-Alert-Signature", "X-Grafana-Alert-Timestamp"
    )
    assert "beta" not in snapshot.grafana_signing
    assert GRAFANA_SECRET not in repr(snapshot) and GRAFANA_SECRET not in repr(signing)
    assert GRAFANA_SECRET.encode() not in _registry_bytes(settings)
    registry.close()
    assert GRAFANA_SECRET.encode() not in _registry_bytes(settings)  # after checkpoint too


def test_grafana_signing_defaults_replacement_and_removal(registry: Registry) -> None:
    registry.create_tenant("acme", "Acme")
    assert not registry.get_tenant("acme").has_grafana_signing
    registry.set_grafana_signing("acme", "first")
    signing = registry.auth_snapshot().grafana_signing["acme"]
    assert (signing.secret, signing.header, signing.timestamp_header) == (
        b"first", "X-Grafana-Alert-Signature", None
    )
    registry.set_grafana_signing("acme", "second", "X-Sig")
    assert registry.auth_snapshot().grafana_signing["acme"].secret == b"second"
    tenant = registry.set_grafana_signing("acme", None)
    assert not tenant.has_grafana_signing and tenant.grafana_signature_header is None
    assert "acme" not in registry.auth_snapshot().grafana_signing
    registry.set_grafana_signing("acme", None)  # removing what is not there is no error


@pytest.mark.parametrize(
    ("secret", "header", "timestamp_header", "message"),
    [
        ("", "X-Sig", None, "secret is empty"),
        ("   ", "X-Sig", None, "secret is empty"),
        ("line\nbreak", "X-Sig", None, "printable"),
        ("x" * 4097, "X-Sig", None, "longer than 4096 bytes"),
        ("ok", "X Sig", None, "not a valid HTTP header name"),
        ("ok", "X-Sig:", None, "not a valid HTTP header name"),
        ("ok", "", None, "not a valid HTTP header name"),
        ("ok", "X-Sig", "X-Time\r\nInjected: 1", "not a valid HTTP header name"),
        ("ok", "X-Sig", "x-sig", "must differ"),
    ],
)
def test_bad_grafana_signing_is_refused_without_echo(
    registry: Registry, secret: str, header: str, timestamp_header: str | None, message: str
) -> None:
    registry.create_tenant("acme", "Acme")
    with pytest.raises(ValueError, match=message) as raised:
        registry.set_grafana_signing("acme", secret, header, timestamp_header)
    if secret.strip():
        assert secret not in str(raised.value)
    assert "acme" not in registry.auth_snapshot().grafana_signing


def test_grafana_ciphertext_is_bound_to_tenant_and_purpose(
    registry: Registry, settings: PlatformSettings
) -> None:
    registry.create_tenant("acme", "Acme")
    registry.set_grafana_signing("acme", GRAFANA_SECRET)
    with closing(sqlite3.connect(settings.registry_path)) as conn, conn:
        # The tenant's own HMAC-secret ciphertext placed where the Grafana secret belongs.
        conn.execute(
            "UPDATE grafana_signing SET ciphertext ="
            " (SELECT ciphertext FROM hmac_secrets WHERE tenant_id = 'acme')"
        )
    with pytest.raises(RegistryError, match="tenant 'acme': cannot decrypt"):
        registry.auth_snapshot()


# -- SNS topics ------------------------------------------------------------------------------

ACCOUNT = "arn:aws:sns:us-east-1:123456789012:"


@pytest.mark.parametrize(
    "arn",
    [
        ACCOUNT + "alarms",
        ACCOUNT + "*",
        ACCOUNT + "My_Topic-2",
        ACCOUNT + "orders.fifo",
        "arn:aws:sns:eu-central-2:000000000000:x",
        "arn:aws:sns:us-gov-west-1:123456789012:x",  # region shape only; partition is aws
        "arn:aws-cn:sns:cn-north-1:123456789012:alarms",
        "arn:aws-cn:sns:cn-northwest-1:123456789012:*",
    ],
)
def test_valid_sns_topics(registry: Registry, arn: str) -> None:
    registry.create_tenant("acme", "Acme")
    assert registry.add_sns_topic("acme", arn).sns_topics == (arn,)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:us-east-1:12345678901:alarms",  # 11-digit account
        "arn:aws:sns:us-east-1:1234567890123:alarms",  # 13-digit account
        "arn:aws:sqs:us-east-1:123456789012:alarms",  # not SNS
        "arn:aws:sns:us-east-1:123456789012:",  # no topic
        "arn:aws:sns:us-east-1:123456789012:al*",  # a wildcard is the whole topic or nothing
        "arn:aws:sns:us-east-1:123456789012:a:b",
        "arn:aws:sns:us-east-1:*:alarms",  # every account: never
        "arn:aws:sns:*:123456789012:alarms",
        "arn:aws:sns::123456789012:alarms",
        "arn:aws:sns:cn-north-1:123456789012:alarms",  # China needs the aws-cn partition
        "arn:aws-cn:sns:us-east-1:123456789012:alarms",  # and aws-cn needs a China region
        "arn:aws-us-gov:sns:us-gov-west-1:123456789012:x",
        "arn:aws:sns:us-east-1:123456789012:alarms\n",
        " arn:aws:sns:us-east-1:123456789012:alarms",
        "arn:aws:sns:us-east-1:123456789012:" + "a" * 257,
        "",
    ],
)
def test_invalid_sns_topics_are_refused(registry: Registry, arn: str) -> None:
    registry.create_tenant("acme", "Acme")
    with pytest.raises(ValueError, match="invalid SNS topic ARN"):
        registry.add_sns_topic("acme", arn)
    assert registry.get_tenant("acme").sns_topics == ()


def test_sns_topics_resolve_exact_first_then_account_pattern(registry: Registry) -> None:
    for tenant_id in ("acme", "beta"):
        registry.create_tenant(tenant_id, tenant_id.title())
    registry.add_sns_topic("acme", ACCOUNT + "*")
    registry.add_sns_topic("acme", ACCOUNT + "special")  # own pattern and own exact: fine
    registry.add_sns_topic("beta", "arn:aws:sns:eu-west-1:123456789012:alarms")
    registry.add_sns_topic("beta", "arn:aws:sns:us-east-1:999999999999:*")
    snapshot = registry.auth_snapshot()
    assert dict(snapshot.sns_topics) == {
        ACCOUNT + "*": "acme",
        ACCOUNT + "special": "acme",
        "arn:aws:sns:eu-west-1:123456789012:alarms": "beta",
        "arn:aws:sns:us-east-1:999999999999:*": "beta",
    }
    assert snapshot.tenant_for_topic(ACCOUNT + "special") == "acme"
    assert snapshot.tenant_for_topic(ACCOUNT + "anything") == "acme"  # the pattern
    assert snapshot.tenant_for_topic("arn:aws:sns:eu-west-1:123456789012:alarms") == "beta"
    assert snapshot.tenant_for_topic("arn:aws:sns:eu-west-1:123456789012:other") is None
    assert snapshot.tenant_for_topic("arn:aws:sns:us-east-1:999999999999:x") == "beta"
    assert snapshot.tenant_for_topic(ACCOUNT + "*") is None  # never a message's TopicArn
    assert registry.get_tenant("acme").sns_topics == (ACCOUNT + "*", ACCOUNT + "special")


def test_a_topic_belongs_to_one_tenant_only(registry: Registry) -> None:
    for tenant_id in ("acme", "beta"):
        registry.create_tenant(tenant_id, tenant_id.title())
    registry.add_sns_topic("acme", ACCOUNT + "alarms")
    registry.add_sns_topic("acme", ACCOUNT + "alarms")  # again: no change, no error
    assert registry.get_tenant("acme").sns_topics == (ACCOUNT + "alarms",)
    with pytest.raises(RegistryError, match="already belongs to tenant 'acme'") as raised:
        registry.add_sns_topic("beta", ACCOUNT + "alarms")
    assert "awh_" not in str(raised.value) and "awk_" not in str(raised.value)
    # Overlaps across tenants are refused both ways round.
    with pytest.raises(RegistryError, match="would cover .*alarms.*tenant 'acme'"):
        registry.add_sns_topic("beta", ACCOUNT + "*")
    registry.add_sns_topic("beta", "arn:aws:sns:us-west-2:123456789012:*")
    with pytest.raises(RegistryError, match="is covered by .*us-west-2.*tenant 'beta'"):
        registry.add_sns_topic("acme", "arn:aws:sns:us-west-2:123456789012:alarms")
    assert registry.get_tenant("beta").sns_topics == ("arn:aws:sns:us-west-2:123456789012:*",)


def test_sns_topic_changes_are_all_or_nothing(registry: Registry) -> None:
    for tenant_id in ("acme", "beta"):
        registry.create_tenant(tenant_id, tenant_id.title())
    registry.add_sns_topic("beta", ACCOUNT + "taken")
    with pytest.raises(RegistryError, match="already belongs"):
        registry.change_sns_topics("acme", add=[ACCOUNT + "mine", ACCOUNT + "taken"])
    assert registry.get_tenant("acme").sns_topics == ()
    # Remove before add: swapping a pattern for an exact topic works in one call.
    registry.add_sns_topic("acme", "arn:aws:sns:eu-west-1:123456789012:*")
    tenant = registry.change_sns_topics(
        "acme",
        add=["arn:aws:sns:eu-west-1:123456789012:one"],
        remove=["arn:aws:sns:eu-west-1:123456789012:*"],
    )
    assert tenant.sns_topics == ("arn:aws:sns:eu-west-1:123456789012:one",)


def test_remove_sns_topic(registry: Registry) -> None:
    for tenant_id in ("acme", "beta"):
        registry.create_tenant(tenant_id, tenant_id.title())
    registry.add_sns_topic("acme", ACCOUNT + "alarms")
    with pytest.raises(RegistryError, match="tenant 'beta' has no SNS topic"):
        registry.remove_sns_topic("beta", ACCOUNT + "alarms")  # another tenant's: out of reach
    assert registry.remove_sns_topic("acme", ACCOUNT + "alarms").sns_topics == ()
    assert registry.auth_snapshot().sns_topics == {}
    registry.add_sns_topic("beta", ACCOUNT + "alarms")  # free again
    assert registry.auth_snapshot().tenant_for_topic(ACCOUNT + "alarms") == "beta"


def test_sns_topics_of_an_unknown_tenant(registry: Registry) -> None:
    with pytest.raises(TenantNotFound):
        registry.add_sns_topic("ghost", ACCOUNT + "x")
    with pytest.raises(TenantNotFound):
        registry.set_grafana_signing("ghost", "s")
