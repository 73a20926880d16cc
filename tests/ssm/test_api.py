"""The API path (`warehouse.ssm.api.collect_api`) against Stubber-validated responses."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from tests.ssm.stubs import NOW, Stubbed, StubFactory, assume_role_response, load_calls
from warehouse.ssm.api import AwsAccount, collect_api, default_client_factory

ACME = AwsAccount("111111111111", "arn:aws:iam::111111111111:role/AlertWhispererSSMRead",
                  "aw-ext-acme-7f3a9c", ("us-east-1",))
WEB2, HYBRID, NEW, LOST = ("i-0a1b2c3d4e5f60002", "mi-0a1b2c3d4e5f60003",
                           "i-0a1b2c3d4e5f60004", "i-0a1b2c3d4e5f60005")
KEY_ACME = "ASIAACMEEXAMPLE00001"


def assume_params(account: AwsAccount, tenant: str) -> dict[str, Any]:
    return {"RoleArn": account.role_arn, "RoleSessionName": f"alert-whisperer-{tenant}",
            "ExternalId": account.external_id, "DurationSeconds": 3600}


def stub_role(factory: StubFactory, account: AwsAccount, tenant: str, key_id: str) -> None:
    factory.stub("sts", "us-east-1").add(
        "assume_role", assume_role_response(key_id, account.account_id),
        assume_params(account, tenant))


def add_small_region(stub: Stubbed, node_id: str) -> None:
    """One compliant node, no patch groups: the five steps' smallest valid answers."""
    stub.add("describe_instance_information", {"InstanceInformationList": [
        {"InstanceId": node_id, "PingStatus": "Online", "ResourceType": "EC2Instance"}]},
        {"MaxResults": 50})
    stub.add("describe_instance_patch_states", {"InstancePatchStates": [
        {"InstanceId": node_id, "PatchGroup": "prod-web", "BaselineId": "pb-0123456789abcdef0",
         "OperationStartTime": "2026-11-01T03:00:00Z", "OperationEndTime":
         "2026-11-01T03:05:00Z", "Operation": "Scan", "MissingCount": 0}]},
        {"InstanceIds": [node_id], "MaxResults": 50})
    stub.add("list_resource_compliance_summaries", {"ResourceComplianceSummaryItems": [
        {"ComplianceType": "Patch", "ResourceId": node_id, "Status": "COMPLIANT"}]},
        {"Filters": [{"Key": "ComplianceType", "Values": ["Patch"], "Type": "EQUAL"}],
         "MaxResults": 50})
    stub.add("describe_patch_groups", {"Mappings": []}, {"MaxResults": 100})


def by_node(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["node_id"]: row for row in rows}


@pytest.fixture
def fleet() -> StubFactory:
    """acme's us-east-1 from the fixture file, behind a stubbed AssumeRole."""
    factory = StubFactory()
    stub_role(factory, ACME, "acme", KEY_ACME)
    factory.stub("ssm", "us-east-1", KEY_ACME).add_calls(load_calls("api_us_east_1.json"))
    return factory


def test_one_region_normalizes_every_table(fleet: StubFactory) -> None:
    snap = collect_api([("acme", ACME)], NOW, client_factory=fleet)
    fleet.assert_all_called()  # every page of every paginated call was requested
    assert fleet.requests == [("sts", "us-east-1", None), ("ssm", "us-east-1", KEY_ACME)]
    assert snap.row_counts() == {"nodes": 5, "patch_states": 4, "compliance": 4,
                                 "patches": 7, "patch_groups": 2, "errors": 0}
    for name in snap:
        for row in snap.rows(name):
            assert (row["tenant_id"], row["account_id"], row["region"], row["source"]) == (
                "acme", "111111111111", "us-east-1", "api")
            assert row["snapshot_at"] == NOW

    nodes = by_node(snap.rows("nodes"))
    assert [n for n, r in nodes.items() if r["is_hybrid"]] == [HYBRID]
    assert nodes[HYBRID]["resource_type"] == "ManagedInstance"
    assert nodes[NEW]["node_state"] == "active"  # Online: the node runs
    assert nodes[LOST]["node_state"] is None  # ConnectionLost: stopped or broken, unknown
    assert nodes[WEB2]["last_ping_at"] == datetime(2026, 11, 2, 5, 59, 40, tzinfo=UTC)

    # Never scanned: a managed node with no patch state and no compliance summary.
    states, compliance = by_node(snap.rows("patch_states")), by_node(snap.rows("compliance"))
    assert NEW in nodes and NEW not in states and NEW not in compliance
    # Stale: the hybrid node's last operation ended 12 days before the snapshot.
    assert NOW - states[HYBRID]["operation_end_at"] > timedelta(days=7)
    expected = {"patch_group": "prod-db", "operation": "Install", "reboot_option": "NoReboot",
                "missing_count": 1, "failed_count": 1, "installed_pending_reboot_count": 1,
                "critical_noncompliant_count": 2, "security_noncompliant_count": 3}
    assert {key: states[HYBRID][key] for key in expected} == expected
    assert states[LOST]["critical_noncompliant_count"] is None  # absent, not zero

    assert {n: r["status"] for n, r in compliance.items()} == {
        "i-0a1b2c3d4e5f60001": "COMPLIANT", WEB2: "NON_COMPLIANT", HYBRID: "NON_COMPLIANT",
        LOST: "COMPLIANT"}
    assert (compliance[WEB2]["noncompliant_critical"], compliance[WEB2]["noncompliant_high"],
            compliance[WEB2]["noncompliant_count"]) == (1, 1, 2)
    assert compliance[LOST]["noncompliant_critical"] is None
    assert compliance[HYBRID]["execution_at"] == datetime(2026, 10, 21, 1, 0, tzinfo=UTC)


