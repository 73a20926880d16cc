"""Immutable records the tenant registry hands out (see `registry.Registry`).

Only `IssuedCredentials` and `AuthSnapshot` hold secret material, and neither shows it in its
repr, so a stray log line or traceback cannot leak it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from warehouse.correlation_settings import CorrelationSettings

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
_LIMIT_MAX = 1_000_000_000


def validate_tenant_id(tenant_id: str) -> str:
    """Return `tenant_id` if it matches TENANT_ID_PATTERN, else raise ValueError."""
    if not isinstance(tenant_id, str) or not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise ValueError(
            f"invalid tenant id {repr(tenant_id)[:80]}: use 1-64 characters from a-z, 0-9, "
            "'-' and '_', starting and ending with a letter or digit"
        )
    return tenant_id


def check_options(rate_limit_per_second: float | None, rate_limit_burst: int | None) -> None:
    """Raise ValueError unless the rate limits are usable (a rate of 0 means unlimited)."""
    rate, burst = rate_limit_per_second, rate_limit_burst
    if rate is not None:
        number = isinstance(rate, int | float) and not isinstance(rate, bool)
        if not number or not math.isfinite(rate) or not 0 <= rate <= _LIMIT_MAX:
            raise ValueError(
                f"rate limit must be between 0 (unlimited) and {_LIMIT_MAX} per second"
            )
    if burst is not None:
        if not isinstance(burst, int) or isinstance(burst, bool) or not 1 <= burst <= _LIMIT_MAX:
            raise ValueError(f"rate burst must be an integer between 1 and {_LIMIT_MAX}")


def hash_api_key(api_key: str) -> str:
    """The stored form of an API key: its SHA-256, hex.

    A fast hash is enough here: keys carry 256 random bits, so nobody can search the key
    space however fast each guess is; slow password hashes (bcrypt, argon2) exist for
    low-entropy human passwords. A fast, unsalted hash also lets the service find a key's
    tenant with one dictionary lookup per request.
    """
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TenantOptions:
    """Per-tenant intake options; a rate of 0 means unlimited."""

    require_signature: bool = True
    rate_limit_per_second: float = 10_000.0
    rate_limit_burst: int = 100_000


@dataclass(frozen=True)
class Tenant:
    """A tenant as operators see it: no secret material, only key prefixes and counts."""

    id: str
    name: str
    created_at: datetime
    require_signature: bool
    rate_limit_per_second: float
    rate_limit_burst: int
    key_prefixes: tuple[str, ...]  # first 12 characters of each active API key
    secret_count: int  # HMAC secrets valid now (two during a rotation's grace period)
    secrets_expire_at: tuple[datetime | None, ...]  # newest first; None = no expiry

    @property
    def options(self) -> TenantOptions:
        return TenantOptions(
            self.require_signature, self.rate_limit_per_second, self.rate_limit_burst
        )


@dataclass(frozen=True)
class IssuedCredentials:
    """A new tenant's credentials, shown once: only hashes and ciphertexts are stored."""

    tenant_id: str
    api_key: str = field(repr=False)
    hmac_secret: str = field(repr=False)


@dataclass(frozen=True)
class SettingsVersion:
    """One version of a tenant's correlation settings; version 0 is the built-in default."""

    tenant_id: str
    version: int
    effective_at: datetime
    created_at: datetime
    settings: CorrelationSettings


@dataclass(frozen=True)
class GrafanaSigning:
    """How a tenant's Grafana signs its webhooks: HMAC-SHA256 hex of the body (or of
    `<timestamp>:<body>` when Grafana sends a timestamp header) in `header`."""

    secret: bytes = field(repr=False)
    header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str | None = None


@dataclass(frozen=True)
class AuthSnapshot:
    """What the authenticator needs, as of `taken_at`; read-only mappings.

    `secrets_for_tenant` holds each tenant's valid HMAC keys, newest first: the UTF-8 bytes
    of the whole secret string, `awh_` prefix included. Rebuild the snapshot when the
    registry's data_version() differs from `data_version` or once `valid_until` has passed.
    """

    tenant_for_key_hash: Mapping[str, str] = field(repr=False)
    secrets_for_tenant: Mapping[str, tuple[bytes, ...]] = field(repr=False)
    options: Mapping[str, TenantOptions]
    data_version: int
    taken_at: datetime
    valid_until: datetime | None
    # Grafana's own webhook HMAC, for tenants that configured one (SOURCES.md).
    grafana_signing: Mapping[str, GrafanaSigning] = field(
        default_factory=lambda: MappingProxyType({}), repr=False)
    # SNS TopicArn (exact, or `arn:aws:sns:<region>:<account>:*`) → the one tenant owning it.
    sns_topics: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        tenant_for_key_hash: Mapping[str, str],
        secrets_for_tenant: Mapping[str, tuple[bytes, ...]],
        options: Mapping[str, TenantOptions],
        *,
        data_version: int,
        taken_at: datetime,
        valid_until: datetime | None,
    ) -> AuthSnapshot:
        """Freeze copies of the given mappings."""
        return cls(
            MappingProxyType(dict(tenant_for_key_hash)),
            MappingProxyType(dict(secrets_for_tenant)),
            MappingProxyType(dict(options)),
            data_version,
            taken_at,
            valid_until,
        )

    def tenant_for_key(self, api_key: str) -> str | None:
        """The tenant of an active API key, or None."""
        return self.tenant_for_key_hash.get(hash_api_key(api_key))
