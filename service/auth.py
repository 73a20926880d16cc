"""Who is sending: API key → tenant, HMAC-SHA256 request signatures, replay protection.

The tenant always comes from the credential. Keys are looked up by their sha256 in an
in-memory snapshot of the registry, rebuilt (checked at most once a second) when the registry
changed, when a rotated secret's grace ended, and at least once a minute.

Signature: `X-Signature: sha256=<hex of HMAC-SHA256(secret, "<X-Timestamp>.<raw body>")>`,
timestamp in unix seconds within ±tolerance, constant-time comparison against every active
secret (two during a rotation), each accepted signature remembered for twice the tolerance
so a replay gets 409.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from service.errors import IngestError, unauthorized
from warehouse.registry import AuthSnapshot, Registry, RegistryError, TenantOptions

log = logging.getLogger(__name__)

_REFRESH_CHECK_SECONDS = 1.0
_REFRESH_MAX_AGE_SECONDS = 60.0


@dataclass(frozen=True)
class Credential:
    """An API key as presented, and the tenant id of a basic-auth user name, if any."""

    api_key: str | None
    basic_user: str | None = None


def credential_from_headers(headers: Mapping[str, str]) -> Credential:
    """`Authorization: Bearer <key>`, `Authorization: Basic <tenant:key>` (Alertmanager,
    EventBridge, SNS subscription URLs; the password may be non-ASCII UTF-8) or `X-API-Key`."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return Credential(value.strip())
        if scheme.lower() == "basic" and value.strip():
            return _basic(value.strip())
    key = headers.get("x-api-key")
    return Credential(key.strip() if key else None)


def _basic(value: str) -> Credential:
    try:
        decoded = base64.b64decode(value.encode("latin-1"), validate=True).decode("utf-8")
    except (ValueError, UnicodeError):
        return Credential(None)
    user, sep, password = decoded.partition(":")
    if not sep or not password:
        return Credential(None)
    return Credential(password, basic_user=user)


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    return credential_from_headers(headers).api_key


class ReplayCache:
    """Signatures seen recently, per tenant, forgotten after `ttl` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._seen: dict[bytes, float] = {}
        self._order: deque[tuple[float, bytes]] = deque()

    def check_and_add(self, tenant_id: str, signature: bytes, now: float) -> bool:
        """True when new (and now remembered); False for a replay."""
        while self._order and self._order[0][0] <= now:
            _, old = self._order.popleft()
            self._seen.pop(old, None)
        key = hashlib.blake2b(tenant_id.encode() + b"\0" + signature, digest_size=16).digest()
        if key in self._seen:
            return False
        self._seen[key] = now + self.ttl
        self._order.append((now + self.ttl, key))
        return True

    def forget(self, tenant_id: str, signature: bytes) -> None:
        """Let a signed request be retried after we failed it (503)."""
        key = hashlib.blake2b(tenant_id.encode() + b"\0" + signature, digest_size=16).digest()
        self._seen.pop(key, None)


class Authenticator:
    """Resolves credentials against a cached registry snapshot."""

    def __init__(
        self, registry: Registry, tolerance_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = registry
        self.tolerance = tolerance_seconds
        self.clock = clock
        self.replays = ReplayCache(ttl=2 * tolerance_seconds)
        self._lock = threading.Lock()
        self._snapshot: AuthSnapshot = registry.auth_snapshot(self._now())
        self._checked = self._loaded = time.monotonic()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def snapshot(self) -> AuthSnapshot:
        mono = time.monotonic()
        if mono - self._checked >= _REFRESH_CHECK_SECONDS:
            with self._lock:
                self._checked = mono
                try:
                    self._refresh(mono)
                except RegistryError as exc:
                    # A busy or briefly unreadable registry must not fail intake: keep
                    # serving the last good snapshot and try again on the next check.
                    log.warning("registry refresh failed, keeping the last snapshot: %s", exc)
        return self._snapshot

    def _refresh(self, mono: float) -> None:
        current = self._snapshot
        expired = current.valid_until is not None and self._now() >= current.valid_until
        if (
            expired
            or self.registry.data_version() != current.data_version
            or mono - self._loaded >= _REFRESH_MAX_AGE_SECONDS
        ):
            self._snapshot = self.registry.auth_snapshot(self._now())
            self._loaded = mono

    def tenant_for_key(self, api_key: str | None) -> str | None:
        if not api_key:
            return None
        tenant = self.snapshot().tenant_for_key(api_key)
        if tenant is None and self.registry.data_version() != self._snapshot.data_version:
            # A key created a moment ago: look again now rather than after the next periodic
            # check. `data_version` is one cheap PRAGMA, so a flood of bad keys costs little.
            with self._lock:
                try:
                    self._refresh(time.monotonic())
                except RegistryError as exc:
                    log.warning("registry refresh failed: %s", exc)
            tenant = self._snapshot.tenant_for_key(api_key)
        return tenant

    def options(self, tenant_id: str) -> TenantOptions:
        options = self.snapshot().options.get(tenant_id)
        if options is None:  # the tenant vanished between two snapshots
            raise unauthorized()
        return options

    def check_timestamp(self, timestamp: str | None) -> int | None:
        """Validate `X-Timestamp` before any key lookup, so its answer leaks nothing."""
        if timestamp is None:
            return None
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise IngestError(401, "bad_timestamp", "X-Timestamp must be unix seconds")
        value = int(timestamp)
        if abs(self.clock() - value) > self.tolerance:
            raise IngestError(
                401, "stale_timestamp",
                f"X-Timestamp is more than {self.tolerance} s away from the server clock",
            )
        return value

    def verify_signature(
        self, tenant_id: str, timestamp: str | None, signature: str | None, body: bytes
    ) -> bytes:
        """Check the HMAC over `<timestamp>.<body>` against every active secret."""
        if timestamp is None or signature is None or not signature.startswith("sha256="):
            raise unauthorized()
        try:
            given = bytes.fromhex(signature[len("sha256="):])
        except ValueError:
            raise unauthorized() from None
        message = timestamp.encode() + b"." + body
        matched = False
        for secret in self.snapshot().secrets_for_tenant.get(tenant_id, ()):
            expected = hmac.new(secret, message, hashlib.sha256).digest()
            # Compare against every secret, constant time each: no early exit on a match.
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise unauthorized()
        return given