def test_patch_states_from_pascal_and_upper_snake_wire_forms(fleet: StubFactory) -> None:
    patches = collect_api([("acme", ACME)], NOW, client_factory=fleet).rows("patches")
    # Only the NON_COMPLIANT nodes are listed, page after page, in order.
    assert [(p["node_id"], p["kb_id"], p["state"]) for p in patches] == [
        (WEB2, "KB5066782", "Missing"), (WEB2, "KB5065428", "Installed"),
        (WEB2, "KB5066131", "Missing"), (WEB2, "KB890830", "InstalledOther"),
        (HYBRID, "linux-image-5.15.0-124-generic", "Missing"),
        (HYBRID, "openssh-server", "InstalledPendingReboot"), (HYBRID, "libssl3", "Failed"),
    ]
    rows = {p["kb_id"]: p for p in patches}
    assert rows["KB5066782"]["installed_at"] is None  # epoch 0 on the wire
    assert rows["KB5066782"]["cve_ids"] == "CVE-2026-20001,CVE-2026-20017"
    assert rows["KB5065428"]["installed_at"] == datetime(2026, 9, 15, 4, 12, tzinfo=UTC)
    # Empty strings are absent values.
    assert (rows["KB890830"]["classification"], rows["KB890830"]["severity"],
            rows["KB890830"]["cve_ids"]) == (None, None, None)
    assert rows["openssh-server"]["severity"] == "Critical"


def test_patch_groups_and_hybrid_flags(fleet: StubFactory) -> None:
    snap = collect_api([("acme", ACME)], NOW, client_factory=fleet)
    groups = {g["patch_group"]: g for g in snap.rows("patch_groups")}
    assert groups["prod-web"]["baseline_name"] == "msp-web-baseline"
    assert groups["prod-web"]["default_baseline"] is False
    assert groups["prod-db"]["default_baseline"] is True
    assert groups["prod-db"]["operating_system"] == "UBUNTU"
    assert Counter(n["is_hybrid"] for n in snap.rows("nodes")) == {False: 4, True: 1}


def test_assume_role_per_account_and_a_broken_role_is_isolated() -> None:
    globex = AwsAccount("222222222222", "arn:aws:iam::222222222222:role/AlertWhispererSSMRead",
                        "aw-ext-globex-41bd", ("us-east-1", "eu-west-1"))
    initech = AwsAccount("333333333333", "arn:aws:iam::333333333333:role/AWRead",
                         "aw-ext-initech-c0de", ("eu-west-1",))
    factory = StubFactory()
    stub_role(factory, ACME, "acme", KEY_ACME)
    # The client removed the External ID condition's value we know: STS says AccessDenied.
    factory.stub("sts", "us-east-1").add_error(
        "assume_role", "AccessDenied",
        "User: arn:aws:sts::999999999999:assumed-role/aw-platform/i-0123 is not authorized to "
        "perform: sts:AssumeRole on resource: " + globex.role_arn, assume_params(globex, "globex"),
        status=403)
    stub_role(factory, initech, "initech", "ASIAINITECHEXAMPLE03")
    add_small_region(factory.stub("ssm", "us-east-1", KEY_ACME), "i-0aaaaaaaaaaaaaaa1")
    add_small_region(factory.stub("ssm", "eu-west-1", "ASIAINITECHEXAMPLE03"),
                     "i-0ccccccccccccccc3")

    snap = collect_api([("acme", ACME), ("globex", globex), ("initech", initech)], NOW,
                       client_factory=factory)
    factory.assert_all_called()  # each AssumeRole carried its own account's External ID
    assert [(n["tenant_id"], n["account_id"], n["region"]) for n in snap.rows("nodes")] == [
        ("acme", "111111111111", "us-east-1"), ("initech", "333333333333", "eu-west-1")]
    errors = snap.rows("errors")
    assert [(e["tenant_id"], e["account_id"], e["region"], e["stage"], e["error_code"])
            for e in errors] == [
        ("globex", "222222222222", "us-east-1", "assume_role", "AccessDenied"),
        ("globex", "222222222222", "eu-west-1", "assume_role", "AccessDenied")]
    assert "not authorized" in errors[0]["message"]
    assert all(globex.external_id not in e["message"] for e in errors)


