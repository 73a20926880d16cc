"""Credentials of the tenant registry: issuing API keys and secrets, opening sealed secrets,
checking Grafana signing settings and SNS topic ownership, and the registry's errors.

Split from `warehouse.registry` (the `Registry` class) to keep each module readable; the
registry re-exports what callers use.
"""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime, timedelta

from warehouse import registry_store as store
from warehouse.registry_records import hash_api_key, sns_account_pattern, validate_header_name
from warehouse.secret_box import SecretBox, SecretBoxError

API_KEY_PREFIX = "awk_"
HMAC_SECRET_PREFIX = "awh_"
KEY_PREFIX_CHARS = 12
DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=30)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GRAFANA_SIGNATURE_HEADER = "X-Grafana-Alert-Signature"  # Grafana's own default
MAX_GRAFANA_SECRET_BYTES = 4096


class RegistryError(Exception):
    """A registry request that cannot be done as asked (the message says why)."""


class TenantNotFound(RegistryError):
    """No tenant has this id."""


class RegistryUnavailable(RegistryError):
    """The registry file stayed locked past the busy timeout or cannot be used; retry later."""


def issue_api_key(conn: sqlite3.Connection, tenant_id: str, now: datetime) -> str:
    # Only the hash is stored (see hash_api_key for why a fast hash is right here).
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    store.insert_api_key(conn, tenant_id, hash_api_key(api_key), api_key[:KEY_PREFIX_CHARS], now)
    return api_key


def issue_secret(conn: sqlite3.Connection, box: SecretBox, tenant_id: str, now: datetime) -> str:
    # The tenant id is the associated data: a ciphertext copied into another tenant's row
    # fails to decrypt instead of authenticating that tenant.
    hmac_secret = HMAC_SECRET_PREFIX + secrets.token_urlsafe(32)
    store.insert_secret(conn, tenant_id, box.seal(hmac_secret.encode(), tenant_id.encode()), now)
    return hmac_secret


def open_secret(
    box: SecretBox, ciphertext: bytes, tenant_id: str, associated: bytes | None = None
) -> bytes:
    try:
        return box.open(ciphertext, tenant_id.encode() if associated is None else associated)
    except SecretBoxError as exc:
        raise RegistryError(f"tenant {tenant_id!r}: {exc}") from None


def grafana_associated(tenant_id: str) -> bytes:
    # Bound to the tenant and to its purpose: an HMAC-secret ciphertext (associated data: the
    # bare tenant id, which never holds a NUL) copied into this table does not decrypt.
    return b"grafana-signing\0" + tenant_id.encode()


def check_grafana_signing(
    secret: str, header: str, timestamp_header: str | None
) -> tuple[bytes, tuple[str, str | None]]:
    """(secret bytes, (header, timestamp header)), or ValueError saying what is wrong."""
    validate_header_name(header, "Grafana signature header")
    if timestamp_header is not None:
        validate_header_name(timestamp_header, "Grafana timestamp header")
        if timestamp_header.lower() == header.lower():
            raise ValueError("the Grafana signature and timestamp headers must differ")
    return check_grafana_secret(secret), (header, timestamp_header)


def check_grafana_secret(secret: str) -> bytes:
    # Never echo the secret: these messages describe it only by its shape.
    if not isinstance(secret, str) or not secret.strip():
        raise ValueError("the Grafana HMAC secret is empty")
    if not secret.isprintable():
        raise ValueError("the Grafana HMAC secret must be printable text (no control characters)")
    plain = secret.encode("utf-8")
    if len(plain) > MAX_GRAFANA_SECRET_BYTES:
        raise ValueError(f"the Grafana HMAC secret is longer than {MAX_GRAFANA_SECRET_BYTES} bytes")
    return plain


def claim_sns_topic(conn: sqlite3.Connection, tenant_id: str, arn: str) -> bool:
    """True when `arn` is free for this tenant; False when it already has it; RegistryError
    when it, or a pattern covering it, or an exact topic it would cover, is another's."""
    pattern = sns_account_pattern(arn)
    owners = store.sns_topic_owners(conn, (arn, pattern))
    owner = owners.get(arn)
    if owner == tenant_id:
        return False
    if owner is not None:
        raise RegistryError(f"SNS topic {arn!r} already belongs to tenant {owner!r}")
    covering = owners.get(pattern)
    if covering is not None and covering != tenant_id:
        raise RegistryError(
            f"SNS topic {arn!r} is covered by {pattern!r}, which belongs to tenant {covering!r}"
        )
    if arn == pattern:
        for topic, other in sorted(store.sns_topics_under(conn, pattern).items()):
            if other != tenant_id:
                raise RegistryError(
                    f"SNS pattern {arn!r} would cover {topic!r}, which belongs to tenant {other!r}"
                )
    return True
