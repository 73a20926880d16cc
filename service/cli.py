"""The `aw` command: run the platform, manage tenants."""

from __future__ import annotations

import logging

import click

from service.backtest_cli import backtest
from service.demo_cli import demo
from service.pipeline_cli import pipeline
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
@click.option("--dagster-port", default=3000, show_default=True, type=int,
              help="Port of the Dagster webserver.")
@click.option("--no-dagster", is_flag=True, help="Run the ingest service only.")
def up(host: str | None, port: int | None, dagster_port: int, no_dagster: bool) -> None:
    """Run the whole platform on the embedded default: ingest service and Dagster."""
    import threading

    from service.config import get_settings
    from service.platform_up import start_dagster, stop, watch
    from service.server import run_ingest

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    bind = host or settings.host
    companions = []
    stopping = threading.Event()
    if not no_dagster:
        dagster = start_dagster(settings.data_dir, bind, dagster_port)
        watch(dagster, "dagster", stopping)
        companions.append((dagster, "dagster"))
    extra = [] if no_dagster else [
        f"  dagster  http://{bind}:{dagster_port}   (asset graph, runs, sensors)",
        f"  warehouse {settings.resolved_warehouse_path.resolve()}  (read-only snapshot)"]
    try:
        run_ingest(host, port, banner=True, extra_lines=extra)
    finally:
        stopping.set()
        for process, name in companions:
            stop(process, name)


main.add_command(tenants)
main.add_command(backtest)
main.add_command(pipeline)
main.add_command(demo)

if __name__ == "__main__":
    main()
