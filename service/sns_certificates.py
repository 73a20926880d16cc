"""Where SNS signing certificates may come from, and getting them.

A `SigningCertURL` (and a `SubscribeURL`) is trusted only if it is exactly
`https://sns.<region>.amazonaws.com/…` (`.amazonaws.com.cn` for China regions): no user
info, no port, no look-alike suffix, a plain `.pem` file for certificates. That is checked
on the parsed URL before anything is fetched. A certificate pinned in `AW_SNS_CERT_DIR`
under the URL's basename is used without fetching; otherwise it is fetched (3 s timeout,
64 KiB cap, no redirects) and its public key cached in memory, least recently used first out.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import SplitResult, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from service.errors import IngestError, unavailable

Fetch = Callable[[str], bytes]

FETCH_TIMEOUT_SECONDS = 3.0
MAX_CERTIFICATE_BYTES = 64 * 1024
CACHED_CERTIFICATES = 64
RETRY_AFTER_SECONDS = 5

_SNS_HOST = re.compile(
    r"^sns\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\.amazonaws\.com(?P<china>\.cn)?$"
)
# Each segment starts with a letter, digit, '_' or '-': no '.' or '..' segments.
_PEM_PATH = re.compile(r"^(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)+\.pem$")


class SnsUnreachable(Exception):
    """SNS could not be reached now for a certificate or a confirmation (retryable: 503)."""


def sns_url(url: object, *, certificate: bool) -> SplitResult | None:
    """The parsed URL if it is `https://sns.<region>.amazonaws.com[.cn]/…` exactly (no user,
    no port), with a `.pem` path for a certificate; None otherwise."""
    if not isinstance(url, str) or len(url) > 2048 or not url.isascii() or not url.isprintable():
        return None
    if " " in url or "\\" in url:
        return None
    parts = urlsplit(url)
    host = _SNS_HOST.fullmatch(parts.netloc)
    if parts.scheme != "https" or host is None or parts.fragment:
        return None
    if host["region"].startswith("cn-") != (host["china"] is not None):
        return None  # China regions are served from .amazonaws.com.cn, and only they are
    if certificate and (parts.query or not _PEM_PATH.fullmatch(parts.path)):
        return None
    return parts


def fetch_certificate(url: str) -> bytes:
    """GET a signing certificate (the URL already checked), short timeout, size-capped."""
    try:
        with httpx.stream("GET", url, timeout=FETCH_TIMEOUT_SECONDS,
                          follow_redirects=False) as response:
            if response.status_code != 200:
                raise SnsUnreachable(f"HTTP {response.status_code}")
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_CERTIFICATE_BYTES:
                    raise SnsUnreachable("certificate too large")
            return data
    except httpx.HTTPError as exc:
        raise SnsUnreachable(type(exc).__name__) from None


class CertificateCache:
    """Public keys of fetched certificates by URL, least recently used dropped first."""

    def __init__(self, size: int = CACHED_CERTIFICATES) -> None:
        self._size = size
        self._keys: OrderedDict[str, RSAPublicKey] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> RSAPublicKey | None:
        with self._lock:
            key = self._keys.get(url)
            if key is not None:
                self._keys.move_to_end(url)
            return key

    def put(self, url: str, key: RSAPublicKey) -> None:
        with self._lock:
            self._keys[url] = key
            self._keys.move_to_end(url)
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


CERTIFICATES = CertificateCache()


def certificate_key(url: str, cert_dir: Path | None, fetch: Fetch) -> RSAPublicKey:
    """The pinned certificate's key if `cert_dir` has the URL's basename, else the cached or
    freshly fetched one (cached only once it parsed)."""
    name = PurePosixPath(urlsplit(url).path).name  # a plain file name: _PEM_PATH checked it
    pinned = None if cert_dir is None else cert_dir / name
    if pinned is not None and pinned.is_file():
        return _public_key(pinned.read_bytes())
    cached = CERTIFICATES.get(url)
    if cached is not None:
        return cached
    try:
        key = _public_key(fetch(url))
    except SnsUnreachable as exc:
        raise unavailable(
            f"cannot fetch the SNS signing certificate now ({exc})", RETRY_AFTER_SECONDS
        ) from None
    CERTIFICATES.put(url, key)
    return key


def _public_key(pem: bytes) -> RSAPublicKey:
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        raise IngestError(401, "sns_bad_certificate", "the SNS signing certificate is not a "
                          "PEM X.509 certificate") from None
    if not isinstance(key, RSAPublicKey):
        raise IngestError(401, "sns_bad_certificate", "the SNS signing key is not RSA")
    return key