def test_a_failed_region_is_isolated_and_its_message_redacted(fleet: StubFactory) -> None:
    account = AwsAccount(ACME.account_id, ACME.role_arn, ACME.external_id,
                         ("us-east-1", "eu-west-1"))
    secret = f"session-token-of-{ACME.account_id}-FwoGZXIvYXdzEJr"
    fleet.stub("ssm", "eu-west-1", KEY_ACME).add_error(
        "describe_instance_information", "AccessDeniedException",
        f"User with key {KEY_ACME} and token {secret} is not authorized to perform "
        "ssm:DescribeInstanceInformation (SCP denies eu-west-1)", {"MaxResults": 50})
    snap = collect_api([("acme", account)], NOW, client_factory=fleet)
    fleet.assert_all_called()
    assert snap.row_counts()["nodes"] == 5  # us-east-1 complete
    [error] = snap.rows("errors")
    assert (error["region"], error["stage"], error["error_code"]) == (
        "eu-west-1", "DescribeInstanceInformation", "AccessDeniedException")
    assert KEY_ACME not in error["message"] and secret not in error["message"]
    assert "*** and token ***" in error["message"]


def test_throttling_backs_off_then_succeeds() -> None:
    factory, sleeps = StubFactory(), list[float]()
    stub_role(factory, ACME, "acme", KEY_ACME)
    ssm = factory.stub("ssm", "us-east-1", KEY_ACME)
    ssm.add_error("describe_instance_information", "ThrottlingException", "Rate exceeded",
                  {"MaxResults": 50})
    ssm.add_error("describe_instance_information", "ThrottlingException", "Rate exceeded",
                  {"MaxResults": 50})
    add_small_region(ssm, "i-0aaaaaaaaaaaaaaa1")
    snap = collect_api([("acme", ACME)], NOW, client_factory=factory, sleep=sleeps.append)
    factory.assert_all_called()
    assert snap.row_counts()["nodes"] == 1 and snap.row_counts()["errors"] == 0
    # Jittered exponential backoff: within [ceiling/2, ceiling] for ceilings 1 s then 2 s.
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_throttling_that_lasts_becomes_an_error_row() -> None:
    factory, sleeps = StubFactory(), list[float]()
    stub_role(factory, ACME, "acme", KEY_ACME)
    ssm = factory.stub("ssm", "us-east-1", KEY_ACME)
    for _ in range(3):
        ssm.add_error("describe_instance_information", "ThrottlingException", "Rate exceeded",
                      {"MaxResults": 50})
    snap = collect_api([("acme", ACME)], NOW, client_factory=factory, sleep=sleeps.append,
                       max_throttle_retries=2)
    factory.assert_all_called()
    assert len(sleeps) == 2
    [error] = snap.rows("errors")
    assert (error["stage"], error["error_code"]) == (
        "DescribeInstanceInformation", "ThrottlingException")


