"""A synthetic MSP alert history in the engine's `EVENTS` columns, for benchmarks and scale tests.

`history(n_events, days=30, tenants=50, seed=7, start=2026-10-01T00:00Z)` returns exactly
`n_events` rows in arrival order. It is seeded and deterministic (same arguments, identical
table) and vectorized: the only Python loops run over tenants, assets and storms, never over
events (10M events: about 25 s and 3 GB of Arrow). `describe(table)` measures the figures
below; those in brackets are what it reports at 1M events with the defaults.

Who and what
- Tenants: sizes Zipf-like (asset share ∝ rank^-0.9, at least 3 assets each) [the biggest
  has ~11 % of the assets and 11-15 % of the events]. Each uses 1-3 of the five sources
  (alertmanager, grafana, datadog, zabbix, cloudwatch); about four in five use Datadog
  [events by source: datadog ~49 %, alertmanager ~20 %, grafana ~16 %, the others ~7 % each].
- Assets: max(300, n_events / 2000); asset names repeat across tenants (R1). Each asset has
  1-6 checks (a check = one rule of one tool), maybe a Datadog event stream, and one
  reachability check that fires only in storms. ~5 % of checks spell their asset in another
  case or with padding (R4 `norm`), ~2 % have none (R4 fallback to the fingerprint).
- Alert identity: all events of one check share (tenant, source, fingerprint), asset,
  signature and labels. Zabbix's fingerprint is its problem id, so each Zabbix occurrence is
  a new alert of the same key. A tenth of the Alertmanager checks of tenants that also use
  Grafana have a Grafana twin (same alertname and asset: two alerts, one key).
- Popularity: episodes per check are Zipf (∝ rank^-1), so a few hot keys carry much of the
  volume [top 1 % of keys: ~30 % of the events; 24 % at 50k, 40 % at 10M].

What happens (shares of the non-duplicate events)
- Stateful episodes (~79 %): fire, are re-sent every r (per check, 5 min-4 h; CloudWatch and
  a fifth of the checks never re-send), resolve after a log-normal duration (median 30 min,
  1 min-5 days); 5 % never resolve and go stale. The episodes of one check never overlap:
  each resolves before the next fires (hot checks therefore fire and resolve in short bursts).
- Flapping: 8 % of the checks flap in most episodes (the others in 3 %): 3-14 fire/resolve
  cycles 1-8 minutes apart (30 min to 2 h).
- Storms (~1 %; at most 10 %, which small histories reach): ~2.5 per tenant per 30 days;
  30-100 % of a tenant's assets (at most 400) fire their reachability check within 4 minutes,
  re-sent every 5 min, resolved 15-90 min later (5 % never).
- Point events (20 %): Datadog events in bursts of 1-10, ~40 s apart.

How it arrives
- Delivery latency log-normal, median 0.8 s, at most 60 s. 2 % of the events arrive late,
  2 min-12 h after their event time, and 7 % of those beyond the 24 h lateness horizon
  (25-72 h: R9 too late). 0.3 % carry a clock 6 min-3 h ahead (R9 clock skew); 0.5 % have
  no occurred_at. Re-sends carry the time they were sent as event time (real Alertmanager
  and Zabbix re-sends carry the alert's start instead; not modelled: they would all count as
  late, and those of alerts open for over 24 h as too late).
- Duplicates: 7 % of all rows. Datadog and CloudWatch events carry a delivery id and their
  retries repeat it (1 s-15 min later); the other sources' duplicates repeat the body hash
  without a delivery id (30 s-20 h later) [56 % / 44 % of the unflagged]. A quarter arrive
  already flagged `duplicate` (found by the ingest service); R2 must find the rest.
- Every receive time lies in [start, start + days); `ingest_seq` is 1..n in receive-time order
  (ties in generation order); event ids and body hashes are unique except in duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.correlation.events import EVENTS, FIRING, POINT, RESOLVED, SEVERITIES, TS

SOURCES = ("alertmanager", "grafana", "datadog", "zabbix", "cloudwatch")
AM, GRAFANA, DATADOG, ZABBIX, CLOUDWATCH = range(5)
SOURCE_WEIGHTS = np.array([0.30, 0.15, 0.25, 0.15, 0.15])
NAMING = (0, 0, 1, 2, 3)  # column of CHECKS per source: Grafana alerts on Prometheus rules
STATUS_NAMES = ("point", "firing", "resolved")  # by events.POINT / FIRING / RESOLVED
US = 1_000_000
SECOND, MINUTE, HOUR, DAY = US, 60 * US, 3600 * US, 86400 * US
DEFAULT_START = datetime(2026, 10, 1, tzinfo=UTC)
CHUNK = 1 << 20  # rows per chunk of the generated fixed-width string columns

CHECKS = (  # (Prometheus alertname, Datadog monitor, Zabbix trigger, CloudWatch alarm)
    ("HighCPUUsage", "CPU load is high", "High CPU utilization (over 90% for 5m)",
     "cpu-utilization-high"),
    ("HostOutOfMemory", "Memory usage above 90%", "High memory utilization (>90% for 5m)",
     "memory-utilization-high"),
    ("HostOutOfDiskSpace", "Disk space low", "/: Disk space is critically low",
     "free-storage-space-low"),
    ("TargetDown", "Service check failed", "Zabbix agent is not available",
     "status-check-failed"),
    ("HighRequestLatency", "p99 latency above SLO", "HTTP response time is too high",
     "target-response-time-high"),
    ("HighErrorRate", "5xx error rate above threshold", "Web scenario failed", "elb-5xx-high"),
    ("KubePodCrashLooping", "Pod restarts increasing", "Process is not running",
     "ecs-task-stopped"),
    ("CertificateExpiringSoon", "TLS certificate expires soon", "SSL certificate expires soon",
     "acm-certificate-expiry"),
    ("NetworkReceiveErrors", "Network errors on interface", "Interface eth0: High error rate",
     "network-packets-dropped"),
    ("PostgresReplicationLag", "Replication lag high", "MySQL: Replication lag is too high",
     "rds-replica-lag-high"),
    ("QueueBacklogGrowing", "Queue depth rising", "Too many items in queue",
     "sqs-queue-depth-high"),
    ("BackupJobFailed", "Backup job failed", "Backup did not complete", "backup-job-failed"),
)
REACHABILITY = ("InstanceDown", "Host is unreachable", "Unavailable by ICMP ping",
                "status-check-failed-instance")
POINT_EVENTS = ("Deployment finished", "Config change detected", "Login failure burst",
                "Auto-scaling activity", "Scheduled job failed", "Security scan finding")
ASSET_KINDS = ("web", "api", "db", "cache", "k8s-node", "WIN-SRV", "fw", "vpn", "lb", "mq")
ENVS, TEAMS = ("prod", "prod", "prod", "staging", "dev"), ("platform", "data", "web", "ops")
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2")
STATEFUL, POINT_RULE, STORM_RULE = range(3)
NORMAL, FLAP, BURST = range(3)  # episode kinds
NO_RESEND = 30 * DAY


def history(n_events: int, days: int = 30, tenants: int = 50, seed: int = 7,
            start: datetime = DEFAULT_START) -> pa.Table:
    """`n_events` synthetic events (module docstring) in arrival order, in `EVENTS` columns."""
    if n_events < 1 or days < 1 or tenants < 1:
        raise ValueError("n_events, days and tenants must be positive")
    rng = np.random.default_rng(seed)
    book = _rule_book(rng, tenants, max(300, n_events // 2000))
    end = days * DAY - MINUTE  # event times stop a minute early: normal latency stays inside
    n_dup = round(0.07 * n_events)
    core = _core_events(rng, book, n_events - n_dup, tenants, days, end)
    arrived = _arrive(rng, core, book, n_dup, days * DAY)
    return _table(book, arrived, seed, _us(start))


# ---- rules: who monitors what -------------------------------------------------------------


@dataclass
class _Book:
    """One entry per rule (a check of one tool on one asset): the alert's fixed fields."""

    tenant_names: list[str]
    tenant: list[int]
    source: list[int]
    kind: list[int]
    asset: list[str | None]
    signature: list[str]
    fingerprint: list[str]
    severity: list[int]
    resend: list[int]
    labels: list[list[tuple[str, str]] | None]

    def add(self, rng: np.random.Generator, tenant: int, source: int, kind: int,
            asset: str | None, signature: str, severity: int, resend: int, env: str) -> None:
        i = len(self.tenant)
        self.tenant.append(tenant)
        self.source.append(source)
        self.kind.append(kind)
        self.asset.append(asset)
        self.signature.append(signature)
        self.severity.append(severity)
        self.resend.append(resend)
        word, word2 = _mix(np.array([i * 8 + 1, i * 8 + 2], np.uint64)).tolist()
        region = REGIONS[tenant % len(REGIONS)]
        if source == CLOUDWATCH:
            account = f"{100000000000 + tenant * 7919:012d}"
            fingerprint = f"arn:aws:cloudwatch:{region}:{account}:alarm:{signature}-{i}"
            labels = [("account", account), ("region", region), ("namespace", "AWS/EC2")]
        elif source == DATADOG:
            fingerprint = f"{word:016x}{word2:016x}"
            labels = [("env", env), ("service", signature.split()[0].lower()),
                      ("team", TEAMS[int(rng.integers(len(TEAMS)))])]
        else:  # Prometheus-style fingerprints; Zabbix's is replaced per problem
            fingerprint = f"{word:016x}"
            labels = [("env", env), ("team", TEAMS[int(rng.integers(len(TEAMS)))]),
                      ("job", "node" if source != ZABBIX else "zabbix-agent")]
        self.fingerprint.append(fingerprint)
        self.labels.append(None if rng.random() < 0.1 else labels)


