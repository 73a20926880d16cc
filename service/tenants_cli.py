"""`aw tenants …`: create tenants, issue and revoke credentials, change options and settings.

Credentials are printed once, when they are issued; the registry keeps only hashes and
ciphertexts. Bad input ends with one `Error: …` line on stderr and exit code 2; a registry
that cannot be used (locked, unreadable) with exit code 1. `--json` prints one JSON document.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from service.tenants_output import (
    aws_lines,
    emit,
    iso,
    options_line,
    settings_summary,
    show_lines,
    source_auth_lines,
    tenant_document,
    version_document,
)
from warehouse.config import platform_settings
from warehouse.correlation_settings import parse_duration
from warehouse.registry import (
    GRAFANA_SIGNATURE_HEADER,
    Registry,
    RegistryError,
    RegistryUnavailable,
    check_grafana_signing,
    check_options,
    validate_sns_topic,
)
from warehouse.registry_aws import parse_regions, validate_access, validate_account_id

N = TypeVar("N", int, float)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_ONCE = "Store it now: it is shown only once and cannot be recovered."


class CommandError(click.ClickException):
    """Bad input: one `Error: …` line on stderr, exit code 2."""

    exit_code = 2


class RegistryUnusable(click.ClickException):
    """The registry is locked or unreadable: one `Error: …` line, exit code 1."""

    exit_code = 1


@contextmanager
def _open_registry() -> Iterator[Registry]:
    """The registry of the current settings; its errors become CommandErrors."""
    with _as_command_errors():
        registry = Registry.open(platform_settings())
    try:
        with _as_command_errors():
            yield registry
    finally:
        registry.close()


@contextmanager
def _as_command_errors() -> Iterator[None]:
    try:
        yield
    except RegistryUnavailable as exc:
        raise RegistryUnusable(str(exc)) from None
    except (RegistryError, ValueError) as exc:
        raise CommandError(str(exc)) from None


@click.group()
def tenants() -> None:
    """Manage tenants: credentials, intake options and correlation settings."""


@tenants.command()
@click.argument("tenant_id")
@click.option("--name", required=True, help="Display name of the tenant.")
@_json_option
def create(tenant_id: str, name: str, as_json: bool) -> None:
    """Create a tenant and print its API key and HMAC secret (once)."""
    with _open_registry() as registry:
        issued = registry.create_tenant(tenant_id, name)
    document = {
        "tenant_id": issued.tenant_id,
        "api_key": issued.api_key,
        "hmac_secret": issued.hmac_secret,
    }
    emit(
        as_json,
        document,
        [
            f"Created tenant {issued.tenant_id!r}.",
            f"API key:     {issued.api_key}",
            f"HMAC secret: {issued.hmac_secret}",
        ],
    )
    if not as_json:
        click.echo("Store both now: they are shown only once and cannot be recovered.", err=True)


@tenants.command(name="list")
@_json_option
def list_(as_json: bool) -> None:
    """List tenants."""
    with _open_registry() as registry:
        found = registry.list_tenants()
    lines = [
        f"{t.id}\t{t.name}\tkeys: {len(t.key_prefixes)}\tsecrets: {t.secret_count}" for t in found
    ] or ["No tenants yet: create one with `aw tenants create`."]
    emit(as_json, [tenant_document(t) for t in found], lines)


@tenants.command()
@click.argument("tenant_id")
@_json_option
def show(tenant_id: str, as_json: bool) -> None:
    """Show a tenant's options, key prefixes, current settings and settings history."""
    with _open_registry() as registry:
        tenant = registry.get_tenant(tenant_id)
        current = registry.settings_at(tenant_id, datetime.now(UTC))
        history = registry.settings_history(tenant_id)
    document = tenant_document(tenant) | {
        "current_settings": version_document(current),
        "settings_history": [version_document(v) for v in history],
    }
    lines = show_lines(tenant, current, history)
    emit(as_json, document, lines)