def test_patch_states_are_requested_50_ids_at_a_time() -> None:
    ids = [f"i-0{n:016x}" for n in range(120)]
    factory = StubFactory()
    stub_role(factory, ACME, "acme", KEY_ACME)
    ssm = factory.stub("ssm", "us-east-1", KEY_ACME)
    for page, start in enumerate(range(0, 120, 50)):
        token = {"NextToken": f"t{page}"} if page else {}
        more = {"NextToken": f"t{page + 1}"} if start + 50 < 120 else {}
        ssm.add("describe_instance_information", {"InstanceInformationList": [
            {"InstanceId": i, "PingStatus": "Online"} for i in ids[start:start + 50]], **more},
            {"MaxResults": 50, **token})
    for start in range(0, 120, 50):
        batch = ids[start:start + 50]
        ssm.add("describe_instance_patch_states", {"InstancePatchStates": [
            {"InstanceId": i, "PatchGroup": "prod-web", "BaselineId": "pb-0123456789abcdef0",
             "OperationStartTime": "2026-11-01T03:00:00Z",
             "OperationEndTime": "2026-11-01T03:05:00Z", "Operation": "Scan"} for i in batch]},
            {"InstanceIds": batch, "MaxResults": 50})
    ssm.add("list_resource_compliance_summaries", {"ResourceComplianceSummaryItems": []},
            {"Filters": [{"Key": "ComplianceType", "Values": ["Patch"], "Type": "EQUAL"}],
             "MaxResults": 50})
    ssm.add("describe_patch_groups", {"Mappings": []}, {"MaxResults": 100})
    snap = collect_api([("acme", ACME)], NOW, client_factory=factory)
    factory.assert_all_called()  # exactly three batches: 50, 50 and 20 ids
    assert [r["node_id"] for r in snap.rows("patch_states")] == ids
    assert snap.row_counts()["nodes"] == 120


class _TimesOutFor:
    """A client whose DescribeInstancePatches times out for one node (a transport error)."""

    def __init__(self, client: Any, node_id: str) -> None:
        self.client, self.node_id = client, node_id

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if name != "describe_instance_patches":
            return method

        def call(**params: Any) -> Any:
            if params["InstanceId"] == self.node_id:
                raise ReadTimeoutError(endpoint_url="https://ssm.us-east-1.amazonaws.com/")
            return method(**params)
        return call


def test_a_timeout_on_one_node_is_recorded_and_the_others_collected() -> None:
    factory = StubFactory()
    stub_role(factory, ACME, "acme", KEY_ACME)
    calls = [c for c in load_calls("api_us_east_1.json")
             if c["expected_params"].get("InstanceId") != WEB2]
    stubbed = factory.stub("ssm", "us-east-1", KEY_ACME)
    stubbed.add_calls(calls)
    stubbed.client = _TimesOutFor(stubbed.client, WEB2)
    snap = collect_api([("acme", ACME)], NOW, client_factory=factory)
    factory.assert_all_called()
    assert {p["node_id"] for p in snap.rows("patches")} == {HYBRID}
    [error] = snap.rows("errors")
    assert (error["stage"], error["error_code"]) == ("DescribeInstancePatches",
                                                     "ReadTimeoutError")
    assert error["message"].startswith(f"{WEB2}: Read timeout")


def test_a_repeated_next_token_is_an_error_not_a_loop() -> None:
    factory = StubFactory()
    stub_role(factory, ACME, "acme", KEY_ACME)
    ssm = factory.stub("ssm", "us-east-1", KEY_ACME)
    ssm.add("describe_instance_information", {"InstanceInformationList": [], "NextToken": "x"},
            {"MaxResults": 50})
    ssm.add("describe_instance_information", {"InstanceInformationList": [], "NextToken": "x"},
            {"MaxResults": 50, "NextToken": "x"})
    snap = collect_api([("acme", ACME)], NOW, client_factory=factory)
    factory.assert_all_called()
    assert [(e["stage"], e["error_code"]) for e in snap.rows("errors")] == [
        ("DescribeInstanceInformation", "PaginationError")]


@pytest.mark.parametrize("kwargs, message", [
    ({"account_id": "1111"}, "12 digits"),
    ({"role_arn": "arn:aws:iam::999999999999:role/X"}, "not in account"),
    ({"external_id": "x"}, "2-1224"),
    ({"regions": ()}, "no regions"),
])
def test_account_validation(kwargs: dict[str, Any], message: str) -> None:
    fields = {"account_id": ACME.account_id, "role_arn": ACME.role_arn,
              "external_id": ACME.external_id, "regions": ACME.regions, **kwargs}
    with pytest.raises(ValueError, match=message):
        AwsAccount(**fields)


def test_external_id_stays_out_of_repr_and_durations_stay_in_range() -> None:
    assert ACME.external_id not in repr(ACME)
    with pytest.raises(ValueError, match="900-3600"):
        collect_api([], NOW, duration_seconds=43200)
    with pytest.raises(ValueError, match="timezone-aware"):
        collect_api([], datetime(2026, 11, 2))


def test_default_client_factory_sets_timeouts_retries_and_credentials() -> None:
    from warehouse.ssm.api import TemporaryCredentials

    creds = TemporaryCredentials("ASIAEXAMPLEEXAMPLE01", "secret", "token")
    client = default_client_factory("ssm", "eu-west-1", creds)
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5.0, 30.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "ASIAEXAMPLEEXAMPLE01"
    assert "secret" not in repr(creds) and "token" not in repr(creds)
