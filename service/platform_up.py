"""`aw up`: the ingest service in the foreground, Dagster (webserver, daemon, sensors on) and
the Streamlit dashboards beside it, stopped together on Ctrl-C; with `--demo`, the demo data
seeded through the ingest endpoint once it is ready, when the lake is empty.

Dagster runs as `dagster dev -w workspace.yaml` in its own session with SIGINT restored (a
process started from a background job inherits SIGINT ignored, and `dagster dev` maps SIGTERM
onto SIGINT, so it would never stop; STACK.md). Its instance lives in `$AW_DATA_DIR/dagster`
(`DAGSTER_HOME`, telemetry off, one run at a time: runs share the build file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import click

from warehouse.config import PlatformSettings

DAGSTER_YAML = """\
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1
"""
STOP_SECONDS = 20


def dagster_home(data_dir: Path) -> Path:
    """`DAGSTER_HOME` (or `$AW_DATA_DIR/dagster`), with the platform's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir.resolve() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def workspace_args() -> list[str]:
    """`-w <repo>/workspace.yaml` when running from a checkout, else the module itself."""
    import pipelines

    workspace = Path(pipelines.__file__).resolve().parent.parent / "workspace.yaml"
    if workspace.exists():
        return ["-w", str(workspace)]
    return ["-m", "pipelines.definitions", "-a", "defs"]


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def log_path(data_dir: Path, name: str) -> Path:
    """Where a companion's output goes (`$AW_DATA_DIR/logs/<name>.log`): Dagster prints every
    run event, which would bury the ingest service's own lines."""
    folder = data_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.log"


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_restore_sigint)  # noqa: PLW1509 - resets a handler


def start_dagster(data_dir: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(dagster_home(data_dir))
    env["AW_DATA_DIR"] = str(data_dir.resolve())
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", *workspace_args(), "-h", host, "-p", str(port)]
    return _spawn(command, env, log_path(data_dir, "dagster"))


def stop(process: subprocess.Popen[bytes], name: str) -> None:
    """SIGINT to the process group, then SIGKILL after `STOP_SECONDS`."""
    if process.poll() is not None:
        return
    click.echo(f"stopping {name} …")
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def watch(process: subprocess.Popen[bytes], name: str, stopping: threading.Event) -> None:
    """Say so when a companion process dies on its own."""

    def wait() -> None:
        code = process.wait()
        if not stopping.is_set():
            click.echo(f"{name} exited with code {code}; the ingest service keeps running",
                       err=True)

    threading.Thread(target=wait, name=f"watch-{name}", daemon=True).start()


class Companions:
    """The processes `aw up` runs beside the ingest service."""

    def __init__(self, data_dir: Path, host: str) -> None:
        self.data_dir, self.host = data_dir, host
        self.stopping = threading.Event()
        self.processes: list[tuple[subprocess.Popen[bytes], str]] = []

    def start_dagster(self, port: int) -> None:
        self._add(start_dagster(self.data_dir, self.host, port), "dagster")

    def start_dashboards(self, port: int) -> bool:
        """`streamlit run dashboards/app.py` (headless, bound like the others); False when the
        dashboards are not installed."""
        import dashboards

        app = Path(dashboards.__file__).resolve().parent / "app.py"
        if not app.exists():
            return False
        env = dict(os.environ)
        env["AW_DATA_DIR"] = str(self.data_dir.resolve())
        command = [str(Path(sys.executable).with_name("streamlit")), "run", str(app),
                   "--server.headless", "true", "--server.address", self.host,
                   "--server.port", str(port), "--browser.gatherUsageStats", "false",
                   "--client.toolbarMode", "viewer"]
        self._add(_spawn(command, env, log_path(self.data_dir, "dashboards")), "dashboards")
        return True

    def _add(self, process: subprocess.Popen[bytes], name: str) -> None:
        watch(process, name, self.stopping)
        self.processes.append((process, name))

    def stop_all(self) -> None:
        self.stopping.set()
        for process, name in self.processes:
            stop(process, name)


def seed_when_ready(settings: PlatformSettings, url: str, events: int = 40_000,
                    timeout: float = 120.0) -> None:
    """`aw up --demo`: once the ingest service answers /readyz, seed the demo data if the
    lake holds no alert yet (never twice)."""
    import logging
    import time

    import httpx

    from service.demo_seed import SeedError, lake_is_empty, seed

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        click.echo("demo: the ingest service did not become ready; nothing seeded", err=True)
        return
    if not lake_is_empty(settings):
        click.echo("demo: the lake already holds alerts; not seeding again")
        return
    click.echo("demo: seeding tenants, 30 days of alerts and patch fleets …")
    try:
        done = seed(settings, url, events=events)
    except SeedError as exc:
        click.echo(f"demo: seeding failed: {exc}", err=True)
        return
    click.echo(f"demo: {done.posted:,} alerts posted for {', '.join(done.tenants)}; the "
               "pipelines pick them up within a minute or two")
