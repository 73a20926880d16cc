"""Grafana Alerting's webhook contact point (`version "1"`) and its optional HMAC signature.

The body is Alertmanager's notification plus Grafana's fields (`orgId`, `state`, `title`,
`message`, and per alert `values`, `valueString`, `silenceURL`, `dashboardURL`, `panelURL`,
`imageURL`); the mapping is Alertmanager's (see `alertmanager`), with timestamps in the Grafana
server's offset (`+02:00`) converted to UTC. Unlike Alertmanager, a re-notification of an
unchanged alert usually differs in `values`/`valueString` (the latest evaluation), so it is a
re-sent firing event of the same alert (R3) rather than an R2 body-hash duplicate.

Signature (grafana/alerting `http/hmac.go`, `HMACRoundTripper.sign`): the hex HMAC-SHA256,
keyed with the secret's UTF-8 bytes, of the raw body, or of `<unix seconds>:<body>` when a
timestamp header is configured (the timestamp is then sent in that header). Grafana's default
header is `X-Grafana-Alert-Signature`; the tenant configures the one it uses. A configured
timestamp must be within ±`TIMESTAMP_TOLERANCE_SECONDS` of our clock; a replay inside that
window carries the same body, so R2 counts it as a duplicate instead of processing it again.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

from service.adapters.alertmanager import normalize_notification
from service.errors import unauthorized
from warehouse.contracts import AlertRecord
from warehouse.registry import AuthSnapshot

SOURCE = "grafana"
VERSION = "1"
TIMESTAMP_TOLERANCE_SECONDS = 300


def normalize(document: Any, received_us: int) -> list[AlertRecord]:
    return normalize_notification(document, received_us, SOURCE, VERSION)


def verify(
    tenant: str, headers: Mapping[str, str], body: bytes, snapshot: AuthSnapshot,
    clock: Callable[[], float] = time.time,
) -> None:
    """Check Grafana's HMAC when the tenant configured a Grafana secret; 401 otherwise."""
    signing = snapshot.grafana_signing.get(tenant)
    if signing is None:
        return
    given = _header(headers, signing.header)
    if given is None:
        raise unauthorized()
    message = body
    if signing.timestamp_header:
        stamp = _header(headers, signing.timestamp_header)
        if stamp is None or not _fresh(stamp, clock()):
            raise unauthorized()
        message = stamp.encode("ascii") + b":" + body
    try:
        sent = bytes.fromhex(given.strip())
    except ValueError:
        raise unauthorized() from None
    expected = hmac.new(signing.secret, message, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, sent):
        raise unauthorized()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (Starlette's `Headers` or a plain mapping)."""
    value = headers.get(name.lower())
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def _fresh(stamp: str, now: float) -> bool:
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return False
    return abs(now - int(stamp)) <= TIMESTAMP_TOLERANCE_SECONDS
