"""Lake URIs: `file:///abs/path` (or a plain path) or `s3://bucket/prefix`.

Parsing needs no pyarrow, so a process that only checks the configuration (the ingest
service at start) does not pay for importing it.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass(frozen=True)
class LakeLocation:
    scheme: str  # "file" or "s3"
    root: str  # absolute local path, or "bucket/prefix"


def parse_lake_uri(uri: str) -> LakeLocation:
    """Validate a lake URI; ValueError says what is wrong with it."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return LakeLocation("file", os.path.abspath(parsed.path if parsed.scheme else uri))
    if parsed.scheme != "s3":
        raise ValueError(f"unsupported lake URI scheme {parsed.scheme!r} (use file:// or s3://)")
    if not parsed.netloc:
        raise ValueError("s3 lake URI needs a bucket: s3://bucket/prefix")
    return LakeLocation("s3", posixpath.join(parsed.netloc, parsed.path.strip("/")).rstrip("/"))
