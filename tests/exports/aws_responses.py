"""QuickSight and Glue responses as the API reference documents them (DescribeDataSource,
DescribeDataSet, Describe*Permissions, ListIngestions, Create*, GetTable), for botocore's
Stubber, which checks them against the service model like the requests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from warehouse.exports.quicksight_requests import (
    DATA_SET_ACTIONS,
    DATA_SOURCE_ACTIONS,
    DataSetSpec,
    DataSourceSpec,
    Target,
)

CREATED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def not_found(message: str = "not found") -> dict[str, Any]:
    return {"service_error_code": "ResourceNotFoundException", "service_message": message,
            "http_status_code": 404}


def data_source(target: Target, spec: DataSourceSpec, **changes: Any) -> dict[str, Any]:
    described = {
        "Arn": target.arn("datasource", spec.resource_id), "DataSourceId": spec.resource_id,
        "Name": spec.name, "Type": spec.type, "Status": "CREATION_SUCCESSFUL",
        "CreatedTime": CREATED, "LastUpdatedTime": CREATED,
        "DataSourceParameters": spec.parameters, "SslProperties": {"DisableSsl": False},
        **changes}
    return {"DataSource": described, "RequestId": "req-ds", "Status": 200}


def data_set(target: Target, spec: DataSetSpec, **changes: Any) -> dict[str, Any]:
    described = {
        "Arn": target.arn("dataset", spec.resource_id), "DataSetId": spec.resource_id,
        "CreatedTime": CREATED, "LastUpdatedTime": CREATED,
        **spec.desired(target),
        "OutputColumns": [{"Name": c.name, "Type": c.quicksight_type} for c in spec.columns],
        "ConsumedSpiceCapacityInBytes": 4096, **changes}
    return {"DataSet": described, "RequestId": "req-dset", "Status": 200}


def data_source_permissions(target: Target, spec: DataSourceSpec,
                            principals: tuple[str, ...] | None = None) -> dict[str, Any]:
    granted = [{"Principal": p, "Actions": list(DATA_SOURCE_ACTIONS)}
               for p in (target.principals if principals is None else principals)]
    return {"DataSourceArn": target.arn("datasource", spec.resource_id),
            "DataSourceId": spec.resource_id, "RequestId": "req-p", "Status": 200,
            **({"Permissions": granted} if granted else {})}  # the list has at least 1 item


def data_set_permissions(target: Target, spec: DataSetSpec,
                         principals: tuple[str, ...] | None = None) -> dict[str, Any]:
    granted = [{"Principal": p, "Actions": list(DATA_SET_ACTIONS)}
               for p in (target.principals if principals is None else principals)]
    return {"DataSetArn": target.arn("dataset", spec.resource_id),
            "DataSetId": spec.resource_id, "RequestId": "req-p", "Status": 200,
            **({"Permissions": granted} if granted else {})}


def ingestions(target: Target, spec: DataSetSpec, *entries: tuple[str, str, datetime]
               ) -> dict[str, Any]:
    """(id, status, created) entries as ListIngestions returns them."""
    arn = target.arn("dataset", spec.resource_id)
    return {"Ingestions": [{"Arn": f"{arn}/ingestion/{i}", "IngestionId": i,
                            "IngestionStatus": status, "CreatedTime": created,
                            "RequestSource": "MANUAL", "RequestType": "FULL_REFRESH"}
                           for i, status, created in entries],
            "RequestId": "req-i", "Status": 200}


def created_data_source(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    return {"Arn": target.arn("datasource", params["DataSourceId"]),
            "DataSourceId": params["DataSourceId"], "CreationStatus": "CREATION_IN_PROGRESS",
            "RequestId": "req-c", "Status": 202}


def created_data_set(target: Target, params: dict[str, Any]) -> dict[str, Any]:
    arn = target.arn("dataset", params["DataSetId"])
    return {"Arn": arn, "DataSetId": params["DataSetId"], "IngestionArn": f"{arn}/ingestion/i1",
            "IngestionId": "i1", "RequestId": "req-c", "Status": 201}


def glue_table(database: str, table_input: dict[str, Any]) -> dict[str, Any]:
    sd = {**table_input["StorageDescriptor"], "Compressed": False, "NumberOfBuckets": -1,
          "StoredAsSubDirectories": False}
    return {"Table": {**table_input, "StorageDescriptor": sd, "DatabaseName": database,
                      "CreateTime": CREATED, "UpdateTime": CREATED, "CatalogId": "123456789012",
                      "IsRegisteredWithLakeFormation": False, "VersionId": "1"}}
