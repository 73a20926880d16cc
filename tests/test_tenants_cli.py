"""`aw tenants …`: JSON shapes, credentials printed once, one-line errors with exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from service.tenants_cli import tenants
from warehouse.config import platform_settings
from warehouse.registry import Registry


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AW_MASTER_KEY", raising=False)
    platform_settings.cache_clear()
    yield tmp_path
    platform_settings.cache_clear()


def run(*args: str) -> Result:
    return CliRunner().invoke(tenants, list(args))


def run_json(*args: str) -> object:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


TOPIC = "arn:aws:sns:us-east-1:123456789012:alarms"


def create(tenant_id: str = "acme") -> dict[str, str]:
    document = run_json("create", tenant_id, "--name", "Acme Corp")
    assert isinstance(document, dict)
    return document


def test_create_json_prints_exactly_the_credentials() -> None:
    document = create()
    assert list(document) == ["tenant_id", "api_key", "hmac_secret"]
    assert document["tenant_id"] == "acme"
    assert document["api_key"].startswith("awk_")
    assert document["hmac_secret"].startswith("awh_")
    with Registry.open(platform_settings()) as registry:
        snapshot = registry.auth_snapshot()
    assert snapshot.tenant_for_key(document["api_key"]) == "acme"
    assert snapshot.secrets_for_tenant["acme"] == (document["hmac_secret"].encode(),)


def test_create_text_warns_that_credentials_are_shown_once() -> None:
    result = run("create", "acme", "--name", "Acme Corp")
    assert result.exit_code == 0
    assert "API key:     awk_" in result.stdout
    assert "HMAC secret: awh_" in result.stdout
    assert "shown only once" in result.stderr


def test_list_and_show_never_print_secrets() -> None:
    issued = create()
    listed = run_json("list")
    assert isinstance(listed, list) and [t["tenant_id"] for t in listed] == ["acme"]
    shown = run_json("show", "acme")
    assert isinstance(shown, dict)
    assert shown["key_prefixes"] == [issued["api_key"][:12]]
    assert shown["secret_count"] == 1
    assert shown["current_settings"]["version"] == 0
    assert shown["current_settings"]["settings"]["window"] == "15m"
    assert shown["settings_history"] == []
    for output in (run("list").output, run("show", "acme").output, json.dumps([listed, shown])):
        assert issued["api_key"] not in output and issued["hmac_secret"] not in output


def test_set_settings_and_options() -> None:
    create()
    document = run_json(
        "set", "acme", "--window", "10m", "--key", "asset, label:env", "--threshold", "3",
        "--stale-after-source", "alertmanager=1h", "--stale-after-source", "zabbix=2h",
        "--effective-at", "2026-01-01T01:00:00+01:00",
        "--no-require-signature", "--rate-limit", "0", "--rate-burst", "10",
    )  # fmt: skip
    assert isinstance(document, dict)
    version = document["settings_version"]
    assert version["version"] == 1
    assert version["effective_at"] == "2026-01-01T00:00:00Z"  # converted to UTC
    assert version["settings"]["key"] == ["asset", "label:env"]
    assert version["settings"]["threshold"] == 3
    assert version["settings"]["stale_after_by_source"] == {"alertmanager": "1h", "zabbix": "2h"}
    tenant = document["tenant"]
    assert (tenant["require_signature"], tenant["rate_limit_per_second"]) == (False, 0.0)
    assert tenant["rate_limit_burst"] == 10

    second = run_json("set", "acme", "--stale-after-source", "zabbix=default", "--cap", "12h")
    assert isinstance(second, dict)
    assert second["settings_version"]["settings"]["stale_after_by_source"] == {"alertmanager": "1h"}
    shown = run_json("show", "acme")
    assert isinstance(shown, dict)
    assert [v["version"] for v in shown["settings_history"]] == [1, 2]
    assert shown["current_settings"]["settings"]["cap"] == "12h"


def test_options_alone_store_no_settings_version() -> None:
    create()
    document = run_json("set", "acme", "--rate-limit", "5.5")
    assert isinstance(document, dict)
    assert document["settings_version"] is None
    assert document["tenant"]["rate_limit_per_second"] == 5.5
    with Registry.open(platform_settings()) as registry:
        assert registry.settings_history("acme") == []


def test_rotate_new_key_and_revoke() -> None:
    issued = create()
    rotated = run_json("rotate-secret", "acme", "--grace", "1h")
    assert isinstance(rotated, dict)
    assert list(rotated) == ["tenant_id", "hmac_secret", "previous_secrets_expire_by"]
    expire_by = datetime.fromisoformat(rotated["previous_secrets_expire_by"])
    assert abs(expire_by - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    with Registry.open(platform_settings()) as registry:
        secrets = registry.auth_snapshot().secrets_for_tenant["acme"]
    assert secrets == (rotated["hmac_secret"].encode(), issued["hmac_secret"].encode())

    new = run_json("new-key", "acme")
    assert isinstance(new, dict) and list(new) == ["tenant_id", "api_key"]
    revoked = run_json("revoke-key", "acme", "--key-prefix", issued["api_key"][:12])
    assert revoked == {"tenant_id": "acme", "revoked": 1, "key_prefixes": [new["api_key"][:12]]}
    assert run_json("revoke-key", "acme", "--all") == {
        "tenant_id": "acme",
        "revoked": 1,
        "key_prefixes": [],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "../x", "--name", "X"], "invalid tenant id '../x'"),
        (["create", "A", "--name", "X"], "invalid tenant id 'A'"),
        (["create", "acme", "--name", "Again"], "tenant 'acme' already exists"),
        (["show", "ghost"], "no tenant 'ghost'"),
        (["new-key", "ghost"], "no tenant 'ghost'"),
        (["set", "acme", "--window", "30s"], "window must be between 1m and 24h, got 30s"),
        (["set", "acme", "--window", "10x"], "window: invalid duration '10x'"),
        (["set", "acme", "--cap", "10m"], "cap must be at least the window (15m), got 10m"),
        (["set", "acme", "--threshold", "1.5"], "--threshold: '1.5' is not an integer"),
        (["set", "acme", "--threshold", "0"], "threshold must be between 1 and 1000, got 0"),
        (["set", "acme", "--key", "host"], "key field 'host' is not one of"),
        (["set", "acme", "--rate-limit", "-1"], "rate limit must be between 0"),
        (["set", "acme", "--rate-burst", "x"], "--rate-burst: 'x' is not an integer"),
        (["set", "acme", "--stale-after-source", "1h"], "expected SOURCE=DURATION"),
        (["set", "acme", "--window", "5m", "--effective-at", "2026-01-01"], "RFC 3339"),
        (["set", "acme", "--effective-at", "2026-01-01T00:00:00Z"], "needs at least one"),
        (["set", "acme"], "nothing to change"),
        (["rotate-secret", "acme", "--grace", "forever"], "--grace: invalid duration 'forever'"),
        (["rotate-secret", "acme", "--grace", "31d"], "grace must be between 0s and 30d"),
        (["revoke-key", "acme"], "exactly one of --key-prefix or --all"),
        (["revoke-key", "acme", "--all", "--key-prefix", "awk_x"], "exactly one of"),
        (["revoke-key", "acme", "--key-prefix", "awk_nothere0"], "no active key with prefix"),
        (["set", "acme", "--sns-topic", "arn:aws:sns:us-east-1:1:x"], "invalid SNS topic ARN"),
        (["set", "acme", "--remove-sns-topic", TOPIC], "tenant 'acme' has no SNS topic"),
        (["set", "acme", "--grafana-signature-header", "X-Sig"], "need --grafana-hmac-secret"),
        (["set", "acme", "--no-grafana-hmac", "--grafana-hmac-secret-file", "x"], "not both"),
        (["set", "acme", "--grafana-hmac-secret-file", "/nonexistent/s"], "cannot read"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(args: list[str], message: str) -> None:
    create()
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_failed_set_changes_nothing() -> None:
    create()
    result = run("set", "acme", "--window", "10m", "--rate-limit", "-1")
    assert result.exit_code == 2
    shown = run_json("show", "acme")
    assert isinstance(shown, dict)
    assert shown["settings_history"] == [] and shown["rate_limit_per_second"] == 10_000.0


def test_grafana_hmac_is_stored_shown_as_configured_and_removed(data_dir: Path) -> None:
    create()
    secret_file = data_dir / "grafana.secret"
    secret_file.write_text("gr4fana-Secret-value\n")
    document = run_json(
        "set", "acme", "--grafana-hmac-secret-file", str(secret_file),
        "--grafana-signature-header", "X-Grafana-Alert-Signature",
        "--grafana-timestamp-header", "X-Grafana-Alert-Timestamp",
    )  # fmt: skip
    assert isinstance(document, dict)
    assert document["tenant"]["grafana_hmac"] == {
        "configured": True,
        "signature_header": "X-Grafana-Alert-Signature",
        "timestamp_header": "X-Grafana-Alert-Timestamp",
    }
    assert document["settings_version"] is None
    with Registry.open(platform_settings()) as registry:
        signing = registry.auth_snapshot().grafana_signing["acme"]
    assert signing.secret == b"gr4fana-Secret-value"  # the trailing newline is not part of it
    shown = run("show", "acme")
    assert "Grafana HMAC: configured, header X-Grafana-Alert-Signature" in shown.stdout
    for output in (shown.output, run("show", "acme", "--json").output, run("list").output):
        assert "gr4fana-Secret-value" not in output

    removed = run_json("set", "acme", "--no-grafana-hmac")
    assert isinstance(removed, dict)
    assert removed["tenant"]["grafana_hmac"]["configured"] is False
    assert "Grafana HMAC: not configured" in run("show", "acme").stdout


def test_bad_grafana_secret_file_is_not_echoed(data_dir: Path) -> None:
    create()
    secret_file = data_dir / "bad.secret"
    secret_file.write_text("has\tcontrol chars\n")
    result = run("set", "acme", "--grafana-hmac-secret-file", str(secret_file))
    assert result.exit_code == 2 and "printable" in result.stderr
    assert "control chars" not in result.output


def test_sns_topics_added_listed_and_removed() -> None:
    create()
    create("beta")
    pattern = "arn:aws:sns:eu-west-1:123456789012:*"
    document = run_json("set", "acme", "--sns-topic", TOPIC, "--sns-topic", pattern)
    assert isinstance(document, dict)
    assert document["tenant"]["sns_topics"] == [pattern, TOPIC]
    assert f"SNS topics: {pattern}, {TOPIC}" in run("show", "acme").stdout
    with Registry.open(platform_settings()) as registry:
        assert registry.auth_snapshot().tenant_for_topic(TOPIC) == "acme"

    taken = run("set", "beta", "--sns-topic", TOPIC)
    assert taken.exit_code == 2
    assert "already belongs to tenant 'acme'" in taken.stderr
    covered = run("set", "beta", "--sns-topic", "arn:aws:sns:eu-west-1:123456789012:x")
    assert covered.exit_code == 2 and "is covered by" in covered.stderr

    after = run_json("set", "acme", "--remove-sns-topic", pattern)
    assert isinstance(after, dict) and after["tenant"]["sns_topics"] == [TOPIC]


def test_a_failed_source_auth_change_stores_nothing() -> None:
    create()
    create("beta")
    run_json("set", "beta", "--sns-topic", TOPIC)
    # The settings are valid, the topic is taken: neither is stored.
    result = run(
        "set", "acme", "--window", "10m", "--sns-topic",
        "arn:aws:sns:us-east-1:123456789012:free", "--sns-topic", TOPIC,
    )  # fmt: skip
    assert result.exit_code == 2
    shown = run_json("show", "acme")
    assert isinstance(shown, dict)
    assert shown["sns_topics"] == [] and shown["settings_history"] == []
    # Bad settings: the topic is not stored either.
    result = run("set", "acme", "--window", "30s", "--sns-topic", TOPIC.replace("alarms", "b"))
    assert result.exit_code == 2
    shown = run_json("show", "acme")
    assert isinstance(shown, dict) and shown["sns_topics"] == []
