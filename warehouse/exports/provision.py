"""Create or update the QuickSight (and Glue) resources that read the exports, idempotently.

Every resource is described first and only what differs is changed, so a second run makes no
change ("unchanged"). "Differs" means: a field this module sets has another value; fields
QuickSight adds (ARNs, times, output columns) or that someone set by hand are left alone, and
permissions are only ever granted, never revoked. An RLS setting is never removed.

SPICE refreshes count against a daily quota (CreateIngestion: 32 manual refreshes per dataset
per 24 h on Enterprise edition, 8 on Standard). A dataset that is created or updated is
ingested by QuickSight itself; an unchanged dataset is refreshed only when its export is newer
than its latest ingestion that did not fail, and never while one is in progress.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from warehouse.exports.catalog import TENANT_COLUMN, Column, short_name
from warehouse.exports.glue import Step, covers, sync_glue_tables
from warehouse.exports.quicksight import current_definition, current_export
from warehouse.exports.quicksight_requests import (
    DATA_SET_ACTIONS,
    DATA_SOURCE_ACTIONS,
    DataSetSpec,
    DataSourceSpec,
    Target,
    athena_data_set,
    athena_data_source,
    s3_data_set,
    s3_data_source,
)
from warehouse.exports.rls import RLS_TABLE
from warehouse.exports.store import ExportStore

Echo = Callable[[str], None]
IN_PROGRESS = {"INITIALIZED", "QUEUED", "RUNNING"}
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:quicksight:[a-z0-9-]+:\d{12}:(user|group)/[^/]+/.+$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
_WORKGROUP = re.compile(r"^[a-zA-Z0-9._-]{1,128}$")


class ProvisionError(ValueError):
    """Provisioning cannot start or continue; the message says what to fix."""


@dataclass(frozen=True)
class Request:
    """One AWS call: the boto3 method name and its exact parameters."""

    service: str
    operation: str
    params: dict[str, Any]


@dataclass
class Exports:
    """What the lake holds: each exported table's metadata and manifest, its Glue table."""

    tables: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    rls: tuple[dict[str, Any], str] | None = None
    definitions: list[dict[str, Any]] = field(default_factory=list)


def validate(target: Target) -> None:
    checks = [(_ACCOUNT.match(target.account_id), "the AWS account id must be 12 digits"),
              (_REGION.match(target.region), f"{target.region!r} is not an AWS region"),
              (_PREFIX.match(target.id_prefix), "the id prefix must be 1–40 letters, digits, "
                                                "'-' or '_'"),
              (not target.role_arn or _ROLE.match(target.role_arn),
               "the role must be an IAM role ARN"),
              (_GLUE_NAME.match(target.glue_database),
               "a Glue database name is lowercase letters, digits and '_'"),
              (_WORKGROUP.match(target.athena_workgroup), "not an Athena workgroup name")]
    checks += [(_PRINCIPAL.match(p), f"{p!r} is not a QuickSight user or group ARN "
                                     "(arn:aws:quicksight:REGION:ACCOUNT:user/NAMESPACE/NAME)")
               for p in target.principals]
    for ok, message in checks:
        if not ok:
            raise ProvisionError(message)


def read_exports(store: ExportStore, tables: tuple[str, ...]) -> Exports:
    """The current export of each table that has one (S3 lakes only: QuickSight reads S3)."""
    store.bucket_key(store.root)  # raises ValueError on a local lake
    found = Exports()
    for table in tables:
        name = short_name(table)
        current = current_export(store, name)
        if current:
            found.tables.append(current)
        definition = current_definition(store, name)
        if definition:
            found.definitions.append(definition)
    found.rls = current_export(store, RLS_TABLE)
    if not found.tables:
        raise ProvisionError(f"nothing exported under {store.uri(store.root)} yet: run "
                             "`aw export quicksight` first")
    return found