def _rule_book(rng: np.random.Generator, tenants: int, n_assets: int) -> _Book:
    """Tenants of Zipf-like sizes, their assets and every asset's checks."""
    weight = 1.0 / np.arange(1, tenants + 1) ** 0.9
    weight = rng.permutation(weight / weight.sum())
    assets = 3 + rng.multinomial(max(0, n_assets - 3 * tenants), weight)
    book = _Book([f"tenant-{t + 1:02d}" for t in range(tenants)], [], [], [], [], [], [], [],
                 [], [])
    for t in range(tenants):
        count = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
        sources = rng.choice(5, count, replace=False, p=SOURCE_WEIGHTS).tolist()
        if DATADOG not in sources and rng.random() < 0.65:
            sources.append(DATADOG)
        for a in range(int(assets[t])):
            kind = ASSET_KINDS[int(rng.integers(len(ASSET_KINDS)))]
            _asset_rules(rng, book, t, sources, f"{kind}-{a + 1:03d}")
    return book


def _asset_rules(rng: np.random.Generator, book: _Book, tenant: int, sources: list[int],
                 name: str) -> None:
    env = ENVS[int(rng.integers(len(ENVS)))]
    p = SOURCE_WEIGHTS[sources] / SOURCE_WEIGHTS[sources].sum()
    n_checks = min(6, 1 + int(rng.poisson(2.0)))
    for check in rng.choice(len(CHECKS), n_checks, replace=False).tolist():
        source = int(rng.choice(sources, p=p))
        signature = CHECKS[check][NAMING[source]]
        severity = int(rng.choice(4, p=[0.1, 0.45, 0.3, 0.15]))
        resend = NO_RESEND if source == CLOUDWATCH or rng.random() < 0.2 else int(
            np.exp(rng.uniform(np.log(5 * MINUTE), np.log(4 * HOUR))))
        asset = _spelling(rng, name)
        book.add(rng, tenant, source, STATEFUL, asset, signature, severity, resend, env)
        if source == AM and GRAFANA in sources and rng.random() < 0.1:
            book.add(rng, tenant, GRAFANA, STATEFUL, asset, signature, severity, resend, env)
    if DATADOG in sources and rng.random() < 0.35:
        signature = POINT_EVENTS[int(rng.integers(len(POINT_EVENTS)))]
        book.add(rng, tenant, DATADOG, POINT_RULE, _spelling(rng, name), signature, 0,
                 NO_RESEND, env)
    source = sources[0]
    book.add(rng, tenant, source, STORM_RULE, name, REACHABILITY[NAMING[source]], 3,
             5 * MINUTE, env)


