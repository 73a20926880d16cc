"""Source adapters: one module per source, each exposing `SOURCE` and
`normalize(document, received_us) -> list[AlertRecord]`, and the webhook routes that use them.

`WEBHOOKS` maps the `{source}` segment of `POST /v1/webhooks/{source}` to how that source is
authenticated and parsed (SOURCES.md "Authentication per source"):

- `signed`: API key and our HMAC signature (generic, Zabbix);
- `key`: API key only, as `Authorization: Bearer`, `X-API-Key` or basic auth with the tenant
  id as user (tools that cannot sign: Alertmanager, Grafana, Datadog, EventBridge);
- `sns`: the SNS message signature and the tenant's topic allowlist (CloudWatch via SNS).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.adapters import (
    alertmanager,
    cloudwatch,
    cloudwatch_sns,
    datadog,
    generic,
    grafana,
    zabbix,
)
from service.adapters.common import AdapterError
from warehouse.contracts import AlertRecord
from warehouse.registry import AuthSnapshot

__all__ = ["WEBHOOKS", "AdapterError", "Webhook"]

Normalize = Callable[[Any, int], list[AlertRecord]]
Verify = Callable[[str, Mapping[str, str], bytes, AuthSnapshot], None]


@dataclass(frozen=True)
class Webhook:
    """How one route authenticates, which bodies it takes, and which adapter reads them."""

    route: str
    normalize: Normalize
    auth: Literal["signed", "key", "sns"]
    media_types: tuple[str, ...] = ("application/json",)
    # Datadog can post `application/x-www-form-urlencoded`: the form becomes a dict.
    forms: bool = False
    # A source-native signature checked after the API key (Grafana's optional HMAC):
    # (tenant, headers, raw body, auth snapshot) → None, or raises IngestError.
    verify: Verify | None = None


WEBHOOKS: dict[str, Webhook] = {
    "generic": Webhook("generic", generic.normalize, "signed"),
    "datadog": Webhook("datadog", datadog.normalize, "key", forms=True),
    "zabbix": Webhook("zabbix", zabbix.normalize, "signed"),
    "cloudwatch-eventbridge": Webhook("cloudwatch-eventbridge", cloudwatch.normalize, "key"),
    "alertmanager": Webhook("alertmanager", alertmanager.normalize, "key"),
    "grafana": Webhook("grafana", grafana.normalize, "key", verify=grafana.verify),
    # Authenticated by `service.sns.authenticate_sns`, never by an API key alone; `normalize`
    # reads an envelope that function has already verified.
    "cloudwatch-sns": Webhook(
        "cloudwatch-sns", cloudwatch_sns.normalize, "sns", media_types=cloudwatch_sns.MEDIA_TYPES
    ),
}
