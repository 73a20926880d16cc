"""`aw pipeline run`: progress, a JSON summary, "up to date", and clear errors."""

from __future__ import annotations

import json

import duckdb
import pytest
from click.testing import CliRunner

from service.cli import main
from tests.pipelines.conftest import at, write
from tests.support.servers import free_port
from warehouse import incremental, models
from warehouse.config import platform_settings


def test_run_prints_progress_then_reports_up_to_date(lake) -> None:
    write(lake, [{"id": "e1", "t": at("10:00:00")}, {"id": "e2", "t": at("10:05:00")}])
    result = CliRunner().invoke(main, ["pipeline", "run"])
    assert result.exit_code == 0, result.output
    assert "staging 1 new lake file(s) of 1 receive day(s): 2026-11-02" in result.output
    assert "✓ marts/fct_noise_daily  1 rows" in result.output
    assert f"published {platform_settings().resolved_warehouse_path}" in result.output
    again = CliRunner().invoke(main, ["pipeline", "run", "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["up_to_date"] is True and summary["days_staged"] == []


def test_json_summary_lists_steps_and_checks(lake) -> None:
    write(lake, [{"id": "e1", "t": at("10:00:00")}])
    result = CliRunner().invoke(main, ["pipeline", "run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["days_staged"] == ["2026-11-02"]
    assert summary["steps"]["marts/fct_incidents"]["dagster/row_count"] == 1
    assert summary["checks_run"] >= 15
    assert summary["checks_failed"] == ["staging/stg_events:raw_data_fresh"]  # a warning


def test_unreachable_lake_is_a_clear_error(data_dir, monkeypatch) -> None:
    monkeypatch.setenv("AW_LAKE_URI", "s3://aw-nowhere/lake")
    monkeypatch.setenv("AW_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    platform_settings.cache_clear()
    result = CliRunner().invoke(main, ["pipeline", "run"])
    assert result.exit_code == 1
    assert "Error: cannot list" in result.output
    assert "Traceback" not in result.output


def test_a_failing_blocking_check_stops_the_run_before_publishing(lake, monkeypatch) -> None:
    import duckdb

    from warehouse import models
    from warehouse.publish import connect_readonly

    monkeypatch.setattr(models, "FULL_REBUILD_SHARE", 10.0)  # refresh, even this tiny table

    write(lake, [{"id": "e1", "t": at("10:00:00")}], prefix="one")
    assert CliRunner().invoke(main, ["pipeline", "run"]).exit_code == 0
    settings = platform_settings()
    published = settings.resolved_warehouse_path.resolve()
    # a duplicated row outside any later refresh's scope (in the table the mart is a view
    # of): the mart's key check must catch it
    build = duckdb.connect(str(settings.data_dir / "pipeline" / "build.duckdb"))
    build.execute("INSERT INTO intermediate.int_event_decisions "
                  "SELECT * FROM intermediate.int_event_decisions").fetchall()
    build.close()
    write(lake, [{"id": "e2", "t": at("12:00:00")}], first_seq=2, prefix="two")
    result = CliRunner().invoke(main, ["pipeline", "run"])
    assert result.exit_code == 1, result.output
    assert "✗ check marts/fct_incident_events:unique_not_null_key: 1 duplicate" in result.output
    assert "nothing was published" in result.output and "Traceback" not in result.output
    assert settings.resolved_warehouse_path.resolve() == published
    reader = connect_readonly(settings.resolved_warehouse_path)
    assert reader.execute("SELECT count(*) FROM marts.fct_incident_events").fetchall() == [(1,)]
    reader.close()


@pytest.mark.parametrize("variable", ["AW_BUILD_MEMORY_LIMIT", "AW_CORRELATION_MEMORY_LIMIT"])
def test_a_bad_memory_limit_is_a_clear_error(lake, monkeypatch, variable) -> None:
    write(lake, [{"id": "e1", "t": at("10:00:00")}])
    monkeypatch.setenv(variable, "lots")
    platform_settings.cache_clear()
    result = CliRunner().invoke(main, ["pipeline", "run"])
    assert result.exit_code == 1
    assert f"Error: {variable}='lots' is not a memory size" in result.output
    assert "Traceback" not in result.output


def test_the_correlation_step_runs_under_its_own_memory_limit(lake, monkeypatch) -> None:
    """DuckDB gets AW_CORRELATION_MEMORY_LIMIT while the engine holds its batches, and the
    models get AW_BUILD_MEMORY_LIMIT back."""
    write(lake, [{"id": "e1", "t": at("10:00:00")}])
    monkeypatch.setenv("AW_BUILD_MEMORY_LIMIT", "700MB")
    monkeypatch.setenv("AW_CORRELATION_MEMORY_LIMIT", "300MB")
    platform_settings.cache_clear()
    seen: dict[str, str] = {}

    def limit(con) -> str:
        return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])

    def spying(module, name: str):
        real = getattr(module, name)

        def spy(con, *args, **kwargs):
            seen.setdefault(name, limit(con))
            return real(con, *args, **kwargs)
        monkeypatch.setattr(module, name, spy)

    spying(incremental, "correlate_staged")
    spying(models, "build")
    result = CliRunner().invoke(main, ["pipeline", "run"])
    assert result.exit_code == 0, result.output
    expected = {}
    for name, value in (("correlate_staged", "300MB"), ("build", "700MB")):
        with duckdb.connect(config={"memory_limit": value}) as con:
            expected[name] = limit(con)
    assert seen == expected and expected["build"] != expected["correlate_staged"]
