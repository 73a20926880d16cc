"""The `aw` command: run the platform, manage tenants."""

from __future__ import annotations

import logging

import click

from service.backtest_cli import backtest
from service.tenants_cli import tenants


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Alert Whisperer: alert-noise and compliance analytics for MSPs."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@main.command()
@click.option("--host", default=None, help="Bind address (default 127.0.0.1, AW_HOST).")
@click.option("--port", default=None, type=int, help="Port (default 8001, AW_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the ingest service alone (AW_DATA_DIR holds its buffer and the embedded lake)."""
    from service.server import run_ingest

    run_ingest(host, port)


@main.command()
@click.option("--host", default=None, help="Bind address of the ingest service.")
@click.option("--port", default=None, type=int, help="Port of the ingest service.")
def up(host: str | None, port: int | None) -> None:
    """Run the whole platform on the embedded default (for now: the ingest service)."""
    from service.server import run_ingest

    run_ingest(host, port, banner=True)


main.add_command(tenants)
main.add_command(backtest)

if __name__ == "__main__":
    main()
