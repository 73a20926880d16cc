"""`aw pipeline run`: bring the warehouse up to date once, in-process, and exit (cron, tests)."""

from __future__ import annotations

import json
import logging
import warnings

import click


@click.group()
def pipeline() -> None:
    """Run the pipelines without the Dagster daemon."""


@pipeline.command("run")
@click.option("--json", "as_json", is_flag=True, help="One JSON summary on stdout.")
def run(as_json: bool) -> None:
    """Stage new lake files, correlate, build the marts and publish the warehouse once.

    Does nothing (and says so) when the published warehouse is already up to date.
    """
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*(beta|preview|superseded).*")
    from pipelines.run import PipelineFailed, run_once
    from warehouse.config import SettingsError
    from warehouse.lake import LakeError
    from warehouse.registry import RegistryUnavailable

    def echo(line: str) -> None:
        click.echo(line, err=as_json)

    try:
        summary = run_once(echo=echo)
    except PipelineFailed as exc:
        raise click.ClickException(str(exc)) from None
    except (LakeError, RegistryUnavailable, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({
            "up_to_date": summary.up_to_date, "days_staged": summary.days_staged,
            "steps": {k: {m: v for m, v in meta.items() if isinstance(v, int | float | str)}
                      for k, meta in summary.steps.items()},
            "checks_run": summary.checks_run, "checks_failed": summary.checks_failed,
            "seconds": round(summary.seconds, 2)}, indent=2))
