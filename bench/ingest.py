"""Ingest throughput against real processes: a bare FastAPI app vs the real service.

    .venv/bin/python -m bench.ingest [--seconds 15] [--connections 50]

Every server runs as its own process on 127.0.0.1 under the same uvicorn settings (one
worker, uvloop, httptools). The load generator is `wrk` (Debian package `wrk`), a separate
process and cheap in CPU, which matters on a 2-core machine. Signed requests cannot be made
inside wrk's Lua, so a pool of complete HTTP requests is prepared beforehand, each with a unique
body (R2 would deduplicate repeats) and hence a unique signature (a replayed signature gets
409); the Lua script sends them in order and stops its thread when the pool runs out.

Phases: (1) the bare app, whose endpoint only parses the body with orjson and answers 202;
(2) the real service (`aw serve`, a fresh AW_DATA_DIR, a tenant without rate limit) with
single-alert signed requests; (3) the same service with 1,000 unique alerts per request. Then
the peak RSS of the service (VmHWM), and a check that every accepted event reached the lake.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pyarrow.parquet as pq
from fastapi import FastAPI, Request
from fastapi.responses import Response

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO, TARGET_P99_MS = 0.75, 50.0
TARGET_BATCH_ALERTS_PER_S = 100_000
TARGET_RSS_MB = 300.0
BATCH_SIZE = 1_000
# Pools are sized for this many requests per second (well above what one worker serves);
# a run that empties its pool is reported, never silently replayed.
POOL_SINGLE_PER_S, POOL_BATCH_PER_S = 14_000, 260

WRK_SCRIPT = r"""
local data, starts, stops, n, i = nil, {}, {}, 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local len = tonumber(data:sub(pos, pos + 9))
    n = n + 1
    starts[n], stops[n] = pos + 10, pos + 9 + len
    pos = pos + 10 + len
  end
  exhausted = 0
end

function request()
  i = i + 1
  if i > n then
    -- Never resend: a replayed signature would be answered 409 and spoil the figures.
    exhausted = 1
    wrk.thread:stop()
    i = n
  end
  return data:sub(starts[i], stops[i])
end

