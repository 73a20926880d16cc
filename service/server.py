"""Running the ingest service under uvicorn (one worker, uvloop + httptools)."""

from __future__ import annotations

import gc
import sys

import click
import uvicorn

from service.app import create_app
from service.config import get_settings


def run_ingest(host: str | None, port: int | None, banner: bool = False,
               extra_lines: list[str] | None = None) -> None:
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
        for line in extra_lines or []:
            click.echo(line)
        click.echo("Press Ctrl-C to stop.")
    app = create_app(settings)
    tune_interpreter()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def tune_interpreter() -> None:
    """Make the cyclic GC cheap and GIL hand-offs quick for a request-serving process.

    With the default gen-0 threshold (700 allocations) objects of requests still awaiting
    their fsync survive young collections and get promoted, which then forces frequent full
    collections over the whole heap: ~25% of the CPU and 100 ms pauses (p99) in
    `bench/ingest.py`. A larger threshold lets them die young; freezing what imports and
    startup created keeps full collections from re-scanning it.

    The buffer writer and the flusher share the GIL with the event loop; with the default
    5 ms switch interval the loop waits up to 5 ms whenever the flusher runs Python code,
    which showed in p99 (69 ms → ~50 ms with 1 ms).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    sys.setswitchinterval(0.001)
