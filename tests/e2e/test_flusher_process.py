"""The flusher process never outlives its intake, and never waits for ever for the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import ServiceSettings
from tests.support.servers import IngestServer, wait_for

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent, init, reaps it).
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_flusher_exits_when_the_intake_is_killed(tmp_path: Path) -> None:
    server = IngestServer({"AW_DATA_DIR": str(tmp_path / "data")}, tmp_path / "serve.log")
    with server:
        flusher = wait_for(lambda: children_of(server.pid), 10, "no flusher child started")[0]
        server.kill()
        wait_for(lambda: not alive(flusher), 10, f"flusher {flusher} outlived its intake")


def test_flusher_whose_intake_died_before_it_started_exits(tmp_path: Path) -> None:
    settings = ServiceSettings(data_dir=tmp_path / "data")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is certainly not our parent any more
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.flusher", settings.model_dump_json(
            exclude={"master_key"}), str(gone.pid)],
    )
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
