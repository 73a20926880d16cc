"""Resource Data Sync on S3: a real moto S3 server as a separate process.

The demo sync is written through pyarrow's S3 filesystem and read back through the same
reader as the local directory; an object PUT with boto3 (as SSM's own writer would) reads
the same way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.ssm.stubs import NOW
from tests.ssm.test_demo import assert_demo_numbers
from tests.support.servers import MotoServer
from warehouse.lake import open_lake
from warehouse.ssm.demo import write_demo_sync
from warehouse.ssm.resource_data_sync import read_resource_data_sync

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoServer(log_path=log) as server:
        yield server


def test_demo_sync_round_trips_through_s3(moto: MotoServer) -> None:
    bucket = f"sync-{uuid.uuid4().hex[:12]}"
    moto.create_bucket(bucket)
    location = open_lake(f"s3://{bucket}/ssm-sync", moto.endpoint_url, timeout_seconds=5)
    mapping = write_demo_sync(location.fs, location.root, NOW, seed=7)
    keys = [key for key, _ in moto.list_objects(bucket)]
    assert keys and all(k.startswith("ssm-sync/AWS:") for k in keys)
    assert not [k for k in keys if k.endswith("/")], "directory marker objects written"
    assert_demo_numbers(read_resource_data_sync(location.fs, location.root, mapping, NOW))


def test_objects_put_by_another_writer_are_read(moto: MotoServer) -> None:
    bucket = f"sync-{uuid.uuid4().hex[:12]}"
    moto.create_bucket(bucket)
    node = "mi-0a1b2c3d4e5f60003"
    key = (f"inv/AWS:InstanceInformation/accountid=555555555555/region=eu-west-1/"
           f"resourcetype=ManagedInstanceInventory/{node}.json")
    record = {"InstanceId": node, "InstanceStatus": "Active", "ResourceType": "ManagedInstance",
              "resourceId": node, "captureTime": "2026-11-02T05:00:00Z", "schemaVersion": "1.0"}
    s3 = moto.client()
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode() + b"\n")
    s3.put_object(Bucket=bucket, Key="inv/AWS:InstanceInformation/test.json", Body=b"probe")
    s3.put_object(Bucket=bucket, Key="inv/AWS:InstanceInformation/", Body=b"")  # a marker
    location = open_lake(f"s3://{bucket}/inv", moto.endpoint_url, timeout_seconds=5)
    snap = read_resource_data_sync(location.fs, location.root, {"555555555555": "umbrella"}, NOW)
    assert [(n["tenant_id"], n["region"], n["node_id"], n["is_hybrid"])
            for n in snap.rows("nodes")] == [("umbrella", "eu-west-1", node, True)]
    assert snap.row_counts()["errors"] == 0
