"""Stubber-backed AWS clients for the SSM API path.

moto implements none of the SSM patch and compliance calls, so tests queue responses with
`botocore.stub.Stubber`, which checks every request and every response against the real
botocore service model (unknown or missing members, wrong types, too-short strings, lists
over their limits). Timestamps in fixtures are ISO strings or epoch numbers and are turned
into datetimes with botocore's own parser, which is what code sees from the real wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.session
from botocore.model import Shape
from botocore.stub import Stubber
from botocore.utils import parse_timestamp

from warehouse.ssm.api import TemporaryCredentials

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime.fromisoformat("2026-11-02T06:00:00+00:00")
_SESSION = botocore.session.get_session()


def load_calls(name: str) -> list[dict[str, Any]]:
    """The `calls` list of a fixture file: method, expected_params, response."""
    calls: list[dict[str, Any]] = json.loads((FIXTURES / name).read_text())["calls"]
    return calls


def parsed(shape: Shape | None, value: Any) -> Any:
    """`value` as botocore would hand it to code: timestamps become datetimes."""
    if shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        members = shape.members
        return {k: parsed(members.get(k), v) for k, v in value.items()}
    if kind == "list":
        return [parsed(shape.member, v) for v in value]
    if kind == "map":
        return {k: parsed(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        return parse_timestamp(value)
    return value


def make_client(service: str, region: str) -> Any:
    return _SESSION.create_client(
        service, region_name=region, aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Stubbed:
    """One client and its Stubber; `add` queues a response (or error) with exact params."""

    client: Any
    stubber: Stubber

    def add(self, method: str, response: dict[str, Any], params: dict[str, Any]) -> None:
        operation = self.client.meta.method_to_api_mapping[method]
        shape = self.client.meta.service_model.operation_model(operation).output_shape
        self.stubber.add_response(method, parsed(shape, response), params)

    def add_calls(self, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            self.add(call["method"], call["response"], call["expected_params"])

    def add_error(self, method: str, code: str, message: str, params: dict[str, Any],
                  status: int = 400) -> None:
        self.stubber.add_client_error(method, service_error_code=code, service_message=message,
                                      http_status_code=status, expected_params=params)


@dataclass
class StubFactory:
    """A `client_factory` handing out stubbed clients keyed by (service, region, key id).

    STS clients are made without credentials (the platform's identity); SSM clients must be
    made with the temporary credentials of the right account, which the key id identifies.
    """

    stubs: dict[tuple[str, str, str | None], Stubbed] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def stub(self, service: str, region: str, access_key_id: str | None = None) -> Stubbed:
        key = (service, region, access_key_id)
        if key not in self.stubs:
            client = make_client(service, region)
            stubber = Stubber(client)
            stubber.activate()
            self.stubs[key] = Stubbed(client, stubber)
        return self.stubs[key]

    def __call__(
        self, service: str, region: str, credentials: TemporaryCredentials | None
    ) -> Any:
        key = (service, region, credentials.access_key_id if credentials else None)
        self.requests.append(key)
        if key not in self.stubs:
            raise AssertionError(f"no stubbed client for {key}")
        return self.stubs[key].client

    def assert_all_called(self) -> None:
        for stubbed in self.stubs.values():
            stubbed.stubber.assert_no_pending_responses()


def assume_role_response(access_key_id: str, account_id: str) -> dict[str, Any]:
    """An AssumeRole answer whose key id tells which account's credentials these are."""
    return {
        "Credentials": {
            "AccessKeyId": access_key_id,
            "SecretAccessKey": f"secret-of-{account_id}-wJalrXUtnFEMI/K7MDENG",
            "SessionToken": f"session-token-of-{account_id}-FwoGZXIvYXdzEJr",
            "Expiration": "2026-11-02T07:00:00Z",
        },
        "AssumedRoleUser": {
            "AssumedRoleId": f"AROA3XFRBF535PLBIFPI4:alert-whisperer-{account_id}",
            "Arn": f"arn:aws:sts::{account_id}:assumed-role/AlertWhispererSSMRead/aw",
        },
    }
