"""The `aw` command: run the platform, manage tenants."""

from __future__ import annotations

import logging

import click

from service.backtest_cli import backtest
from service.demo_cli import demo
from service.pipeline_cli import pipeline
from service.quicksight_cli import export, quicksight
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
@click.option("--host", default=None, help="Bind address of every service (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port of the ingest service (8001).")
@click.option("--dagster-port", default=3000, show_default=True, type=int,
              help="Port of the Dagster webserver.")
@click.option("--dashboard-port", default=8501, show_default=True, type=int,
              help="Port of the Streamlit dashboards.")
@click.option("--demo", is_flag=True,
              help="Seed the demo tenants, alerts and patch fleets when the lake is empty.")
@click.option("--demo-events", default=40_000, show_default=True,
              type=click.IntRange(100, 2_000_000), help="Alert events the demo posts.")
@click.option("--no-dagster", is_flag=True, help="Run without Dagster (ingest only).")
def up(host: str | None, port: int | None, dagster_port: int, dashboard_port: int, demo: bool,
       demo_events: int, no_dagster: bool) -> None:
    """Run the whole platform on the embedded default: the ingest service, Dagster (sensors
    on) and the dashboards; Ctrl-C stops everything."""
    import threading

    from service.config import get_settings
    from service.platform_up import Companions, seed_when_ready
    from service.server import run_ingest

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    bind = host or settings.host
    companions = Companions(settings.data_dir, bind)
    lines: list[str] = []
    if not no_dagster:
        companions.start_dagster(dagster_port)
        lines.append(f"  dagster    http://{bind}:{dagster_port}   (asset graph, runs, sensors)")
    if companions.start_dashboards(dashboard_port):
        lines.append(f"  dashboards http://{bind}:{dashboard_port}")
    lines.append(f"  warehouse  {settings.resolved_warehouse_path.resolve()} (read-only)")
    if companions.processes:
        lines.append(f"  logs       {(settings.data_dir / 'logs').resolve()}/"
                     "{dagster,dashboards}.log")
    if demo:
        url = f"http://{bind}:{port or settings.port}"
        threading.Thread(target=seed_when_ready, args=(settings, url, demo_events),
                         name="demo-seed", daemon=True).start()
    try:
        run_ingest(host, port, banner=True, extra_lines=lines)
    finally:
        companions.stop_all()


main.add_command(tenants)
main.add_command(backtest)
main.add_command(pipeline)
main.add_command(demo)
main.add_command(export)
main.add_command(quicksight)

if __name__ == "__main__":
    main()
