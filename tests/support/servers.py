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
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import boto3
import httpx
import orjson
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

from tests.support.signing import Credentials, signed_headers
from warehouse.config import PlatformSettings
from warehouse.lake import Lake, open_lake
from warehouse.registry import Registry

T = TypeVar("T")

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


class StartError(RuntimeError):
    """A server process did not come up; the message holds its log tail."""


class PortInUse(StartError):
    """Another process took the port between `free_port()` and the bind."""


def _log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _wait_started(
    proc: subprocess.Popen[bytes], url: str, port: int, log_path: Path, log_offset: int,
    what: str, timeout: float,
) -> None:
    """Wait until this process logged that it listens on `port` and `url` answers 200.

    The log line proves the answer comes from this process, not from another one that
    happens to hold the port (a concurrent test run).
    """
    listening = f"running on http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    last: object = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = _log_since(log_path, log_offset)
            error = PortInUse if "address already in use" in output.lower() else StartError
            raise error(
                f"{what} exited with code {proc.returncode} while starting; log tail:\n"
                + "\n".join(output.splitlines()[-40:])
            )
        if listening in _log_since(log_path, log_offset).lower():
            try:
                response = httpx.get(url, timeout=1.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = exc
        time.sleep(0.05)
    raise StartError(
        f"{what} did not answer {url} within {timeout:g} s (last: {last}); log tail:\n"
        + log_tail(log_path)
    )


def _start(
    server: _Process, args_for: Callable[[int], list[str]], env: Mapping[str, str],
    health_path: str, what: str, timeout: float, fixed_port: bool,
) -> subprocess.Popen[bytes]:
    """Spawn and wait; on a lost port race pick another port (unless the port is fixed)."""
    for attempt in range(3):
        offset = server.log_path.stat().st_size if server.log_path.exists() else 0
        proc = _spawn(args_for(server.port), env, server.log_path)
        try:
            _wait_started(proc, f"http://127.0.0.1:{server.port}{health_path}", server.port,
                          server.log_path, offset, what, timeout)
            return proc
        except PortInUse:
            _stop(proc, signal.SIGKILL, 5)
            if fixed_port or attempt == 2:
                raise
            server.port = free_port()
        except BaseException:
            _stop(proc, signal.SIGKILL, 5)
            raise
    raise AssertionError("unreachable")


class _Process:
    """Shared context-manager plumbing."""

    proc: subprocess.Popen[bytes] | None = None
    port: int
    log_path: Path

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

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = log_path
        self.paused = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        self.proc = _start(
            self, lambda port: [str(BIN_DIR / "moto_server"), "-H", self.host, "-p", str(port)],
            {**os.environ, **TEST_AWS_ENV}, "/moto-api/", "moto_server", 30, self.fixed_port,
        )
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

    def list_objects(self, bucket: str, prefix: str = "") -> list[tuple[str, int]]:
        """(key, size) of every object in the bucket under `prefix`, sorted by key."""
        found: list[tuple[str, int]] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found.extend((obj["Key"], int(obj["Size"])) for obj in page.get("Contents", []))
        return sorted(found)


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
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AW_")}
        self.env = {**inherited, **TEST_AWS_ENV, "PYTHONPATH": pythonpath, **env}
        self.last_returncode: int | None = None
        self.log_path = log_path
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.start_timeout = start_timeout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IngestServer:
        assert not self.running, "already running"
        # A restart keeps the port: clients hold the URL.
        fixed = self.fixed_port or self.last_returncode is not None
        self.proc = _start(
            self, lambda port: [*aw_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            self.env, "/healthz", "aw serve", self.start_timeout, fixed,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a power cut of the process."""
        proc, self.proc = self.proc, None
        _stop(proc, signal.SIGKILL, 10)
        if proc is not None:
            self.last_returncode = proc.returncode

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful: drain and flush), SIGKILL after `timeout`."""
        proc, self.proc = self.proc, None
        _stop(proc, signal.SIGTERM, timeout)
        if proc is not None:
            self.last_returncode = proc.returncode

    def restart(self) -> IngestServer:
        self.stop()
        return self.start()

    def log(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def metrics(self) -> dict[str, float]:
        """`GET /metrics` as {'name{label="v",...}': value} (labels sorted by name)."""
        response = httpx.get(f"{self.url}/metrics", timeout=5)
        response.raise_for_status()
        return parse_metrics(response.text)


# ---- helpers for tests that drive these servers ----------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{a="x",b="y"}': value}; a sample without labels is 'name'."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def create_tenant(data_dir: Path, tenant_id: str, name: str | None = None) -> Credentials:
    """Create a tenant in the registry of `data_dir` (as `aw tenants create` would)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = PlatformSettings(data_dir=data_dir, master_key=None, lake_uri="")
    with Registry.open(settings) as registry:
        issued = registry.create_tenant(tenant_id, name=name or tenant_id.title())
    return Credentials(issued.tenant_id, issued.api_key, issued.hmac_secret)


def http_ok(url: str) -> bool:
    """True when `url` answers 200 right now (False on any transport error)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(
    check: Callable[[], T | None], timeout: float, message: str | Callable[[], str],
    interval: float = 0.1,
) -> T:
    """Poll `check` until it returns a truthy value (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"gave up after {timeout:g} s: {text}")
        time.sleep(interval)


@dataclass
class Sent:
    """One request an `AlertSender` made and what became of it (status None: no answer)."""

    body: bytes
    delivery_ids: list[str]
    status: int | None = None
    receipt: dict[str, Any] | None = None
    retry_after: str | None = None
    error: str | None = None


def post_alerts(client: httpx.Client, cred: Credentials, body: bytes) -> httpx.Response:
    """POST a body to /v1/alerts, freshly signed."""
    return client.post("/v1/alerts", content=body, headers=signed_headers(cred, body))


class AlertSender:
    """Threads posting signed batches of alerts, each with a unique `delivery_id`, as fast as
    they can (or every `interval` s), recording every request and its answer.

    A thread ends at `stop()`, after `max_requests` requests in all, or (with
    `stop_on_transport_error`) at its first request that got no answer.
    """

    def __init__(
        self, url: str, cred: Credentials, *, threads: int = 4, batch: int = 5,
        max_requests: int = 100_000, interval: float = 0.0, timeout: float = 10.0,
        stop_on_transport_error: bool = True,
    ) -> None:
        self.url, self.cred, self.batch = url, cred, batch
        self.max_requests, self.interval, self.timeout = max_requests, interval, timeout
        self.stop_on_transport_error = stop_on_transport_error
        self.run_id = os.urandom(4).hex()
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._count = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"sender-{n}", daemon=True)
            for n in range(threads)
        ]

    def __enter__(self) -> AlertSender:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"sender threads still running: {alive}"

    def _next(self) -> int | None:
        with self._lock:
            if self._count >= self.max_requests or self._stop.is_set():
                return None
            self._count += 1
            return self._count

    def _run(self, thread_no: int) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            while (n := self._next()) is not None:
                ids = [f"{self.run_id}-{n:06d}-{i}" for i in range(self.batch)]
                alerts = [
                    {"delivery_id": d, "asset": f"host-{n % 50:02d}", "signature": "cpu_high",
                     "severity": "warning", "labels": {"thread": str(thread_no), "n": str(n)}}
                    for d in ids
                ]
                sent = Sent(orjson.dumps(alerts), ids)
                try:
                    response = post_alerts(client, self.cred, sent.body)
                except Exception as exc:  # recorded, so no request goes unaccounted
                    sent.error = f"{type(exc).__name__}: {exc}"
                else:
                    sent.status = response.status_code
                    sent.retry_after = response.headers.get("retry-after")
                    if response.status_code == 202:
                        sent.receipt = response.json()
                    else:
                        sent.error = response.text[:300]
                with self._lock:
                    self.sent.append(sent)
                if sent.status is None and self.stop_on_transport_error:
                    return
                if self.interval:
                    self._stop.wait(self.interval)

    def snapshot(self) -> list[Sent]:
        with self._lock:
            return list(self.sent)

    def acked(self) -> list[Sent]:
        return [s for s in self.snapshot() if s.status == 202]

    def statuses(self) -> Counter[int | None]:
        return Counter(s.status for s in self.snapshot())


def read_rows(lake: Lake, table: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    return lake.dataset(table).to_table(columns=columns).to_pylist()


def s3_lake_env(moto: MotoServer, timeout: float = 5.0) -> tuple[dict[str, str], Lake]:
    """A fresh bucket on `moto`: the service's `AW_*` lake settings and the same lake here."""
    bucket = f"aw-{os.urandom(6).hex()}"
    moto.create_bucket(bucket)
    env = {"AW_LAKE_URI": f"s3://{bucket}/lake", "AW_S3_ENDPOINT_URL": moto.endpoint_url,
           "AW_LAKE_TIMEOUT_SECONDS": f"{timeout:g}"}
    return env, open_lake(env["AW_LAKE_URI"], moto.endpoint_url, timeout)


def buffer_segments(data_dir: Path) -> list[str]:
    """Segment files still in the durable buffer of `data_dir`."""
    return sorted(p.name for p in (data_dir / "buffer").glob("seg-*"))


def wait_drained(server: IngestServer, data_dir: Path, timeout: float) -> None:
    """Wait until the buffer is empty: no bytes reported, no segment file left."""

    def drained() -> bool:
        try:
            depth = server.metrics()["aw_buffer_bytes"]
        except httpx.HTTPError:
            return False
        return depth == 0 and not buffer_segments(data_dir)

    wait_for(drained, timeout, lambda: f"the buffer never drained; segments left: "
             f"{buffer_segments(data_dir)}; log:\n{server.log()}")
