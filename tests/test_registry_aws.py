"""Client AWS accounts in the registry and `aw tenants set --aws-account` (patch compliance)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from service.cli import main
from warehouse.config import platform_settings
from warehouse.registry import Registry, RegistryError
from warehouse.registry_aws import validate_access

ROLE = "arn:aws:iam::123456789012:role/AlertWhispererRead"


@pytest.fixture
def registry(data_dir):
    with Registry.open(platform_settings()) as reg:
        reg.create_tenant("acme", name="Acme")
        reg.create_tenant("globex", name="Globex")
        yield reg


def test_account_with_role_is_stored_sealed_and_handed_to_the_collector(registry) -> None:
    info = registry.set_aws_account("acme", "123456789012", role_arn=ROLE,
                                    external_id="msp-acme-7f3a",
                                    regions=["us-east-1", "eu-west-1", "us-east-1"])
    assert info.regions == ("eu-west-1", "us-east-1")
    assert info.external_id_hint == "…7f3a"
    registry.set_aws_account("acme", "210987654321")  # Resource Data Sync only
    assert [a.account_id for a in registry.aws_accounts("acme")] == ["123456789012",
                                                                   "210987654321"]
    access = {a.account_id: a for a in registry.aws_account_access()}
    assert access["123456789012"].external_id == "msp-acme-7f3a"
    assert access["210987654321"].role_arn is None and access["210987654321"].external_id is None
    raw = sqlite3.connect(platform_settings().registry_path).execute(
        "SELECT external_id_sealed FROM aws_accounts WHERE account_id = '123456789012'"
    ).fetchone()[0]
    assert b"msp-acme-7f3a" not in raw  # never in plain text at rest
    assert registry.get_tenant("acme").aws_accounts[0].role_arn == ROLE


def test_an_account_belongs_to_one_tenant(registry) -> None:
    registry.set_aws_account("acme", "123456789012")
    with pytest.raises(RegistryError, match="belongs to tenant 'acme'"):
        registry.set_aws_account("globex", "123456789012")
    registry.remove_aws_account("acme", "123456789012")
    registry.set_aws_account("globex", "123456789012")
    with pytest.raises(RegistryError, match="has no AWS account"):
        registry.remove_aws_account("acme", "123456789012")


@pytest.mark.parametrize("account,role,external,regions,message", [
    ("12345", None, None, (), "12 digits"),
    ("123456789012", ROLE, None, ("us-east-1",), "go together"),
    ("123456789012", "arn:aws:iam::999999999999:role/x", "abcd", ("us-east-1",),
     "belongs to account 999999999999"),
    ("123456789012", "not-an-arn", "abcd", ("us-east-1",), "invalid role ARN"),
    ("123456789012", ROLE, "abcd", (), "needs --regions"),
    ("123456789012", ROLE, "a", ("us-east-1",), "invalid External ID"),
    ("123456789012", ROLE, "abcd", ("mars-north-1",), "invalid AWS region"),
])
def test_validation_messages(account, role, external, regions, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_access(account, role, external, regions)


def test_cli_sets_shows_and_removes_accounts(registry) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["tenants", "set", "acme", "--aws-account", "123456789012",
                                  "--role-arn", ROLE, "--external-id", "msp-acme-7f3a",
                                  "--regions", "us-east-1,eu-west-1"])
    assert result.exit_code == 0, result.output
    assert "External ID …7f3a" in result.output and "msp-acme-7f3a" not in result.output
    shown = json.loads(runner.invoke(main, ["tenants", "show", "acme", "--json"]).output)
    assert shown["aws_accounts"] == [{"account_id": "123456789012", "role_arn": ROLE,
                                      "external_id": "…7f3a",
                                      "regions": ["eu-west-1", "us-east-1"]}]
    result = runner.invoke(main, ["tenants", "set", "acme", "--remove-aws-account",
                                  "123456789012"])
    assert result.exit_code == 0 and "AWS accounts: none" in result.output


def test_cli_refuses_bad_input_before_writing(registry) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["tenants", "set", "acme", "--role-arn", ROLE])
    assert result.exit_code != 0 and "need --aws-account" in result.output
    result = runner.invoke(main, ["tenants", "set", "acme", "--aws-account", "123456789012",
                                  "--role-arn", ROLE, "--external-id", "abcd",
                                  "--regions", "us-east-1", "--window", "99h"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert registry.aws_accounts("acme") == []  # nothing stored when a setting is bad