def _spelling(rng: np.random.Generator, name: str) -> str | None:
    """The asset as one tool writes it: mostly as is, sometimes cased or padded, or absent."""
    u = rng.random()
    if u < 0.015:
        return None
    if u < 0.02:
        return ""
    if u < 0.045:
        return name.upper() if name.islower() else name.lower()
    if u < 0.07:
        return f" {name} "
    return name


# ---- episodes: what happens when -----------------------------------------------------------


@dataclass
class _Episodes:
    """One row per episode: a fire..resolve span, a flapping spell or a burst of points."""

    rule: np.ndarray
    kind: np.ndarray
    t0: np.ndarray  # µs after the start
    limit: np.ndarray  # events at or after it are dropped
    duration: np.ndarray  # NORMAL: offset of the resolve
    resend: np.ndarray  # NORMAL: re-send interval
    size: np.ndarray  # events before the limit cut (exact for NORMAL)

    def take(self, index: np.ndarray) -> _Episodes:
        return _Episodes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@dataclass
class _Core:
    """Non-duplicate events (any order): rule, true event time, status, occurrence number."""

    rule: np.ndarray
    time: np.ndarray
    status: np.ndarray
    occ: np.ndarray


def _core_events(rng: np.random.Generator, book: _Book, n: int, tenants: int, days: int,
                 end: int) -> _Core:
    kind = np.array(book.kind)
    storms = _expand(rng, _storms(rng, book, tenants, days, end))
    n_storm = min(len(storms.rule), n // 10)
    points = np.flatnonzero(kind == POINT_RULE)
    n_point = round(0.2 * (n - n_storm)) if len(points) else 0
    stateful = np.flatnonzero(kind == STATEFUL)
    resend = np.array(book.resend, np.int64)
    flappy = rng.random(len(kind)) < 0.08
    parts = [
        _first(storms, n_storm),
        _exactly(rng, n_point, lambda s: _bursts(rng, points, s, end)),
        _exactly(rng, n - n_storm - n_point,
                 lambda s: _stateful(rng, stateful, resend, flappy, s, end)),
    ]
    occ_base = np.cumsum([0] + [int(p.occ.max(initial=-1)) + 1 for p in parts])
    return _Core(*(np.concatenate([getattr(p, name) + (occ_base[i] if name == "occ" else 0)
                                   for i, p in enumerate(parts)])
                   for name in ("rule", "time", "status", "occ")))


def _zipf(rng: np.random.Generator, count: int) -> np.ndarray:
    weight = 1.0 / rng.permutation(np.arange(1, count + 1))
    return np.asarray(weight / weight.sum())


def _stateful(rng: np.random.Generator, rules: np.ndarray, resend: np.ndarray,
              flappy: np.ndarray, scale: float, end: int) -> _Episodes:
    """Poisson episodes per rule; each one ends (resolves) before the rule's next one fires."""
    rule = np.repeat(rules, rng.poisson(scale * _zipf(rng, len(rules))))
    t0 = rng.integers(0, end, len(rule))
    order = np.lexsort((t0, rule))
    rule, t0 = rule[order], t0[order]
    n = len(rule)
    has_next = np.zeros(n, bool)
    has_next[:-1] = rule[1:] == rule[:-1]
    following = np.where(has_next, np.roll(t0, -1), end)
    room = np.minimum(np.where(has_next, (following - t0) * 9 // 10, end - t0), end - t0)
    limit = t0 + np.maximum(room, SECOND)
    raw = np.clip(rng.lognormal(np.log(30 * MINUTE), 1.5, n), MINUTE, 5 * DAY).astype(np.int64)
    duration = np.clip(raw, SECOND, np.maximum(room - 1, SECOND))
    cut_by_end = ~has_next & (raw >= end - t0)
    resolves = (rng.random(n) >= 0.05) & ~cut_by_end  # 5 % go stale; the end cuts others
    every = resend[rule]
    size = 1 + np.minimum((duration - 1) // every, 2000) + resolves
    flap = rng.random(n) < np.where(flappy[rule], 0.6, 0.03)
    size = np.where(flap, 2 * rng.integers(3, 15, n), size)
    return _Episodes(rule, np.where(flap, FLAP, NORMAL), t0, limit, duration, every, size)


def _bursts(rng: np.random.Generator, rules: np.ndarray, scale: float, end: int) -> _Episodes:
    rule = np.repeat(rules, rng.poisson(scale * _zipf(rng, len(rules))))
    n = len(rule)
    zeros = np.zeros(n, np.int64)
    return _Episodes(rule, np.full(n, BURST), rng.integers(0, end, n), np.full(n, end), zeros,
                     zeros, np.minimum(rng.geometric(0.45, n), 10))


def _storms(rng: np.random.Generator, book: _Book, tenants: int, days: int,
            end: int) -> _Episodes:
    """Per tenant ~2.5 storms a month, each in its own 12 h slot (so they never overlap)."""
    kind, tenant = np.array(book.kind), np.array(book.tenant)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for t in range(tenants):
        rules = np.flatnonzero((kind == STORM_RULE) & (tenant == t))
        count = min(int(rng.poisson(2.5 * days / 30)), 2 * days)
        for slot in rng.choice(2 * days, count, replace=False).tolist():
            hit = rng.choice(rules, min(400, max(1, round(rng.uniform(0.3, 1) * len(rules)))),
                             replace=False)
            onset = slot * 12 * HOUR + int(rng.integers(0, 9 * HOUR))
            t0 = onset + rng.integers(0, 4 * MINUTE, len(hit))
            spell = int(rng.integers(15 * MINUTE, 90 * MINUTE))
            duration = np.maximum(spell + rng.integers(-5 * MINUTE, 10 * MINUTE, len(hit)),
                                  3 * MINUTE)
            parts.append((hit, t0, duration))
    rule, t0, duration = (np.concatenate([p[i] for p in parts]) if parts else
                          np.zeros(0, np.int64) for i in range(3))
    keep = t0 < end
    rule, t0, duration = rule[keep], t0[keep], duration[keep]
    n = len(rule)
    resolves = (rng.random(n) >= 0.05) & (t0 + duration < end)
    every = np.full(n, 5 * MINUTE)
    size = 1 + (duration - 1) // every + resolves
    return _Episodes(rule, np.full(n, NORMAL), t0, np.full(n, end), duration, every, size)


def _expand(rng: np.random.Generator, ep: _Episodes) -> _Core:
    """Every episode's events, episode by episode, each in time order; cut at the limits.
    A NORMAL episode fires at t0, re-sends every `resend` before `duration` (at most 2000
    times) and, when its `size` leaves room for it, resolves at `duration`."""
    e = np.repeat(np.arange(len(ep.rule)), ep.size)
    first = np.cumsum(ep.size) - ep.size
    j = np.arange(len(e)) - first[e]
    kind, every, duration = ep.kind[e], ep.resend[e], ep.duration[e]
    jitter = (rng.random(len(e)) * np.minimum(MINUTE, every // 10)).astype(np.int64)
    resent = j * every
    firing = j <= np.minimum((duration - 1) // np.maximum(every, 1), 2000)
    normal = np.where(firing, np.minimum(resent + np.where(j > 0, jitter, 0), duration - 1),
                      duration)
    gap = np.where(kind == FLAP, rng.integers(MINUTE, 8 * MINUTE, len(e)),
                   (rng.exponential(40 * SECOND, len(e)) + SECOND).astype(np.int64))
    gap[j == 0] = 0
    spent = np.cumsum(gap)
    spent -= spent[first[e]]
    time = ep.t0[e] + np.where(kind == NORMAL, normal, spent)
    status = np.where(kind == BURST, POINT, np.where(
        kind == FLAP, np.where(j % 2 == 0, FIRING, RESOLVED),
        np.where(firing, FIRING, RESOLVED))).astype(np.int8)
    occ = e * 16 + np.where(kind == FLAP, j // 2, 0)  # each flap cycle is a Zabbix problem
    keep = time < ep.limit[e]
    return _Core(ep.rule[e][keep], time[keep], status[keep], occ[keep])


def _first(core: _Core, n: int) -> _Core:
    return _Core(core.rule[:n], core.time[:n], core.status[:n], core.occ[:n])


def _exactly(rng: np.random.Generator, n: int, make: Callable[[float], _Episodes]) -> _Core:
    """Exactly n events from whole episodes taken in random order (the last one cut short),
    scaling the episode rate until the supply suffices."""
    if n == 0:
        return _Core(*(np.zeros(0, np.int64) for _ in range(4)))
    scale = n / 3 + 1
    for _ in range(20):
        ep = make(scale)
        supply = int(ep.size.sum())
        if supply < 1.1 * n or supply > 3 * n + 1000:
            scale *= 1.3 * n / max(supply, 1)
            continue
        order = rng.permutation(len(ep.rule))
        k = int(np.searchsorted(np.cumsum(ep.size[order]), 1.05 * n)) + 1
        while True:
            got = _expand(rng, ep.take(order[:k]))
            if len(got.rule) >= n or k >= len(order):
                break
            k = min(len(order), k * 13 // 10 + 1)
        if len(got.rule) >= n:
            return _first(got, n)
        scale *= 1.5
    raise RuntimeError(f"could not generate {n} events")  # pragma: no cover


# ---- arrival: latency, lateness, skew, duplicates --------------------------------------------


@dataclass
class _Arrived:
    """All n rows, in arrival order."""

    rule: np.ndarray
    status: np.ndarray
    occurred: np.ndarray  # µs after the start
    occurred_known: np.ndarray
    received: np.ndarray
    origin: np.ndarray  # the core event whose body (and delivery id) the row carries
    flagged: np.ndarray
    occ: np.ndarray


def _log_uniform(rng: np.random.Generator, low: int, high: int, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), n)).astype(np.int64)


def _arrive(rng: np.random.Generator, core: _Core, book: _Book, n_dup: int,
            horizon: int) -> _Arrived:
    n = len(core.rule)
    source = np.array(book.source, np.int8)[core.rule]
    latency = np.clip(rng.lognormal(np.log(0.8 * SECOND), 0.9, n), 20_000, 60 * SECOND)
    late = rng.random(n) < 0.02
    too_late = late & (rng.random(n) < 0.07)
    delay = np.where(too_late, rng.integers(25 * HOUR, 72 * HOUR, n),
                     np.where(late, _log_uniform(rng, 2 * MINUTE, 12 * HOUR, n), latency))
    received = np.minimum(core.time + delay.astype(np.int64), horizon - 1)
    occurred = core.time.copy()
    skew = rng.random(n) < 0.003
    occurred[skew] = received[skew] + rng.integers(6 * MINUTE, 3 * HOUR, int(skew.sum()))
    known = rng.random(n) >= 0.005
    retrying = np.isin(source, (DATADOG, CLOUDWATCH))  # they carry a delivery id
    origin = np.sort(rng.choice(n, n_dup, replace=False)) if n_dup < n else np.arange(n_dup) % n
    again = np.where(retrying[origin], _log_uniform(rng, SECOND, 15 * MINUTE, n_dup),
                     _log_uniform(rng, 30 * SECOND, 20 * HOUR, n_dup))
    rows = np.concatenate([np.arange(n), origin])
    dup_received = np.minimum(received[origin] + again, horizon - 1)
    all_received = np.concatenate([received, dup_received])
    order = np.lexsort((np.arange(len(rows)), all_received))
    flagged = np.concatenate([np.zeros(n, bool), rng.random(n_dup) < 0.25])
    rows = rows[order]
    return _Arrived(core.rule[rows], core.status[rows], occurred[rows], known[rows],
                    all_received[order], rows, flagged[order], core.occ[rows])


# ---- the table --------------------------------------------------------------------------------


def _table(book: _Book, ev: _Arrived, seed: int, start_us: int) -> pa.Table:
    n = len(ev.rule)
    rule = pa.array(ev.rule)
    source_code = np.array(book.source, np.int64)[ev.rule]
    severity = np.where((source_code == CLOUDWATCH) & (ev.status == RESOLVED), 0,
                        np.array(book.severity, np.int64)[ev.rule])
    salt = np.uint64(seed & 0xFFFF_FFFF) << np.uint64(32)
    columns = {
        "tenant_id": pa.array(book.tenant_names).take(pa.array(book.tenant).take(rule)),
        "event_id": _strings(n, lambda s: _event_ids(ev.received[s] + start_us,
                                                     np.arange(s.start, s.stop), salt)),
        "ingest_seq": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "source": pa.array(SOURCES).take(pa.array(source_code)),
        "source_fingerprint": _fingerprints(book, ev, source_code),
        "asset": pa.array(book.asset, pa.string()).take(rule),
        "signature": pa.array(book.signature).take(rule),
        "severity": pa.array(SEVERITIES).take(pa.array(severity)),
        "status": pa.array(STATUS_NAMES).take(pa.array(ev.status)),
        "occurred_at": pa.array(ev.occurred + start_us, pa.int64(),
                                mask=~ev.occurred_known).cast(TS),
        "received_at": pa.array(ev.received + start_us, pa.int64()).cast(TS),
        "labels": pa.array(book.labels, EVENTS.field("labels").type).take(rule),
        "delivery_id": _delivery_ids(ev.origin, source_code, salt),
        "body_sha256": _strings(n, lambda s: np.concatenate(
            [_hex(_mix((ev.origin[s].astype(np.uint64) * np.uint64(8) + np.uint64(k)) ^ salt))
             for k in range(4)], axis=1)),
        "duplicate": pa.array(ev.flagged),
    }
    return pa.table(columns, schema=EVENTS)


def _fingerprints(book: _Book, ev: _Arrived, source: np.ndarray) -> pa.ChunkedArray:
    """The rule's fingerprint; Zabbix's is the problem id, one per occurrence."""
    zabbix = source == ZABBIX
    problems, index = np.unique(ev.occ[zabbix], return_inverse=True)
    ids = pa.array(48_000_000 + np.arange(len(problems), dtype=np.int64)).cast(pa.string())
    code = ev.rule.astype(np.int64)
    code[zabbix] = len(book.fingerprint) + index
    return pa.chunked_array([pa.concat_arrays([pa.array(book.fingerprint, pa.string()), ids])
                             .take(pa.array(code))])


def _delivery_ids(origin: np.ndarray, source: np.ndarray, salt: np.uint64) -> pa.Array:
    """Datadog: the event id (an integer); CloudWatch: the SNS/EventBridge message id (a UUID).
    A retry (duplicate) carries its original's."""
    datadog, cloudwatch = np.flatnonzero(source == DATADOG), np.flatnonzero(source == CLOUDWATCH)
    base = origin.astype(np.uint64) * np.uint64(8) ^ salt
    numbers = (_mix(base[datadog] + np.uint64(5)) >> np.uint64(1)).astype(np.int64)
    words = [_mix(base[cloudwatch] + np.uint64(k)) for k in (6, 7)]
    uuids = _strings(len(cloudwatch), lambda s: _uuid(np.concatenate(
        [_hex(w[s]) for w in words], axis=1)))
    values = pa.concat_arrays([pa.array(numbers).cast(pa.string()),
                               *uuids.cast(pa.string()).chunks])
    position = np.full(len(origin), -1, np.int64)
    position[datadog] = np.arange(len(datadog))
    position[cloudwatch] = len(datadog) + np.arange(len(cloudwatch))
    return values.take(pa.array(position, mask=position < 0))


# ---- fixed-width strings without a Python loop -------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_PAIRS = (_HEX[np.arange(256) >> 4].astype("<u2") | (_HEX[np.arange(256) & 15].astype("<u2") << 8))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 (distinct inputs, distinct outputs)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)))


def _hex(words: np.ndarray) -> np.ndarray:
    """(n,) uint64 -> (n, 16) ASCII bytes of lower-case hex."""
    big_endian = words.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.asarray(_PAIRS[big_endian].view(np.uint8).reshape(-1, 16))


def _uuid(chars: np.ndarray) -> np.ndarray:
    out = np.full((len(chars), 36), ord("-"), np.uint8)
    for lo, hi, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        out[:, at:at + hi - lo] = chars[:, lo:hi]
    return out


def _event_ids(received_us: np.ndarray, row: np.ndarray, salt: np.uint64) -> np.ndarray:
    """As the ingest service makes them: 12 hex of the receive millisecond, 20 of noise."""
    ms = _hex((received_us // 1000).astype(np.uint64))[:, 4:]
    noise = _hex(_mix(row.astype(np.uint64) ^ salt))
    return np.concatenate([ms, _hex(np.full(len(row), salt >> np.uint64(32)))[:, 12:], noise],
                          axis=1)


def _strings(n: int, chars: Callable[[slice], np.ndarray]) -> pa.ChunkedArray:
    """A string column from fixed-width ASCII rows, made CHUNK rows at a time."""
    chunks = []
    for lo in range(0, n, CHUNK):
        block = np.ascontiguousarray(chars(slice(lo, min(n, lo + CHUNK))))
        rows, width = block.shape
        offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
        chunks.append(pa.Array.from_buffers(pa.string(), rows, [
            None, pa.py_buffer(offsets), pa.py_buffer(block)]))
    return pa.chunked_array(chunks, pa.string())


def _us(t: datetime) -> int:
    delta = t.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


# ---- reading a history --------------------------------------------------------------------------


def day_batches(table: pa.Table) -> list[pa.Table]:
    """Daily arrival batches (UTC date of received_at) in order; each batch's ingest_seq is
    larger than every earlier batch's. Refuses a table whose seq does not follow arrival."""
    if np.any(np.diff(table.column("ingest_seq").to_numpy()) <= 0):  # a history is sorted
        table = table.take(pc.sort_indices(table, [("ingest_seq", "ascending")]))
    day = table.column("received_at").cast(pa.int64()).to_numpy() // DAY
    if np.any(np.diff(day) < 0):
        raise ValueError("ingest_seq does not follow received_at: no daily split keeps order")
    cuts = [0, *(np.flatnonzero(np.diff(day)) + 1).tolist(), table.num_rows]
    return [table.slice(lo, hi - lo) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
            if hi > lo]


def describe(table: pa.Table) -> dict[str, int | float]:
    """Counts of a history for reports: rows, who, what, duplicates and arrival faults."""
    n = table.num_rows
    col = table.column
    received = col("received_at").cast(pa.int64()).to_numpy()
    known = pc.is_valid(col("occurred_at")).to_numpy(zero_copy_only=False)
    occurred = pc.fill_null(col("occurred_at"), col("received_at")).cast(pa.int64()).to_numpy()
    order = np.argsort(col("ingest_seq").to_numpy(), kind="stable")
    has_delivery = pc.is_valid(col("delivery_id")).to_numpy(zero_copy_only=False)
    flagged = col("duplicate").to_numpy(zero_copy_only=False).astype(bool)
    by_delivery = _repeats(order, has_delivery & ~flagged, col("tenant_id"), col("source"),
                           col("delivery_id"))
    by_body = _repeats(order, ~has_delivery & ~flagged, col("tenant_id"), col("body_sha256"))
    duplicate = flagged | by_delivery | by_body
    lag = received - occurred
    asset = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(col("asset"), "")))
    has_asset = pc.not_equal(asset, "").to_numpy(zero_copy_only=False)
    with_asset = pa.array(has_asset)
    keys = pc.binary_join_element_wise(col("tenant_id"), asset,
                                       pc.utf8_lower(col("signature")), "|").filter(with_asset)
    key_sizes = np.sort(pc.value_counts(keys).field("counts").to_numpy())[::-1]
    status = col("status")
    tenant_sizes = pc.value_counts(col("tenant_id")).field("counts").to_numpy()
    stateful = pc.not_equal(status, "point")
    return {
        "events": n,
        "tenants": len(tenant_sizes),
        "assets": pc.count_distinct(pc.binary_join_element_wise(
            col("tenant_id"), asset, "|").filter(with_asset)).as_py(),
        "keys": len(key_sizes),
        "alerts": pc.count_distinct(pc.binary_join_element_wise(
            col("tenant_id"), col("source"), col("source_fingerprint"), "|")
            .filter(stateful)).as_py(),
        "firing": pc.sum(pc.equal(status, "firing")).as_py() or 0,
        "resolved": pc.sum(pc.equal(status, "resolved")).as_py() or 0,
        "point": pc.sum(pc.equal(status, "point")).as_py() or 0,
        "duplicates": int(duplicate.sum()),
        "duplicates_delivery_id": int(by_delivery.sum()),
        "duplicates_body": int(by_body.sum()),
        "duplicates_flagged": int(flagged.sum()),
        "late": int((~duplicate & known & (lag > MINUTE)).sum()),
        "too_late": int((~duplicate & (lag > DAY)).sum()),
        "clock_skew": int((~duplicate & (lag < -5 * MINUTE)).sum()),
        "no_occurred_at": int((~known).sum()),
        "missing_asset": int((~has_asset).sum()),
        "hot_keys_share": float(key_sizes[:max(1, len(key_sizes) // 100)].sum() / max(n, 1)),
        "biggest_tenant_share": float(tenant_sizes.max(initial=0) / max(n, 1)),
        "days": int((received.max() - received.min()) // DAY + 1) if n else 0,
    }


def _repeats(order: np.ndarray, eligible: np.ndarray, *parts: pa.ChunkedArray) -> np.ndarray:
    """Rows whose joined parts were already seen at a lower ingest_seq (among eligible)."""
    rows = order[eligible[order]]
    out = np.zeros(len(eligible), bool)
    if not len(rows):
        return out
    joined = pc.binary_join_element_wise(*(p.take(rows) for p in parts), "\x1f")
    codes = pc.dictionary_encode(joined.combine_chunks()).indices.to_numpy()
    first = np.zeros(len(rows), bool)
    first[np.unique(codes, return_index=True)[1]] = True
    out[rows[~first]] = True
    return out