def desired(target: Target, store: ExportStore, exports: Exports, rls: bool = True
            ) -> tuple[list[DataSourceSpec], list[DataSetSpec]]:
    """Data sources and datasets, in the order they must exist (RLS rules first)."""
    if rls and exports.rls is None:
        raise ProvisionError("no row-level security rules are exported: run `aw export "
                             "quicksight --rls-file MAPPING.json` first, or pass --no-rls for "
                             "MSP-internal datasets that no client user will ever see")
    sources: list[DataSourceSpec] = []
    data_sets: list[DataSetSpec] = []
    rls_arn = None
    if rls and exports.rls:
        meta, path = exports.rls
        source = s3_data_source(target, RLS_TABLE, *store.bucket_key(path))
        rules = s3_data_set(target, RLS_TABLE, _columns(meta), target.arn("datasource",
                                                                        source.resource_id),
                            None, meta["version"], meta["exported_at"])
        sources.append(source)
        data_sets.append(rules)
        rls_arn = target.arn("dataset", rules.resource_id)
    athena = athena_data_source(target) if target.source == "athena" else None
    if athena:
        sources.append(athena)
    for meta, path in exports.tables:
        columns = _columns(meta)
        protect = rls_arn if any(c.name == TENANT_COLUMN for c in columns) else None
        if athena:
            data_sets.append(athena_data_set(
                target, meta["table"], columns, target.arn("datasource", athena.resource_id),
                protect, meta["version"], meta["exported_at"]))
            continue
        source = s3_data_source(target, meta["table"], *store.bucket_key(path))
        sources.append(source)
        data_sets.append(s3_data_set(
            target, meta["table"], columns, target.arn("datasource", source.resource_id),
            protect, meta["version"], meta["exported_at"]))
    return sources, data_sets


def _columns(meta: dict[str, Any]) -> list[Column]:
    return [Column(c["name"], c["duckdb_type"]) for c in meta["columns"]]


def plan(target: Target, sources: list[DataSourceSpec], data_sets: list[DataSetSpec],
         exports: Exports) -> list[Request]:
    """Every request a first run makes against an empty account (what --dry-run prints)."""
    requests = []
    if target.source == "athena":
        requests.append(Request("glue", "create_database", {
            "DatabaseInput": {"Name": target.glue_database}}))
        requests += [Request("glue", "create_table", {"DatabaseName": target.glue_database,
                                                      "TableInput": d["table_input"]})
                     for d in exports.definitions]
    requests += [Request("quicksight", "create_data_source", s.create(target)) for s in sources]
    requests += [Request("quicksight", "create_data_set", d.create(target)) for d in data_sets]
    return requests


def apply(qs: Any, target: Target, sources: list[DataSourceSpec], data_sets: list[DataSetSpec],
          exports: Exports, glue: Any = None, echo: Echo = lambda _: None) -> list[Step]:
    """Bring the account to the desired state; returns one step per resource touched."""
    steps: list[Step] = []

    def report(step: Step) -> None:
        steps.append(step)
        echo(f"  {step.action:<9} {step.kind:<12} {step.resource_id}"
             + (f"  ({step.detail})" if step.detail else ""))

    if target.source == "athena":
        for step in sync_glue_tables(glue, target.glue_database,
                                     [d["table_input"] for d in exports.definitions]):
            report(step)
    # ARNs as the service returns them (QuickSight's advice: describe, do not construct);
    # the specs were built with the documented ARN format, for dry runs.
    arns: dict[str, str] = {}
    for source in sources:
        arns[target.arn("datasource", source.resource_id)] = _ensure_data_source(
            qs, target, source, report)
    for data_set in data_sets:
        spec = replace(data_set, physical=_swap(data_set.physical, arns),
                       rls_arn=arns.get(data_set.rls_arn or "", data_set.rls_arn))
        arns[target.arn("dataset", spec.resource_id)] = _ensure_data_set(qs, target, spec,
                                                                         report)
    return steps


def _swap(value: Any, arns: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _swap(v, arns) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, arns) for v in value]
    return arns.get(value, value) if isinstance(value, str) else value


