"""Signing requests the way a tenant's sender does (the README's scheme)."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    tenant_id: str
    api_key: str
    hmac_secret: str


def signed_headers(
    cred: Credentials, body: bytes, timestamp: int | None = None, secret: str | None = None
) -> dict[str, str]:
    """Headers for a signed JSON POST: API key, X-Timestamp, X-Signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = (secret or cred.hmac_secret).encode()
    digest = hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Authorization": f"Bearer {cred.api_key}",
        "X-Timestamp": ts,
        "X-Signature": f"sha256={digest}",
        "Content-Type": "application/json",
    }
