"""`aw export quicksight` (export the marts now) and `aw quicksight provision` (create or update
the QuickSight data sources, datasets, RLS and refreshes that read them). docs/quicksight.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from warehouse.exports.settings import ExportSettings


def _settings() -> ExportSettings:
    from warehouse.exports.settings import export_settings

    try:
        return export_settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid AW_* export setting: {exc}") from None


@click.group("export")
def export() -> None:
    """Export the marts for BI tools."""


@export.command("quicksight")
@click.option("--rls-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON mapping of QuickSight users/groups to tenant ids for row-level "
                   "security (default AW_QUICKSIGHT_RLS_FILE).")
@click.option("--json", "as_json", is_flag=True, help="One JSON summary on stdout.")
def export_quicksight(rls_file: Path | None, as_json: bool) -> None:
    """Export the published marts now: CSV + manifests for QuickSight, Parquet + Glue table
    definitions for Athena, under <lake>/exports/. Each table is replaced atomically."""
    from warehouse.config import platform_settings
    from warehouse.exports.quicksight import ExportFailed, export_published
    from warehouse.exports.rls import RlsMappingError, load_mapping
    from warehouse.lake import LakeError
    from warehouse.publish import WarehouseNotPublished

    settings = _settings()
    path = rls_file or settings.quicksight_rls_file
    try:
        rls = load_mapping(path) if path else None
        result = export_published(platform_settings(), settings, rls,
                                  echo=lambda line: click.echo(line, err=as_json))
        if settings.export_glue_sync:
            _sync_glue(settings, as_json)
    except (RlsMappingError, WarehouseNotPublished, ExportFailed, LakeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    done = [t for t in result.tables if not t.skipped]
    marts = [t for t in done if t.table != "rls_tenant_permissions"]
    click.echo(f"exported {len(marts)} mart(s) ({sum(t.rows for t in marts):,} rows)"
               + (" and the RLS rules" if rls else "")
               + f" in {result.seconds:.1f} s; QuickSight manifests:")
    for t in done:
        click.echo(f"  {t.manifest_uri}")
    if rls is None:
        click.echo("no RLS mapping given: the row-level security rules were not exported",
                   err=True)


def _sync_glue(settings: ExportSettings, as_json: bool) -> None:
    from warehouse.config import platform_settings
    from warehouse.exports.aws import client
    from warehouse.exports.catalog import EXPORT_TABLES
    from warehouse.exports.glue import sync_exports
    from warehouse.exports.store import ExportStore
    from warehouse.lake import open_lake

    s = platform_settings()
    store = ExportStore(open_lake(s.resolved_lake_uri, s.s3_endpoint_url))
    for step in _aws_errors(sync_exports, client("glue"), store, settings.glue_database,
                            EXPORT_TABLES):
        click.echo(f"  {step.action:<9} {step.kind:<12} {step.resource_id}", err=as_json)


@click.group("quicksight")
def quicksight() -> None:
    """Connect Amazon QuickSight to the exports."""


@quicksight.command("provision")
@click.option("--aws-account-id", required=True, help="The QuickSight account (12 digits).")
@click.option("--principal", "principals", multiple=True, metavar="ARN",
              help="QuickSight user or group ARN granted ownership (repeatable).")
@click.option("--region", default=None,
              help="QuickSight region (default AWS_REGION / AWS_DEFAULT_REGION).")
@click.option("--source", type=click.Choice(["s3", "athena"]), default="s3", show_default=True,
              help="Read the CSV exports (S3 manifests) or the Parquet exports (Athena).")
@click.option("--glue-database", default=None, help="Glue database of the Athena tables "
                                                    "(default AW_GLUE_DATABASE).")
@click.option("--athena-workgroup", default="primary", show_default=True)
@click.option("--role-arn", default=None,
              help="IAM role QuickSight assumes to read S3/Athena (else its account role).")
@click.option("--id-prefix", default="alert-whisperer", show_default=True,
              help="Prefix of every data source and dataset id.")
@click.option("--no-rls", is_flag=True,
              help="Datasets without row-level security (MSP-internal use only).")
@click.option("--dry-run", is_flag=True,
              help="Print the requests of a first run (JSON) without calling AWS.")
@click.option("--json", "as_json", is_flag=True, help="One JSON summary on stdout.")
def provision(aws_account_id: str, principals: tuple[str, ...], region: str | None,
              source: str, glue_database: str | None, athena_workgroup: str,
              role_arn: str | None, id_prefix: str, no_rls: bool, dry_run: bool,
              as_json: bool) -> None:
    """Create or update the QuickSight data sources, datasets (typed columns, row-level
    security on tenant_id, permissions) and SPICE refreshes that read the exports.

    Idempotent: everything is described first and only what differs changes; a second run
    reports "unchanged"."""
    from warehouse.config import platform_settings
    from warehouse.exports import provision as p
    from warehouse.exports.catalog import EXPORT_TABLES
    from warehouse.exports.quicksight_requests import Target
    from warehouse.exports.store import ExportStore
    from warehouse.lake import LakeError, open_lake

    settings = _settings()
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise click.UsageError("no region: pass --region or set AWS_REGION")
    target = Target(aws_account_id.strip(), region, tuple(principals),
                    "athena" if source == "athena" else "s3", id_prefix,
                    glue_database or settings.glue_database, athena_workgroup, role_arn)
    try:
        p.validate(target)
    except p.ProvisionError as exc:
        raise click.UsageError(str(exc)) from None
    s = platform_settings()
    try:
        store = ExportStore(open_lake(s.resolved_lake_uri, s.s3_endpoint_url))
        exports = p.read_exports(store, EXPORT_TABLES)
        sources, data_sets = p.desired(target, store, exports, rls=not no_rls)
    except (p.ProvisionError, LakeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not principals:
        click.echo("warning: no --principal: only API callers will see these resources",
                   err=True)
    if dry_run:
        requests = p.plan(target, sources, data_sets, exports)
        _print_requests(requests, as_json)
        return
    from warehouse.exports.aws import client

    glue = client("glue", region) if target.source == "athena" else None
    steps = _aws_errors(p.apply, client("quicksight", region), target, sources, data_sets,
                        exports, glue, echo=lambda line: click.echo(line, err=as_json))
    changed = [step for step in steps if step.action != "unchanged"]
    if as_json:
        click.echo(json.dumps({"changed": len(changed), "steps": [vars(x) for x in steps]},
                              indent=2))
    else:
        click.echo("unchanged: nothing to do" if not changed
                   else f"{len(changed)} change(s) applied")


def _print_requests(requests: list[Any], as_json: bool) -> None:
    body = [{"service": r.service, "operation": r.operation, "params": r.params}
            for r in requests]
    if as_json:
        click.echo(json.dumps({"dry_run": True, "requests": body}, indent=2))
        return
    for r in body:
        click.echo(f"# {r['service']}.{r['operation']}")
        click.echo(json.dumps(r["params"], indent=2))


def _aws_errors(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an AWS-calling function; an AWS error becomes a one-line click error."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(*args, **kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise click.ClickException(
            f"{exc.operation_name} failed: {error.get('Code', 'error')}: "
            f"{error.get('Message', '')}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise click.ClickException(f"AWS call failed: {exc}") from None
