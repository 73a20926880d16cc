"""boto3 clients for the exports' AWS calls: explicit timeouts, retries on throttling and 5xx
only (botocore's standard retry mode), the standard credential chain and endpoint variables
(`AWS_ENDPOINT_URL_QUICKSIGHT`, `AWS_ENDPOINT_URL_GLUE` point them at another endpoint)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10,
                read_timeout=60)


def client(service: str, region: str | None = None) -> Any:
    return boto3.client(service, region_name=region, config=CONFIG)
