"""`aw demo seed`: demo tenants, 30 days of alerts through the ingest endpoint, patch fleets."""

from __future__ import annotations

import json
from typing import Any

import click


class _Bar:
    """A click progress bar the seeder drives."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        self._bar = click.progressbar(length=total, label="posting alerts")
        self._bar.__enter__()

    def advance(self, n: int) -> None:
        self._bar.update(n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@click.group()
def demo() -> None:
    """Demo data for a platform with no real monitoring tools connected yet."""


@demo.command("seed")
@click.option("--url", default=None,
              help="The running ingest service (default http://AW_HOST:AW_PORT).")
@click.option("--events", default=40_000, show_default=True, type=click.IntRange(100, 2_000_000),
              help="Alert events to post.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(2, 30),
              help="Days of history.")
@click.option("--seed", "seed_value", default=11, show_default=True, type=int,
              help="Random seed: the same seed gives the same history.")
@click.option("--json", "as_json", is_flag=True, help="One JSON summary on stdout.")
def seed_command(url: str | None, events: int, days: int, seed_value: int,
                 as_json: bool) -> None:
    """Create the demo tenants and post a realistic history to the running ingest service
    (signed, in batches), then write their patch fleets (a Resource Data Sync and 30 days of
    daily snapshots). `aw pipeline run` (or `aw up`) then builds the marts."""
    from service.config import get_settings
    from service.demo_seed import SeedError, default_url, seed

    settings = get_settings()

    bar = _Bar()
    try:
        done = seed(settings, url or default_url(settings), events=events, days=days,
                    seed_value=seed_value, progress=None if as_json else bar)
    except SeedError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.finish()
    summary = {"tenants": done.tenants, "posted": done.posted, "accepted": done.accepted,
               "duplicates": done.duplicates, "requests": done.requests,
               "ssm_snapshot_days": done.ssm_days}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"seeded {', '.join(done.tenants)}: {done.posted:,} alerts posted in "
                   f"{done.requests:,} signed requests ({done.accepted:,} accepted, "
                   f"{done.duplicates:,} exact duplicates); patch fleets with "
                   f"{done.ssm_days} earlier daily snapshots")
