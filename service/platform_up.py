"""`aw up`: the ingest service in the foreground and Dagster (webserver, daemon, sensors on)
beside it, stopped together on Ctrl-C.

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


def start_dagster(data_dir: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(dagster_home(data_dir))
    env["AW_DATA_DIR"] = str(data_dir.resolve())
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", *workspace_args(), "-h", host, "-p", str(port)]
    return subprocess.Popen(command, env=env, start_new_session=True,
                            preexec_fn=_restore_sigint)  # noqa: PLW1509 - only resets a handler


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