def _ensure_data_source(qs: Any, target: Target, spec: DataSourceSpec,
                        report: Callable[[Step], None]) -> str:
    ids = {"AwsAccountId": target.account_id, "DataSourceId": spec.resource_id}
    try:
        current = qs.describe_data_source(**ids)["DataSource"]
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        created = qs.create_data_source(**spec.create(target))
        report(Step("data source", spec.resource_id, "create", spec.type))
        return str(created["Arn"])
    if covers(current, spec.desired()):
        report(Step("data source", spec.resource_id, "unchanged"))
    else:
        qs.update_data_source(**spec.update(target))
        report(Step("data source", spec.resource_id, "update", spec.type))
    granted = qs.describe_data_source_permissions(**ids).get("Permissions", [])
    missing = _missing(target, granted, DATA_SOURCE_ACTIONS)
    if missing:
        qs.update_data_source_permissions(**ids, GrantPermissions=missing)
        report(Step("permissions", spec.resource_id, "grant", _who(missing)))
    return str(current["Arn"])


def _ensure_data_set(qs: Any, target: Target, spec: DataSetSpec,
                     report: Callable[[Step], None]) -> str:
    ids = {"AwsAccountId": target.account_id, "DataSetId": spec.resource_id}
    try:
        current = qs.describe_data_set(**ids)["DataSet"]
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        created = qs.create_data_set(**spec.create(target))
        report(Step("data set", spec.resource_id, "create", "SPICE ingestion started"))
        return str(created["Arn"])
    if covers(current, spec.desired(target)):
        report(Step("data set", spec.resource_id, "unchanged"))
        for step in _refresh(qs, target, spec):
            report(step)
    else:
        qs.update_data_set(**spec.update(target))
        report(Step("data set", spec.resource_id, "update", "SPICE ingestion started"))
    granted = qs.describe_data_set_permissions(**ids).get("Permissions", [])
    missing = _missing(target, granted, DATA_SET_ACTIONS)
    if missing:
        qs.update_data_set_permissions(**ids, GrantPermissions=missing)
        report(Step("permissions", spec.resource_id, "grant", _who(missing)))
    return str(current["Arn"])


def _refresh(qs: Any, target: Target, spec: DataSetSpec) -> Iterator[Step]:
    """Start a SPICE ingestion when the export is newer than every good ingestion."""
    exported = datetime.fromisoformat(spec.exported_at.replace("Z", "+00:00"))
    pages = qs.get_paginator("list_ingestions").paginate(
        AwsAccountId=target.account_id, DataSetId=spec.resource_id)
    ingestions = [i for page in pages for i in page.get("Ingestions", [])]
    if any(i["IngestionStatus"] in IN_PROGRESS for i in ingestions):
        yield Step("ingestion", spec.resource_id, "unchanged", "an ingestion is in progress")
        return
    if any(i["CreatedTime"] >= exported and i["IngestionStatus"] not in ("FAILED", "CANCELLED")
           for i in ingestions):
        return  # SPICE already holds this export
    prefix = f"aw-{spec.version}"
    attempt = 1 + sum(1 for i in ingestions if i.get("IngestionId", "").startswith(prefix))
    qs.create_ingestion(AwsAccountId=target.account_id, DataSetId=spec.resource_id,
                        IngestionId=f"{prefix}-{attempt}", IngestionType="FULL_REFRESH")
    yield Step("ingestion", spec.resource_id, "refresh", f"export {spec.version}")


def _missing(target: Target, granted: list[dict[str, Any]], actions: tuple[str, ...]
             ) -> list[dict[str, Any]]:
    have = {p["Principal"]: set(p.get("Actions", [])) for p in granted}
    return [{"Principal": p, "Actions": list(actions)} for p in target.principals
            if not set(actions) <= have.get(p, set())]


def _who(permissions: list[dict[str, Any]]) -> str:
    return ", ".join(p["Principal"].rsplit("/", 1)[-1] for p in permissions)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
