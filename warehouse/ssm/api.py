"""The API path: collect a patch snapshot from each client account through STS AssumeRole.

Per account: one `AssumeRole` (with the client's External ID) from the platform's own
identity; then, per region and with the temporary credentials:

1. `DescribeInstanceInformation` (paginated): every managed node, `i-…` and hybrid `mi-…`.
2. `DescribeInstancePatchStates` for those nodes, at most 50 ids per call (the API's limit),
   each batch paginated.
3. `ListResourceComplianceSummaries` filtered on `ComplianceType = Patch` (paginated): the
   status that decides compliance.
4. `DescribeInstancePatches` (paginated) for each node whose summary is `NON_COMPLIANT`: the
   patches behind the counts. Compliant nodes are not listed (their patches are all
   installed or not applicable; listing them would multiply the calls by the fleet size).
5. `DescribePatchGroups` (paginated): which baseline each patch group uses.

Decisions:
- Failures are isolated: a role that cannot be assumed gives one `errors` row per region of
  that account (stage `assume_role`); a failed call gives one row (stage = the operation) and
  the collection moves on (a failed node listing ends that region, since every later step
  needs it). Only AWS errors (`ClientError`, `BotoCoreError`: denied, throttled too long,
  timeouts, unreachable endpoints) are caught; a bug in this module still raises.
- Error messages are redacted: the temporary credentials, the External ID and anything that
  looks like an access key id are replaced by `***`.
- Retries: botocore retries transient errors and throttling itself (standard mode, 3
  attempts, explicit connect/read timeouts); a throttling error that escapes those gets a
  slower, jittered exponential backoff (`calls.Caller`).
- `DurationSeconds` defaults to 3600: the longest that is valid for every role (a role's
  maximum session is at least one hour, and role chaining caps sessions at one hour).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import boto3
from botocore.config import Config

from warehouse.ssm import normalize as nz
from warehouse.ssm.api_rows import (
    compliance_row,
    node_row,
    patch_group_row,
    patch_row,
    patch_state_row,
)
from warehouse.ssm.calls import AWS_ERRORS, Caller, error_code, error_message, redact
from warehouse.ssm.schema import TABLES
from warehouse.ssm.snapshot import Snapshot

SOURCE = "api"
MAX_IDS_PER_PATCH_STATES_CALL = 50  # DescribeInstancePatchStates: InstanceIds holds 1-50 ids
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_SESSION_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")
_PATCH_FILTER = [{"Key": "ComplianceType", "Values": ["Patch"], "Type": "EQUAL"}]

Rows = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class AwsAccount:
    """A client account the platform reads through a role that trusts it.

    `external_id` is the value the client put in the role's `sts:ExternalId` condition; it
    is kept out of `repr` (it is not a secret in AWS's sense, but it should not sit in logs).
    """

    account_id: str
    role_arn: str
    external_id: str = field(repr=False)
    regions: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", tuple(self.regions))
        if not _ACCOUNT_ID.match(self.account_id):
            raise ValueError(f"AWS account id must be 12 digits, got {self.account_id!r}")
        if f":{self.account_id}:" not in self.role_arn:
            raise ValueError(f"role ARN {self.role_arn!r} is not in account {self.account_id}")
        if not 2 <= len(self.external_id) <= 1224:
            raise ValueError("External ID must be 2-1224 characters (STS AssumeRole limit)")
        if not self.regions:
            raise ValueError(f"account {self.account_id} has no regions to collect")


@dataclass(frozen=True)
class TemporaryCredentials:
    """The credentials AssumeRole returned (never logged: the secret parts stay out of repr)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime | None = None

    def secrets(self) -> tuple[str, ...]:
        return (self.access_key_id, self.secret_access_key, self.session_token)


class ClientFactory(Protocol):
    """Makes a boto3-style client: `credentials` is None for the platform's own identity."""

    def __call__(
        self, service: str, region: str, credentials: TemporaryCredentials | None
    ) -> Any: ...


def client_config(connect_timeout: float = 5.0, read_timeout: float = 30.0) -> Config:
    """Explicit timeouts and botocore's standard retry mode (throttling-aware backoff)."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="alert-whisperer-ssm",
    )


def default_client_factory(
    service: str, region: str, credentials: TemporaryCredentials | None
) -> Any:
    """A real boto3 client; without credentials it uses the default chain (the platform)."""
    kwargs: dict[str, Any] = {}
    if credentials is not None:
        kwargs = {
            "aws_access_key_id": credentials.access_key_id,
            "aws_secret_access_key": credentials.secret_access_key,
            "aws_session_token": credentials.session_token,
        }
    session = boto3.session.Session()
    return session.client(service, region_name=region, config=client_config(), **kwargs)


def collect_api(
    accounts: Sequence[tuple[str, AwsAccount]],
    now: datetime,
    *,
    client_factory: ClientFactory | None = None,
    session_name: str | None = None,
    duration_seconds: int = 3600,
    sts_region: str = "us-east-1",
    sleep: Callable[[float], None] = time.sleep,
    max_throttle_retries: int = 4,
) -> Snapshot:
    """One snapshot of every (tenant, account) pair, each over its regions.

    `session_name` defaults to `alert-whisperer-<tenant>` (it shows in the client's
    CloudTrail). `sleep` is injectable so tests do not wait through backoff.
    """
    if not 900 <= duration_seconds <= 3600:
        raise ValueError("duration_seconds must be 900-3600 (valid for any role, even chained)")
    collector = _Collector(
        now=nz.snapshot_now(now),
        factory=client_factory or default_client_factory,
        caller=Caller(sleep=sleep, max_throttle_retries=max_throttle_retries),
        duration_seconds=duration_seconds,
        sts_region=sts_region,
    )
    rows: Rows = {name: [] for name in TABLES}
    for tenant_id, account in accounts:
        name = session_name or f"alert-whisperer-{tenant_id}"
        collector.collect_account(rows, tenant_id, account, _session_name(name))
    return Snapshot.from_rows(rows)


def _session_name(name: str) -> str:
    """RoleSessionName allows 2-64 characters of `[\\w+=,.@-]`."""
    safe = _SESSION_NAME_UNSAFE.sub("-", name)[:64]
    return safe if len(safe) >= 2 else "alert-whisperer"


@dataclass
class _Collector:
    now: datetime
    factory: ClientFactory
    caller: Caller
    duration_seconds: int
    sts_region: str

    def collect_account(
        self, rows: Rows, tenant_id: str, account: AwsAccount, session_name: str
    ) -> None:
        secrets: tuple[str, ...] = (account.external_id,)
        try:
            sts = self.factory("sts", self.sts_region, None)
            response = self.caller.call(sts, "assume_role", {
                "RoleArn": account.role_arn,
                "RoleSessionName": session_name,
                "ExternalId": account.external_id,
                "DurationSeconds": self.duration_seconds,
            })
        except AWS_ERRORS as exc:
            for region in account.regions:
                rows["errors"].append(
                    self._error(self._keys(tenant_id, account, region), "assume_role", exc, secrets)
                )
            return
        raw = response["Credentials"]
        credentials = TemporaryCredentials(
            raw["AccessKeyId"], raw["SecretAccessKey"], raw["SessionToken"], raw.get("Expiration")
        )
        secrets = (*secrets, *credentials.secrets())
        for region in account.regions:
            keys = self._keys(tenant_id, account, region)
            try:
                ssm = self.factory("ssm", region, credentials)
            except AWS_ERRORS as exc:
                rows["errors"].append(self._error(keys, "client", exc, secrets))
                continue
            _Region(self, ssm, keys, secrets, rows).collect()

    def _keys(self, tenant_id: str, account: AwsAccount, region: str) -> dict[str, Any]:
        return {"tenant_id": tenant_id, "account_id": account.account_id, "region": region,
                "snapshot_at": self.now, "source": SOURCE}

    @staticmethod
    def _error(
        keys: Mapping[str, Any], stage: str, exc: BaseException, secrets: Sequence[str],
        subject: str | None = None,
    ) -> dict[str, Any]:
        message = redact(error_message(exc), secrets)
        if subject:
            message = f"{subject}: {message}"
        return {**keys, "stage": stage, "error_code": error_code(exc), "message": message[:1000]}


@dataclass
class _Region:
    """The five calls for one account and region, appending rows as it goes."""

    owner: _Collector
    ssm: Any
    keys: dict[str, Any]
    secrets: Sequence[str]
    rows: Rows

    def collect(self) -> None:
        node_ids = self._nodes()
        if node_ids is None:
            return
        for start in range(0, len(node_ids), MAX_IDS_PER_PATCH_STATES_CALL):
            self._patch_states(node_ids[start:start + MAX_IDS_PER_PATCH_STATES_CALL])
        for node_id in self._compliance():
            self._patches(node_id)
        self._patch_groups()

    def _fail(self, stage: str, exc: BaseException, subject: str | None = None) -> None:
        self.rows["errors"].append(self.owner._error(self.keys, stage, exc, self.secrets, subject))

    def _pages(self, method: str, params: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        return list(self.owner.caller.pages(self.ssm, method, params, key))

    def _nodes(self) -> list[str] | None:
        try:
            infos = self._pages("describe_instance_information", {"MaxResults": 50},
                                "InstanceInformationList")
        except AWS_ERRORS as exc:
            self._fail("DescribeInstanceInformation", exc)
            return None
        self.rows["nodes"].extend(node_row(self.keys, info) for info in infos)
        return [info["InstanceId"] for info in infos]

    def _patch_states(self, batch: list[str]) -> None:
        try:
            states = self._pages("describe_instance_patch_states",
                                 {"InstanceIds": batch, "MaxResults": 50}, "InstancePatchStates")
        except AWS_ERRORS as exc:
            self._fail("DescribeInstancePatchStates", exc, f"{len(batch)} node(s) from {batch[0]}")
            return
        self.rows["patch_states"].extend(patch_state_row(self.keys, s) for s in states)

    def _compliance(self) -> list[str]:
        """Append the Patch compliance rows; return the NON_COMPLIANT node ids."""
        try:
            items = self._pages("list_resource_compliance_summaries",
                                {"Filters": _PATCH_FILTER, "MaxResults": 50},
                                "ResourceComplianceSummaryItems")
        except AWS_ERRORS as exc:
            self._fail("ListResourceComplianceSummaries", exc)
            return []
        noncompliant: list[str] = []
        for item in items:
            if item.get("ComplianceType", "Patch") != "Patch":
                continue
            row = compliance_row(self.keys, item)
            if row["status"] is None:  # the model does not mark Status required
                self.rows["errors"].append({
                    **self.keys, "stage": "ListResourceComplianceSummaries",
                    "error_code": "MissingStatus",
                    "message": f"{row['node_id']}: compliance summary without a status, skipped",
                })
                continue
            self.rows["compliance"].append(row)
            if row["status"] == "NON_COMPLIANT":
                noncompliant.append(row["node_id"])
        return noncompliant

    def _patches(self, node_id: str) -> None:
        try:
            patches = self._pages("describe_instance_patches",
                                  {"InstanceId": node_id, "MaxResults": 100}, "Patches")
        except AWS_ERRORS as exc:
            self._fail("DescribeInstancePatches", exc, node_id)
            return
        self.rows["patches"].extend(patch_row(self.keys, node_id, p) for p in patches)

    def _patch_groups(self) -> None:
        try:
            mappings = self._pages("describe_patch_groups", {"MaxResults": 100}, "Mappings")
        except AWS_ERRORS as exc:
            self._fail("DescribePatchGroups", exc)
            return
        self.rows["patch_groups"].extend(
            patch_group_row(self.keys, m) for m in mappings if nz.text(m.get("PatchGroup"))
        )
