"""Running the ingest service under uvicorn (one worker, uvloop + httptools)."""

from __future__ import annotations

import click
import uvicorn

from service.app import create_app
from service.config import get_settings


def run_ingest(host: str | None, port: int | None, banner: bool = False) -> None:
    settings = get_settings()
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if banner:
        base = f"http://{settings.host}:{settings.port}"
        click.echo(f"Alert Whisperer is up (data in {settings.data_dir.resolve()})")
        click.echo(f"  ingest   {base}/v1/alerts   (API docs {base}/docs)")
        click.echo(f"  health   {base}/readyz   metrics {base}/metrics")
        click.echo(f"  lake     {settings.resolved_lake_uri}")
        click.echo("Press Ctrl-C to stop.")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