def _parse_number(option: str, text: str | None, kind: type[N]) -> N | None:
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise CommandError(f"{option}: {text!r} is not {noun}") from None


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().upper())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise CommandError(
            f"--effective-at: {text!r} is not an RFC 3339 time with an offset, "
            "such as 2026-11-26T10:00:00Z"
        )
    return value.astimezone(UTC)


def _source_overrides(pairs: tuple[str, ...]) -> dict[str, str | None]:
    overrides: dict[str, str | None] = {}
    for pair in pairs:
        source, sep, duration = pair.rpartition("=")
        if not sep or not source:
            raise CommandError(f"--stale-after-source: expected SOURCE=DURATION, got {pair!r}")
        overrides[source] = None if duration == "default" else duration
    return overrides


def _settings_changes(values: dict[str, Any]) -> dict[str, object]:
    changes: dict[str, object] = {
        name: values[name]
        for name in ("window", "cap", "lateness", "stale_after", "clock_skew")
        if values[name] is not None
    }
    if values["key"] is not None:
        changes["key"] = [part.strip() for part in values["key"].split(",")]
    threshold = _parse_number("--threshold", values["threshold"], int)
    if threshold is not None:
        changes["threshold"] = threshold
    if values["stale_after_source"]:
        changes["stale_after_by_source"] = _source_overrides(values["stale_after_source"])
    return changes


@dataclass(frozen=True)
class _SourceAuth:
    """The source-authentication part of `aw tenants set`: Grafana's HMAC and SNS topics."""

    grafana: tuple[str | None, str, str | None] | None  # (secret or None to remove, headers)
    add_topics: tuple[str, ...]
    remove_topics: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.grafana is None and not self.add_topics and not self.remove_topics

    def apply(self, registry: Registry, tenant_id: str) -> None:
        # Topics first: an ownership conflict is the likeliest failure, and it then stops
        # the command before anything else is written.
        if self.add_topics or self.remove_topics:
            registry.change_sns_topics(tenant_id, self.add_topics, self.remove_topics)
        if self.grafana is not None:
            registry.set_grafana_signing(tenant_id, *self.grafana)


def _source_auth(values: dict[str, Any]) -> _SourceAuth:
    """Checks everything before the first write, so a typo in the third ARN or an empty
    secret file stores nothing at all."""
    path, remove = values["grafana_hmac_secret_file"], values["no_grafana_hmac"]
    header = values["grafana_signature_header"]
    timestamp_header = values["grafana_timestamp_header"]
    if path is not None and remove:
        raise CommandError("give --grafana-hmac-secret-file or --no-grafana-hmac, not both")
    if path is None and (header is not None or timestamp_header is not None):
        raise CommandError(
            "--grafana-signature-header and --grafana-timestamp-header need "
            "--grafana-hmac-secret-file"
        )
    grafana: tuple[str | None, str, str | None] | None = None
    with _as_command_errors():
        if remove:
            grafana = (None, GRAFANA_SIGNATURE_HEADER, None)
        elif path is not None:
            secret = _read_secret_file(path)
            names = (header or GRAFANA_SIGNATURE_HEADER, timestamp_header)
            check_grafana_signing(secret, *names)
            grafana = (secret, *names)
        add = tuple(validate_sns_topic(arn) for arn in values["sns_topic"])
        remove_topics = tuple(validate_sns_topic(arn) for arn in values["remove_sns_topic"])
    return _SourceAuth(grafana, add, remove_topics)


