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
from warehouse.registry_aws import AwsAccountInfo

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
_LIMIT_MAX = 1_000_000_000
# RFC 9110 `token`: what an HTTP field name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# An SNS topic ARN, or `*` for every topic of that account in that region. China regions
# (`cn-…`) live in the `aws-cn` partition, every other commercial region in `aws`.
_SNS_TOPIC_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn):sns:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})"
    r":(?P<account>[0-9]{12}):(?P<topic>\*|[A-Za-z0-9_-]{1,256}(?:\.fifo)?)$"
)


def validate_tenant_id(tenant_id: str) -> str:
    """Return `tenant_id` if it matches TENANT_ID_PATTERN, else raise ValueError."""
    if not isinstance(tenant_id, str) or not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise ValueError(
            f"invalid tenant id {repr(tenant_id)[:80]}: use 1-64 characters from a-z, 0-9, "
            "'-' and '_', starting and ending with a letter or digit"
        )
    return tenant_id


def validate_header_name(name: str, what: str) -> str:
    """Return `name` if it is a valid HTTP header name (RFC 9110 token), else raise ValueError."""
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValueError(
            f"{what} {repr(name)[:80]} is not a valid HTTP header name (1-100 characters: "
            "letters, digits and !#$%&'*+-.^_`|~)"
        )
    return name


def validate_sns_topic(arn: str) -> str:
    """Return `arn` if it is `arn:aws:sns:<region>:<12-digit account>:<topic or *>` (or the
    `aws-cn` partition with a `cn-` region), else raise ValueError."""
    found = _SNS_TOPIC_ARN.fullmatch(arn) if isinstance(arn, str) else None
    china = found is not None and found["region"].startswith("cn-")
    if found is None or china != (found["partition"] == "aws-cn"):
        raise ValueError(
            f"invalid SNS topic ARN {repr(arn)[:120]}: expected "
            "arn:aws:sns:<region>:<12-digit account>:<topic name or *> "
            "(arn:aws-cn:sns:cn-…:… in China)"
        )
    return arn


def sns_account_pattern(arn: str) -> str:
    """The `…:<account>:*` pattern covering a topic ARN (the ARN itself when it is one)."""
    return arn.rpartition(":")[0] + ":*"


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
    # Grafana's own webhook HMAC: the header names when a secret is configured (never the
    # secret itself), else None.
    grafana_signature_header: str | None = None
    grafana_timestamp_header: str | None = None
    sns_topics: tuple[str, ...] = ()  # TopicArns (or account-wide `…:*` patterns), sorted
    aws_accounts: tuple[AwsAccountInfo, ...] = ()  # client accounts (patch compliance)

    @property
    def has_grafana_signing(self) -> bool:
        return self.grafana_signature_header is not None

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
    """How a tenant's Grafana signs its webhooks (grafana/alerting `http/hmac.go`): the hex
    HMAC-SHA256, keyed with the secret, of the raw body, or of `<unix seconds>:<body>` when a
    timestamp header is configured (the same decimal seconds go in `timestamp_header`), sent
    in `header`. The default is Grafana's own (`X-Grafana-Alert-Signature`); many guides name
    `X-Grafana-Alerting-Signature`, so the header is configurable per tenant."""

    secret: bytes = field(repr=False)
    header: str = "X-Grafana-Alert-Signature"
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
        grafana_signing: Mapping[str, GrafanaSigning] | None = None,
        sns_topics: Mapping[str, str] | None = None,
    ) -> AuthSnapshot:
        """Freeze copies of the given mappings."""
        return cls(
            MappingProxyType(dict(tenant_for_key_hash)),
            MappingProxyType(dict(secrets_for_tenant)),
            MappingProxyType(dict(options)),
            data_version,
            taken_at,
            valid_until,
            MappingProxyType(dict(grafana_signing or {})),
            MappingProxyType(dict(sns_topics or {})),
        )

    def tenant_for_key(self, api_key: str) -> str | None:
        """The tenant of an active API key, or None."""
        return self.tenant_for_key_hash.get(hash_api_key(api_key))

    def tenant_for_topic(self, topic_arn: str) -> str | None:
        """The tenant owning an SNS TopicArn: an exact entry first, then its account-wide
        `arn:…:sns:<region>:<account>:*` pattern; None when no tenant allows the topic."""
        if topic_arn.endswith(":*"):  # a pattern is never the TopicArn of a real message
            return None
        exact = self.sns_topics.get(topic_arn)
        return exact if exact is not None else self.sns_topics.get(sns_account_pattern(topic_arn))
