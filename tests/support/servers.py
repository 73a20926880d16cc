"""Real server processes for end-to-end tests: a moto S3 server and the ingest service.

Each server runs as a separate process in its own process group (so a Ctrl-C of pytest does
not hit it first, and SIGSTOP/SIGKILL reach exactly that process). Processes are stopped by
their PID in `finally` blocks; an `atexit` hook stops any that a crashed test left behind.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import httpx
from botocore.config import Config

BIN_DIR = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_live: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def aw_command() -> list[str]:
    """The `aw` console script when the project is installed, else `python -m service.cli`."""
    script = BIN_DIR / "aw"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def _spawn(args: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            env=dict(env),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group and session
        )
    _live[proc.pid] = proc
    return proc


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send `sig` to the process (by PID), then SIGKILL it if it is still there after
    `timeout`; always reap it."""
    if proc is None:
        return
    try:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    finally:
        _live.pop(proc.pid, None)


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_live.values()):
        _stop(proc, signal.SIGKILL, 5)


def _wait_http(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} while starting; log tail:\n"
                + log_tail(log_path)
            )
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(
        f"{what} did not answer {url} within {timeout:g} s (last: {last}); log tail:\n"
        + log_tail(log_path)
    )


class _Process:
    """Shared context-manager plumbing."""

    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class MotoServer(_Process):
    """`moto_server` on a free port of 127.0.0.1, for S3 (and other AWS APIs) in tests."""

    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = log_path or Path(os.devnull)
        self.paused = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        args = [str(BIN_DIR / "moto_server"), "-H", self.host, "-p", str(self.port)]
        env = {**os.environ, **TEST_AWS_ENV}
        self.proc = _spawn(args, env, self.log_path)
        _wait_http(f"{self.endpoint_url}/moto-api/", self.proc, self.log_path, "moto_server", 30)
        return self

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel, never answered."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _stop(proc, signal.SIGTERM, 5)

    def client(self, service: str = "s3") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=TEST_AWS_ENV["AWS_REGION"],
            aws_access_key_id=TEST_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)  # us-east-1: no LocationConstraint

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def object_size(self, bucket: str, key: str) -> int:
        return int(self.client().head_object(Bucket=bucket, Key=key)["ContentLength"])


class IngestServer(_Process):
    """`aw serve` on a free port with the given `AW_*` environment.

    stdout and stderr go to `log_path` (appended across restarts). The port is kept across
    `restart()`, so `url` stays valid.
    """

    def __init__(
        self, env: Mapping[str, str], log_path: Path, port: int | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        pythonpath = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self.env = {**os.environ, **TEST_AWS_ENV, "PYTHONPATH": pythonpath, **env}
        self.log_path = log_path
        self.port = port or free_port()
        self.start_timeout = start_timeout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IngestServer:
        assert not self.running, "already running"
        args = [*aw_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = _spawn(args, self.env, self.log_path)
        _wait_http(f"{self.url}/healthz", self.proc, self.log_path, "aw serve", self.start_timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a power cut of the process."""
        proc, self.proc = self.proc, None
        _stop(proc, signal.SIGKILL, 10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful: drain and flush), SIGKILL after `timeout`."""
        proc, self.proc = self.proc, None
        _stop(proc, signal.SIGTERM, timeout)

    def restart(self) -> IngestServer:
        self.stop()
        return self.start()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log(self) -> str:
        return log_tail(self.log_path)
