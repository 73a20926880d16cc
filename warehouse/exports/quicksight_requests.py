"""The QuickSight resources that read the exports, as boto3 request parameters.

Per exported table, a SPICE dataset whose columns are typed like the mart:

- **S3 source** (default): one S3 data source per table, pointing at the table's manifest.
  QuickSight reads CSV columns as strings; the dataset's logical table casts them
  (`CastColumnTypeOperation`: INTEGER, DECIMAL, DATETIME with the export's format).
- **Athena source**: one Athena data source; each dataset is a custom SQL query on the Glue
  table that yields the same typed columns as the CSV path (booleans as 1/0, lists joined).

Tenant-level datasets get `RowLevelPermissionDataSet` (GRANT_ACCESS, format VERSION_1) on
the RLS rules dataset, which itself always reads the exported rules CSV through S3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from warehouse.exports.catalog import LIST_SEPARATOR, Column, Kind

Source = Literal["s3", "athena"]
DATA_SOURCE_ACTIONS = (
    "quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions",
    "quicksight:PassDataSource", "quicksight:UpdateDataSource",
    "quicksight:DeleteDataSource", "quicksight:UpdateDataSourcePermissions")
DATA_SET_ACTIONS = (
    "quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions",
    "quicksight:PassDataSet", "quicksight:DescribeIngestion", "quicksight:ListIngestions",
    "quicksight:UpdateDataSet", "quicksight:DeleteDataSet", "quicksight:CreateIngestion",
    "quicksight:CancelIngestion", "quicksight:UpdateDataSetPermissions")
PHYSICAL_ID = "source"
LOGICAL_ID = "typed"
UPLOAD_SETTINGS = {"Format": "CSV", "StartFromRow": 1, "ContainsHeader": True,
                   "TextQualifier": "DOUBLE_QUOTE", "Delimiter": ","}


@dataclass(frozen=True)
class Target:
    """Where and for whom to provision."""

    account_id: str
    region: str
    principals: tuple[str, ...] = ()
    source: Source = "s3"
    id_prefix: str = "alert-whisperer"
    glue_database: str = "alert_whisperer"
    athena_workgroup: str = "primary"
    role_arn: str | None = None

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        return "aws-us-gov" if self.region.startswith("us-gov-") else "aws"

    def arn(self, kind: str, resource_id: str) -> str:
        return (f"arn:{self.partition}:quicksight:{self.region}:{self.account_id}:"
                f"{kind}/{resource_id}")


@dataclass(frozen=True)
class DataSourceSpec:
    resource_id: str
    name: str
    type: str
    parameters: dict[str, Any]

    def create(self, target: Target) -> dict[str, Any]:
        request = {**self.update(target), "Type": self.type}
        if target.principals:
            request["Permissions"] = _permissions(target, DATA_SOURCE_ACTIONS)
        return request

    def update(self, target: Target) -> dict[str, Any]:
        return {"AwsAccountId": target.account_id, "DataSourceId": self.resource_id,
                "Name": self.name, "DataSourceParameters": self.parameters}

    def desired(self) -> dict[str, Any]:
        """What DescribeDataSource must show for this data source to be unchanged."""
        return {"Name": self.name, "Type": self.type, "DataSourceParameters": self.parameters}


@dataclass(frozen=True)
class DataSetSpec:
    resource_id: str
    name: str
    table: str
    physical: dict[str, Any]
    logical: dict[str, Any]
    rls_arn: str | None = None
    version: str = ""
    exported_at: str = ""
    columns: Sequence[Column] = field(default_factory=tuple)

    def update(self, target: Target) -> dict[str, Any]:
        request: dict[str, Any] = {
            "AwsAccountId": target.account_id, "DataSetId": self.resource_id,
            "Name": self.name, "PhysicalTableMap": self.physical,
            "LogicalTableMap": self.logical, "ImportMode": "SPICE"}
        if self.rls_arn:
            request["RowLevelPermissionDataSet"] = {
                "Arn": self.rls_arn, "PermissionPolicy": "GRANT_ACCESS",
                "FormatVersion": "VERSION_1", "Status": "ENABLED"}
        return request

    def create(self, target: Target) -> dict[str, Any]:
        request = self.update(target)
        if target.principals:
            request["Permissions"] = _permissions(target, DATA_SET_ACTIONS)
        return request

    def desired(self, target: Target) -> dict[str, Any]:
        """What DescribeDataSet must show for this dataset to be unchanged (for RLS, the two
        required fields: the optional ones may be left out of the description)."""
        request = self.update(target)
        shown = {k: v for k, v in request.items() if k not in ("AwsAccountId", "DataSetId")}
        if self.rls_arn:
            shown["RowLevelPermissionDataSet"] = {"Arn": self.rls_arn,
                                                  "PermissionPolicy": "GRANT_ACCESS"}
        return shown


def _permissions(target: Target, actions: Sequence[str]) -> list[dict[str, Any]]:
    return [{"Principal": p, "Actions": list(actions)} for p in target.principals]


def s3_data_source(target: Target, table: str, bucket: str, key: str) -> DataSourceSpec:
    s3: dict[str, Any] = {"ManifestFileLocation": {"Bucket": bucket, "Key": key}}
    if target.role_arn:
        s3["RoleArn"] = target.role_arn
    return DataSourceSpec(f"{target.id_prefix}-s3-{table}", _name(table, "S3 manifest"), "S3",
                          {"S3Parameters": s3})


def athena_data_source(target: Target) -> DataSourceSpec:
    athena: dict[str, Any] = {"WorkGroup": target.athena_workgroup}
    if target.role_arn:
        athena["RoleArn"] = target.role_arn
    return DataSourceSpec(f"{target.id_prefix}-athena", _name("Athena", target.glue_database),
                          "ATHENA", {"AthenaParameters": athena})


def s3_data_set(target: Target, table: str, columns: Sequence[Column], source_arn: str,
                rls_arn: str | None, version: str = "", exported_at: str = "") -> DataSetSpec:
    physical = {PHYSICAL_ID: {"S3Source": {
        "DataSourceArn": source_arn, "UploadSettings": dict(UPLOAD_SETTINGS),
        "InputColumns": [{"Name": c.name, "Type": "STRING"} for c in columns]}}}
    casts = [_cast(c) for c in columns if c.quicksight_type != "STRING"]
    logical = {LOGICAL_ID: {"Alias": table, "Source": {"PhysicalTableId": PHYSICAL_ID},
                            **({"DataTransforms": casts} if casts else {})}}
    return DataSetSpec(f"{target.id_prefix}-{table}", _name(table), table, physical, logical,
                       rls_arn, version, exported_at, tuple(columns))


def athena_data_set(target: Target, table: str, columns: Sequence[Column], source_arn: str,
                    rls_arn: str | None, version: str = "",
                    exported_at: str = "") -> DataSetSpec:
    select = ",\n  ".join(_athena_expression(c) for c in columns)
    sql = f'SELECT\n  {select}\nFROM "{target.glue_database}"."{table}"'
    physical = {PHYSICAL_ID: {"CustomSql": {
        "DataSourceArn": source_arn, "Name": table, "SqlQuery": sql,
        "Columns": [_athena_input(c) for c in columns]}}}
    logical = {LOGICAL_ID: {"Alias": table, "Source": {"PhysicalTableId": PHYSICAL_ID}}}
    return DataSetSpec(f"{target.id_prefix}-{table}", _name(table), table, physical, logical,
                       rls_arn, version, exported_at, tuple(columns))


def _cast(column: Column) -> dict[str, Any]:
    op: dict[str, Any] = {"ColumnName": column.name, "NewColumnType": column.quicksight_type}
    if column.quicksight_type == "DECIMAL":
        op["SubType"] = "FLOAT"  # FIXED would round to four decimal places
    if column.cast_format:
        op["Format"] = column.cast_format
    return {"CastColumnTypeOperation": op}


def _athena_expression(column: Column) -> str:
    c = f'"{column.name}"'
    if column.kind is Kind.BOOLEAN:
        return f"CAST({c} AS integer) AS {c}"
    if column.kind is Kind.LIST:
        return f"array_join({c}, '{LIST_SEPARATOR}') AS {c}"
    return c


def _athena_input(column: Column) -> dict[str, Any]:
    entry: dict[str, Any] = {"Name": column.name, "Type": column.quicksight_type}
    if column.quicksight_type == "DECIMAL":
        entry["SubType"] = "FLOAT"
    return entry


def _name(table: str, detail: str = "") -> str:
    return (f"Alert Whisperer {table}" + (f" ({detail})" if detail else ""))[:128]