def _read_secret_file(path: Path) -> str:
    """The secret in the file, without its trailing line break; never echoed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CommandError(f"--grafana-hmac-secret-file: cannot read {path}: {reason}") from None
    return text.rstrip("\r\n")


@dataclass(frozen=True)
class _AwsChanges:
    """The AWS-account part of `aw tenants set`, checked before anything is written."""

    account_id: str | None
    role_arn: str | None
    external_id: str | None
    regions: tuple[str, ...]
    remove: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.account_id is None and not self.remove

    def apply(self, registry: Registry, tenant_id: str) -> None:
        for account in self.remove:
            registry.remove_aws_account(tenant_id, account)
        if self.account_id is not None:
            registry.set_aws_account(tenant_id, self.account_id, role_arn=self.role_arn,
                                     external_id=self.external_id, regions=self.regions)


def _aws_changes(values: dict[str, Any]) -> _AwsChanges:
    account = values["aws_account"]
    role, external = values["role_arn"], values["external_id"]
    regions = parse_regions(values["regions"])
    if account is None and (role or external or regions):
        raise CommandError("--role-arn, --external-id and --regions need --aws-account")
    with _as_command_errors():
        if account is not None:
            validate_access(account, role, external, regions)
        remove = tuple(validate_account_id(a) for a in values["remove_aws_account"])
    return _AwsChanges(account, role, external, regions, remove)


@tenants.command(name="set")
@click.argument("tenant_id")
@click.option("--window", help="Correlation window W (R5), 1m-24h, e.g. 10m.")
@click.option("--key", help="Aggregation key fields (R4), e.g. asset,signature or asset,label:env.")
@click.option("--cap", help="Incident cap M (R6), from the window to 30d.")
@click.option("--threshold", help="Events before an incident is visible (R13), 1-1000.")
@click.option("--lateness", help="Lateness horizon L (R9), 1m-30d.")
@click.option("--stale-after", help="T_stale (R8), 5m-30d.")
@click.option(
    "--stale-after-source",
    multiple=True,
    metavar="SOURCE=DURATION",
    help="Per-source T_stale; SOURCE=default removes the override. Repeatable.",
)
@click.option("--clock-skew", help="Future tolerance F (R9), 0s-24h.")
@click.option("--effective-at", help="RFC 3339 time the settings apply from (default: now).")
@click.option(
    "--require-signature/--no-require-signature",
    default=None,
    help="Whether requests must carry an HMAC signature besides the API key.",
)
@click.option("--rate-limit", help="Events per second (0 = unlimited).")
@click.option("--rate-burst", help="Token-bucket burst size.")
@click.option(
    "--grafana-hmac-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the secret of Grafana's webhook HMAC signature (replaces any earlier).",
)
@click.option(
    "--grafana-signature-header",
    metavar="NAME",
    help=f"Header carrying Grafana's signature (default {GRAFANA_SIGNATURE_HEADER}).",
)
@click.option(
    "--grafana-timestamp-header",
    metavar="NAME",
    help="Header carrying Grafana's signature timestamp, if Grafana is set to send one.",
)
@click.option("--no-grafana-hmac", is_flag=True, help="Remove the Grafana HMAC secret.")
@click.option(
    "--sns-topic",
    multiple=True,
    metavar="ARN",
    help="Accept SNS messages from this TopicArn (…:<account>:* for all topics of the account "
    "in that region). Repeatable.",
)
@click.option(
    "--remove-sns-topic", multiple=True, metavar="ARN", help="Stop accepting a TopicArn."
)
@click.option("--aws-account", metavar="ACCOUNT_ID",
              help="Add or replace a client AWS account of the tenant (patch compliance). "
              "Without --role-arn it is read from the Resource Data Sync only.")
@click.option("--role-arn", metavar="ARN", help="Role the platform assumes in --aws-account.")
@click.option("--external-id", metavar="EXTERNAL_ID",
              help="External ID the role's trust policy requires (stored sealed).")
@click.option("--regions", metavar="REGIONS", help="Regions to collect, e.g. us-east-1,eu-west-1.")
@click.option("--remove-aws-account", multiple=True, metavar="ACCOUNT_ID",
              help="Stop collecting an account. Repeatable.")
@_json_option
def set_(tenant_id: str, as_json: bool, **values: Any) -> None:
    """Change options now, or correlation settings as a new version (R15)."""
    aws = _aws_changes(values)
    source_auth = _source_auth(values)
    changes = _settings_changes(values)
    effective_at = _parse_time(values["effective_at"])
    rate = _parse_number("--rate-limit", values["rate_limit"], float)
    burst = _parse_number("--rate-burst", values["rate_burst"], int)
    signature = values["require_signature"]
    has_options = (signature, rate, burst) != (None, None, None)
    if effective_at is not None and not changes:
        raise CommandError("--effective-at needs at least one correlation setting to change")
    if not changes and not has_options and source_auth.empty and aws.empty:
        raise CommandError("nothing to change: give a setting or an option (see --help)")
    with _open_registry() as registry:
        check_options(rate, burst)  # so bad options fail before a settings version is stored
        if changes:  # a dry run, so bad settings fail before the topics or secret are stored
            at = effective_at or datetime.now(UTC)
            registry.settings_at(tenant_id, at).settings.with_changes(changes)
        source_auth.apply(registry, tenant_id)
        aws.apply(registry, tenant_id)
        version = registry.set_settings(tenant_id, changes, effective_at) if changes else None
        tenant = (
            registry.set_options(tenant_id, signature, rate, burst)
            if has_options
            else registry.get_tenant(tenant_id)
        )
    document = {
        "tenant_id": tenant.id,
        "tenant": tenant_document(tenant),
        "settings_version": None if version is None else version_document(version),
    }
    lines = [f"Tenant {tenant.id}:", options_line(tenant), *source_auth_lines(tenant),
             *aws_lines(tenant)]
    if version is not None:
        lines.append(
            f"  settings version {version.version} effective "
            f"{iso(version.effective_at)}: {settings_summary(version.settings)}"
        )
    emit(as_json, document, lines)


@tenants.command(name="rotate-secret")
@click.argument("tenant_id")
@click.option(
    "--grace", default="24h", show_default=True, help="How long older secrets stay valid (0s-30d)."
)
@_json_option
def rotate_secret(tenant_id: str, grace: str, as_json: bool) -> None:
    """Issue a new HMAC secret (printed once); older ones expire after the grace period."""
    try:
        period = parse_duration(grace)
    except ValueError as exc:
        raise CommandError(f"--grace: {exc}") from None
    now = datetime.now(UTC)
    with _open_registry() as registry:
        secret = registry.rotate_secret(tenant_id, period, now=now)
    until = iso(now + period)
    document = {"tenant_id": tenant_id, "hmac_secret": secret, "previous_secrets_expire_by": until}
    emit(
        as_json,
        document,
        [
            f"New HMAC secret for {tenant_id!r}: {secret}",
            f"Older secrets stay valid until {until} at the latest.",
        ],
    )
    if not as_json:
        click.echo(_ONCE, err=True)


@tenants.command(name="new-key")
@click.argument("tenant_id")
@_json_option
def new_key(tenant_id: str, as_json: bool) -> None:
    """Issue one more API key (printed once); existing keys stay valid."""
    with _open_registry() as registry:
        api_key = registry.new_api_key(tenant_id)
    emit(
        as_json,
        {"tenant_id": tenant_id, "api_key": api_key},
        [f"New API key for {tenant_id!r}: {api_key}"],
    )
    if not as_json:
        click.echo(_ONCE, err=True)


@tenants.command(name="revoke-key")
@click.argument("tenant_id")
@click.option("--key-prefix", help="The first 12 characters of the key (see `aw tenants show`).")
@click.option("--all", "revoke_all", is_flag=True, help="Revoke every key of the tenant.")
@_json_option
def revoke_key(tenant_id: str, key_prefix: str | None, revoke_all: bool, as_json: bool) -> None:
    """Revoke one API key by prefix, or all of them; takes effect at the service's next poll."""
    if (key_prefix is None) == (not revoke_all):
        raise CommandError("give exactly one of --key-prefix or --all")
    with _open_registry() as registry:
        count = registry.revoke_key(tenant_id, None if revoke_all else key_prefix)
        if key_prefix is not None and count == 0:
            raise CommandError(f"tenant {tenant_id!r} has no active key with prefix {key_prefix!r}")
        remaining = registry.get_tenant(tenant_id).key_prefixes
    document = {"tenant_id": tenant_id, "revoked": count, "key_prefixes": list(remaining)}
    lines = [f"Revoked {count} key(s) of {tenant_id!r}; active: {', '.join(remaining) or 'none'}."]
    emit(as_json, document, lines)