function done(summary, latency, requests)
  local exhausted_threads = 0
  for _, t in ipairs(threads) do exhausted_threads = exhausted_threads + t:get("exhausted") end
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "exhausted": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, exhausted_threads))
end
"""


# ---- the bare app ---------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """The baseline: parse the JSON body with orjson, answer 202 (STACK.md's first row)."""
    import uvicorn

    app = FastAPI()

    @app.post("/v1/alerts", status_code=202)
    async def alerts(request: Request) -> Response:
        document = orjson.loads(await request.body())
        count = len(document) if isinstance(document, list) else 1
        return Response(orjson.dumps({"accepted": count}), 202, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', 200, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


# ---- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        assert match, "no VmHWM in /proc status"
        return int(match.group(1)) / 1024


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[Server]:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    running = Server(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{running.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy in 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # graceful: seal, flush, close
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---- request pools --------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    api_key: str
    secret: bytes


def raw_request(port: int, tenant: Tenant | None, body: bytes, timestamp: str) -> bytes:
    headers = [
        b"POST /v1/alerts HTTP/1.1",
        f"Host: 127.0.0.1:{port}".encode(),
        b"Content-Type: application/json",
        f"Content-Length: {len(body)}".encode(),
    ]
    if tenant is not None:
        digest = hmac.new(tenant.secret, timestamp.encode() + b"." + body, hashlib.sha256)
        headers += [
            f"Authorization: Bearer {tenant.api_key}".encode(),
            f"X-Timestamp: {timestamp}".encode(),
            f"X-Signature: sha256={digest.hexdigest()}".encode(),
        ]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def single_body(tag: str, i: int) -> bytes:
    return (b'{"signature":"cpu_high-%s-%d","asset":"host-%d","severity":"warning",'
            b'"message":"load average above 8","labels":{"env":"bench"}}'
            % (tag.encode(), i, i % 500))


def batch_body(tag: str, i: int) -> bytes:
    prefix = b'{"signature":"disk_full-%s-%d-' % (tag.encode(), i)
    return b"[" + b",".join(
        prefix + b'%d","asset":"host-%d","severity":"high"}' % (j, j % 500)
        for j in range(BATCH_SIZE)
    ) + b"]"


def write_pool(path: Path, port: int, tenant: Tenant | None, tag: str, count: int,
               batch: bool) -> Path:
    timestamp = str(int(time.time()))
    make = batch_body if batch else single_body
    with open(path, "wb") as out:
        for i in range(count):
            request = raw_request(port, tenant, make(tag, i), timestamp)
            out.write(b"%010d" % len(request) + request)
    return path


# ---- load -----------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    exhausted: bool
    generator_cpu: float
    server_cpu: float
    other_cpu: float  # everything else on the machine: should be near 0 for clean figures

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def ok(self) -> int:
        return self.requests - self.status_errors


def machine_busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_wrk(target: Server, pool: Path, seconds: float, connections: int, script: Path) -> Load:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before, machine_before = target.cpu_seconds(), machine_busy_seconds()
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", "-s",
         str(script), f"{target.url}/v1/alerts", "--", str(pool)],
        capture_output=True, text=True, timeout=seconds + 120, check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_used = target.cpu_seconds() - server_before
    machine_used = machine_busy_seconds() - machine_before
    wrk_used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    line = next(x for x in result.stdout.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    duration = data["duration_us"] / 1e6
    return Load(
        requests=data["requests"], seconds=duration, status_errors=data["status_errors"],
        socket_errors=data["socket_errors"], p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000, max_ms=data["max_us"] / 1000,
        exhausted=bool(data["exhausted"]),
        generator_cpu=wrk_used / duration,
        server_cpu=server_used / duration,
        other_cpu=max(0.0, machine_used - server_used - wrk_used) / duration,
    )


# ---- the real service's side ----------------------------------------------------------


def create_tenant(data_dir: Path) -> Tenant:
    from service.config import ServiceSettings
    from warehouse.registry import Registry

    with Registry.open(ServiceSettings(data_dir=data_dir)) as registry:
        issued = registry.create_tenant("bench", name="Benchmark")
        registry.set_options("bench", rate_limit_per_second=0)  # 0 = unlimited
    return Tenant(issued.tenant_id, issued.api_key, issued.hmac_secret.encode())


def metric(text: str, name: str) -> float:
    """Sum of every series of a Prometheus counter or gauge."""
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def lake_rows(lake: Path) -> int:
    return sum(pq.read_metadata(p).num_rows
               for p in (lake / "raw" / "alerts").rglob("*.parquet") if not p.name.startswith("."))


@dataclass
class Reconciliation:
    accepted: int
    duplicates: int
    rejected: int
    in_lake: int
    client_ok: int
    waited: float


def wait_for_lake(target: Server, lake: Path, client_ok: int, timeout: float) -> Reconciliation:
    """Wait until every event the service accepted is in the lake (or the timeout)."""
    started = time.monotonic()
    while True:
        text = httpx.get(f"{target.url}/metrics", timeout=10).text
        accepted = int(metric(text, "aw_events_accepted_total"))
        duplicates = int(metric(text, "aw_events_duplicate_total"))
        rows = lake_rows(lake)
        waited = time.monotonic() - started
        if rows >= accepted - duplicates or waited > timeout:
            rejected = int(metric(text, "aw_requests_rejected_total"))
            return Reconciliation(accepted, duplicates, rejected, rows, client_ok, waited)
        time.sleep(1)


# ---- report ---------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(bare: Load, real: Load, batched: Load, rss_mb: float, rec: Reconciliation,
           connections: int, batch_connections: int, lake_rate: float) -> bool:
    ratio = real.rps / bare.rps
    alerts_per_s = batched.ok * BATCH_SIZE / batched.seconds
    latency_ok = ratio >= TARGET_RATIO and real.p99_ms <= TARGET_P99_MS
    lake_ok = rec.in_lake == rec.accepted - rec.duplicates and rec.duplicates == 0
    clean = all(x.status_errors == 0 and x.socket_errors == 0 and not x.exhausted
                for x in (bare, real, batched)) and rec.rejected == 0
    print()
    print(f"| variant ({connections} connections unless noted) | req/s | p50 | p99 | "
          "server CPU | wrk CPU | other CPU |")
    print("|---|---|---|---|---|---|---|")
    for name, load in [("bare FastAPI: orjson parse, 202", bare),
                       ("real service, 1 signed alert/request", real),
                       (f"real service, {BATCH_SIZE} alerts/request ({batch_connections} conn.)",
                        batched)]:
        print(f"| {name} | {load.rps:,.0f} | {load.p50_ms:.1f} ms | {load.p99_ms:.1f} ms | "
              f"{load.server_cpu:.0%} | {load.generator_cpu:.0%} | {load.other_cpu:.0%} |")
    print()
    print("| figure | measured | target | result |")
    print("|---|---|---|---|")
    print(f"| real/bare req/s | {ratio:.2f} | ≥ {TARGET_RATIO} | "
          f"{verdict(ratio >= TARGET_RATIO)} |")
    print(f"| real p99 | {real.p99_ms:.1f} ms | ≤ {TARGET_P99_MS:.0f} ms | "
          f"{verdict(real.p99_ms <= TARGET_P99_MS)} |")
    print(f"| batched alerts/s | {alerts_per_s:,.0f} | ≥ {TARGET_BATCH_ALERTS_PER_S:,} | "
          f"{verdict(alerts_per_s >= TARGET_BATCH_ALERTS_PER_S)} |")
    # The flusher shares the GIL with intake: if it writes less than intake accepts, the
    # backlog (and memory) grows, and the intake rate is not sustainable.
    print(f"| lake rows written/s during the batched phase | {lake_rate:,.0f} | "
          f"(sustainable only if ≈ batched alerts/s) | - |")
    print(f"| peak RSS (VmHWM) | {rss_mb:.0f} MB | ≤ {TARGET_RSS_MB:.0f} MB | "
          f"{verdict(rss_mb <= TARGET_RSS_MB)} |")
    print(f"| accepted events = lake rows | {rec.accepted - rec.duplicates:,} = {rec.in_lake:,} "
          f"(202s seen by wrk: {rec.client_ok:,} events; lake complete {rec.waited:.0f} s "
          f"after the load) | equal | {verdict(lake_ok)} |")
    print(f"| errors | non-2xx {bare.status_errors}/{real.status_errors}/"
          f"{batched.status_errors}, socket {bare.socket_errors}/{real.socket_errors}/"
          f"{batched.socket_errors}, rejected {rec.rejected}, pool exhausted "
          f"{bare.exhausted}/{real.exhausted}/{batched.exhausted} | none | {verdict(clean)} |")
    return (latency_ok and alerts_per_s >= TARGET_BATCH_ALERTS_PER_S
            and rss_mb <= TARGET_RSS_MB and lake_ok and clean)


# ---- main -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each phase")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--batch-connections", type=int, default=10,
                        help=f"connections of the {BATCH_SIZE}-alert phase")
    parser.add_argument("--warmup", type=int, default=2, help="seconds before each phase")
    parser.add_argument("--flush-timeout", type=float, default=120.0,
                        help="seconds to wait for the lake after the load")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    seconds, conns = args.seconds, args.connections
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; {seconds:g} s per phase; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="aw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "pool.lua"
        script.write_text(WRK_SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AW_")}

        # (1) the bare app; its pool may repeat bodies, it checks nothing.
        port = free_port()
        with server([sys.executable, "-m", "bench.ingest", "--serve-bare", str(port)], env,
                    port, tmp / "bare.log") as bare_server:
            pool = write_pool(tmp / "bare.pool", port, None, "bare",
                              int(POOL_SINGLE_PER_S * (seconds + args.warmup)), batch=False)
            run_wrk(bare_server, pool, args.warmup, conns, script)
            print("bare ...", flush=True)
            bare = run_wrk(bare_server, pool, seconds, conns, script)
            pool.unlink()

        # (2) and (3) the real service on a fresh data directory.
        data_dir = tmp / "data"
        tenant = create_tenant(data_dir)
        port = free_port()
        env_real = env | {"AW_DATA_DIR": str(data_dir), "AW_PORT": str(port)}
        aw = Path(sys.executable).with_name("aw")
        command = [str(aw)] if aw.exists() else [sys.executable, "-m", "service.cli"]
        with server(command + ["serve", "--port", str(port)], env_real, port,
                    tmp / "real.log") as real_server:
            warm = write_pool(tmp / "warm.pool", port, tenant, "warm",
                              int(POOL_SINGLE_PER_S * args.warmup), batch=False)
            warm_load = run_wrk(real_server, warm, args.warmup, conns, script)
            pool = write_pool(tmp / "real.pool", port, tenant, "single",
                              int(POOL_SINGLE_PER_S * seconds), batch=False)
            print("real, single alerts ...", flush=True)
            real = run_wrk(real_server, pool, seconds, conns, script)
            batch_pool = write_pool(tmp / "batch.pool", port, tenant, "batch",
                                    int(POOL_BATCH_PER_S * seconds), batch=True)
            print(f"real, {BATCH_SIZE} alerts per request ...", flush=True)
            rows_before = lake_rows(data_dir / "lake")
            batched = run_wrk(real_server, batch_pool, seconds, args.batch_connections, script)
            lake_rate = (lake_rows(data_dir / "lake") - rows_before) / batched.seconds
            client_ok = warm_load.ok + real.ok + batched.ok * BATCH_SIZE
            print("waiting for the lake ...", flush=True)
            rec = wait_for_lake(real_server, data_dir / "lake", client_ok, args.flush_timeout)
            rss_mb = real_server.peak_rss_mb()
    passed = report(bare, real, batched, rss_mb, rec, conns, args.batch_connections, lake_rate)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
