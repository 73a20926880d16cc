"""What `aw tenants …` prints: JSON documents and text lines for tenants and settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from warehouse.correlation_settings import CorrelationSettings
from warehouse.registry import SettingsVersion, Tenant


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, as every command prints times."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def emit(as_json: bool, document: object, lines: list[str]) -> None:
    """Print the JSON document or the text lines, as asked."""
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        for line in lines:
            click.echo(line)


def tenant_document(tenant: Tenant) -> dict[str, object]:
    """A tenant as JSON: options, active key prefixes and secret expiries, never secrets."""
    return {
        "tenant_id": tenant.id,
        "name": tenant.name,
        "created_at": iso(tenant.created_at),
        "require_signature": tenant.require_signature,
        "rate_limit_per_second": tenant.rate_limit_per_second,
        "rate_limit_burst": tenant.rate_limit_burst,
        "key_prefixes": list(tenant.key_prefixes),
        "secret_count": tenant.secret_count,
        "secrets_expire_at": [iso(at) for at in tenant.secrets_expire_at],
        "grafana_hmac": {
            "configured": tenant.has_grafana_signing,
            "signature_header": tenant.grafana_signature_header,
            "timestamp_header": tenant.grafana_timestamp_header,
        },
        "sns_topics": list(tenant.sns_topics),
        "aws_accounts": [
            {"account_id": a.account_id, "role_arn": a.role_arn,
             "external_id": a.external_id_hint, "regions": list(a.regions)}
            for a in tenant.aws_accounts],
    }


def version_document(version: SettingsVersion) -> dict[str, object]:
    """A settings version as JSON, durations as strings such as "15m"."""
    return {
        "version": version.version,
        "effective_at": iso(version.effective_at),
        "created_at": iso(version.created_at),
        "settings": version.settings.to_dict(),
    }


def options_line(tenant: Tenant) -> str:
    """The intake options in one line."""
    rate = (
        "unlimited"
        if tenant.rate_limit_per_second == 0
        else f"{tenant.rate_limit_per_second:g} events/s, burst {tenant.rate_limit_burst}"
    )
    signature = "required" if tenant.require_signature else "optional"
    return f"  signature: {signature}; rate limit: {rate}"


def source_auth_lines(tenant: Tenant) -> list[str]:
    """Grafana's HMAC (whether configured, never the secret) and the SNS topics."""
    if tenant.has_grafana_signing:
        grafana = f"configured, header {tenant.grafana_signature_header}"
        if tenant.grafana_timestamp_header:
            grafana += f", timestamp header {tenant.grafana_timestamp_header}"
    else:
        grafana = "not configured"
    return [
        f"  Grafana HMAC: {grafana}",
        f"  SNS topics: {', '.join(tenant.sns_topics) or 'none'}",
    ]


def aws_lines(tenant: Tenant) -> list[str]:
    """The client AWS accounts, External IDs masked."""
    if not tenant.aws_accounts:
        return ["  AWS accounts: none"]
    lines = ["  AWS accounts:"]
    for a in tenant.aws_accounts:
        how = (f"role {a.role_arn}, External ID {a.external_id_hint}, "
               f"regions {','.join(a.regions)}" if a.role_arn
               else "Resource Data Sync only")
        lines.append(f"    {a.account_id}: {how}")
    return lines


def settings_summary(settings: CorrelationSettings) -> str:
    """The fields that differ from the defaults, as name=value."""
    current, defaults = settings.to_dict(), CorrelationSettings().to_dict()
    changed = [
        f"{name}={json.dumps(value)}" for name, value in current.items() if value != defaults[name]
    ]
    return ", ".join(changed) or "defaults"


def show_lines(
    tenant: Tenant, current: SettingsVersion, history: list[SettingsVersion]
) -> list[str]:
    """The text form of `aw tenants show`."""
    lines = [
        f"Tenant {tenant.id} ({tenant.name}), created {iso(tenant.created_at)}",
        options_line(tenant),
        f"  API keys: {', '.join(tenant.key_prefixes) or 'none active'}",
        f"  HMAC secrets valid: {tenant.secret_count}{_expiries(tenant)}",
        *source_auth_lines(tenant),
        *aws_lines(tenant),
        f"Settings in force: version {current.version}, since {iso(current.effective_at)}",
    ]
    lines += [
        f"  {name}: {json.dumps(value)}" for name, value in current.settings.to_dict().items()
    ]
    lines.append("History:" if history else "History: none (version 0, the defaults, rules)")
    lines += [
        f"  v{v.version} effective {iso(v.effective_at)} (set {iso(v.created_at)}): "
        f"{settings_summary(v.settings)}"
        for v in history
    ]
    return lines


def _expiries(tenant: Tenant) -> str:
    expiring = [iso(at) for at in tenant.secrets_expire_at if at is not None]
    return f" (in rotation grace, expiring {', '.join(map(str, expiring))})" if expiring else ""
