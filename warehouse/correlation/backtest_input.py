"""What `aw backtest` replays: events from a JSON-lines file, a Parquet file or the lake, and
settings from a JSON file or the registry, each checked with a message naming the line, row,
column or setting at fault (`InputError`).

Decisions (JSON lines):

- Each non-blank line is one canonical alert object exactly as `POST /v1/alerts` accepts it,
  plus optional envelope fields `tenant_id`, `received_at` and `ingest_seq`. The envelope is
  taken off before the object is validated and hashed, so the R2 body hash covers the alert
  object only, as in the service. Parsing and validation are the service's own functions,
  passed in (`parse`, `validate`): `warehouse` does not import `service`.
- Lines are numbered from 1. Blank (whitespace-only) lines are skipped; they keep their number.
- `tenant_id` defaults to `DEFAULT_TENANT` (the CLI passes `--tenant` when given).
- `received_at` defaults to the alert's `occurred_at` when it has one (a history replayed as if
  every event arrived on time: nothing is too late or skewed), else to one fixed time per run
  (the run's start, `run_us`), the same for every such line.
- `ingest_seq` defaults to the line number; two lines with one sequence number are refused.
- The event id of line n is `line-<n>`.

Parquet files hold the columns of `events.EVENTS` (extra columns are ignored, absent optional
ones are null); rows are numbered from 1 in messages. Lake input reads `raw/alerts` and
`raw/duplicates` (as `duplicate` rows, whose alert fields the lake does not keep) of one tenant
with `received_at` in `[start, end)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from warehouse.contracts import AlertRecord
from warehouse.correlation.events import EVENTS, SEVERITIES, STATUS_CODES, conform
from warehouse.correlation.timeline import SettingsTimeline, Version, to_us
from warehouse.correlation_settings import CorrelationSettings
from warehouse.lake import Lake
from warehouse.registry_records import SettingsVersion, validate_tenant_id
from warehouse.timestamps import TimestampError, parse_rfc3339_us, us_to_datetime

DEFAULT_TENANT = "backtest"
ENVELOPE = ("tenant_id", "received_at", "ingest_seq")
PARQUET_MAGIC = b"PAR1"
PROGRESS_EVERY = 1000
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_SEQ = 2**63 - 1
# Columns a Parquet file must have; `conform` fills `body_sha256` and `duplicate`.
REQUIRED_COLUMNS = tuple(
    f.name for f in EVENTS if not f.nullable and f.name not in ("body_sha256", "duplicate")
)

Parse = Callable[[bytes], Any]
Validate = Callable[[dict[str, Any], int], AlertRecord]


class InputError(ValueError):
    """Backtest input that cannot be used; the message names the line, row or setting."""


def is_parquet(path: Path) -> bool:
    """A Parquet file by its suffix or its magic bytes."""
    if path.suffix.lower() == ".parquet":
        return True
    with _opened(path) as handle:
        return bool(handle.read(4) == PARQUET_MAGIC)


def _opened(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError("no such file") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}") from None


def count_lines(path: Path) -> int:
    """Lines of a text file, by counting newlines in large chunks (cheap next to parsing)."""
    count = last = 0
    with _opened(path) as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1]
    return count + (1 if last not in (0, 10) else 0)


class _Columns:
    """EVENTS columns of the lines read so far, and which line holds each sequence number."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {f.name: [] for f in EVENTS}
        self.seq_lines: dict[int, int] = {}

    def add(self, number: int, tenant: str, seq: int, received_us: int,
            record: AlertRecord) -> None:
        values = {
            "tenant_id": tenant, "event_id": f"line-{number}", "ingest_seq": seq,
            "source": record.source, "source_fingerprint": record.source_fingerprint,
            "asset": record.asset, "signature": record.signature, "severity": record.severity,
            "status": record.status, "occurred_at": record.occurred_at_us,
            "received_at": received_us, "labels": list(record.labels.items()),
            "delivery_id": record.delivery_id, "body_sha256": record.body_sha256,
            "duplicate": False,
        }
        for name, value in values.items():
            self.rows[name].append(value)

    def table(self) -> pa.Table:
        arrays = []
        for field in EVENTS:
            values = self.rows[field.name]
            if field.type == EVENTS.field("received_at").type:
                arrays.append(pa.array(values, pa.int64()).cast(field.type))
            else:
                arrays.append(pa.array(values, field.type))
        return pa.Table.from_arrays(arrays, schema=EVENTS)


def read_jsonl(path: Path, parse: Parse, validate: Validate, *, run_us: int,
               tenant: str = DEFAULT_TENANT,
               advance: Callable[[int], None] | None = None) -> pa.Table:
    """Every alert line of `path` as an `EVENTS` table (see the module docstring)."""
    columns = _Columns()
    pending = 0
    with _opened(path) as handle:
        for number, line in enumerate(handle, start=1):
            pending += 1
            if advance is not None and pending >= PROGRESS_EVERY:
                advance(pending)
                pending = 0
            if line.strip():
                _read_line(columns, number, line, parse, validate, run_us, tenant)
    if advance is not None and pending:
        advance(pending)
    if not columns.seq_lines:
        raise InputError("holds no alert lines (blank lines are skipped)")
    return columns.table()


def _read_line(columns: _Columns, number: int, line: bytes, parse: Parse, validate: Validate,
               run_us: int, default_tenant: str) -> None:
    where = f"line {number}: "
    try:
        document = parse(line)
    except ValueError as exc:
        raise InputError(f"{where}{exc}") from None
    if not isinstance(document, dict):
        raise InputError(f"{where}expected one JSON object (an alert), got "
                         f"{type(document).__name__}")
    envelope = {name: document.pop(name) for name in ENVELOPE if name in document}
    try:
        tenant = _tenant(envelope.get("tenant_id", default_tenant))
        received = _received_us(envelope, document, run_us)
        seq = _sequence(envelope.get("ingest_seq", number))
        record = validate(document, received)
    except ValueError as exc:
        raise InputError(f"{where}{exc}") from None
    if seq in columns.seq_lines:
        raise InputError(f"{where}ingest_seq {seq} is already used by line "
                         f"{columns.seq_lines[seq]}")
    columns.seq_lines[seq] = number
    columns.add(number, tenant, seq, received, record)


def _tenant(value: object) -> str:
    try:
        return validate_tenant_id(value)  # type: ignore[arg-type]  # it checks the type too
    except ValueError as exc:
        raise ValueError(f"tenant_id: {exc}") from None


def _received_us(envelope: dict[str, Any], alert: dict[str, Any], run_us: int) -> int:
    if "received_at" in envelope:
        value = envelope["received_at"]
        if not isinstance(value, str):
            raise ValueError(f"received_at: expected an RFC 3339 string, got "
                             f"{type(value).__name__}")
        try:
            return parse_rfc3339_us(value)
        except TimestampError as exc:
            raise ValueError(f"received_at: {exc}") from None
    occurred = alert.get("occurred_at")
    if isinstance(occurred, str):
        try:
            return parse_rfc3339_us(occurred)
        except TimestampError:
            pass  # the alert's own validation names the bad occurred_at
    return run_us


def _sequence(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SEQ:
        raise ValueError(f"ingest_seq: expected a non-negative integer, got {value!r}")
    return value


def read_parquet(path: Path) -> pa.Table:
    """A Parquet file of canonical events, checked, as an `EVENTS` table."""
    with _opened(path):
        pass  # the precise message for a missing or unreadable file
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"not a readable Parquet file: {exc}") from None
    return check_events(table)


def check_events(table: pa.Table) -> pa.Table:
    """Columns, types, nulls, status and severity values, unique ids and sequence numbers."""
    missing = [name for name in REQUIRED_COLUMNS if name not in table.column_names]
    if missing:
        raise InputError(f"missing required column(s): {', '.join(missing)}")
    if table.num_rows == 0:
        raise InputError("holds no events")
    for field in EVENTS:
        if field.name in table.column_names:
            try:
                table.column(field.name).cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise InputError(f"column {field.name}: cannot be read as {field.type}: "
                                 f"{exc}") from None
    events = conform(table)
    for field in EVENTS:
        column = events.column(field.name)
        if not field.nullable and column.null_count:
            row = _first_row(pc.is_null(column))
            raise InputError(f"column {field.name}: row {row} is null")
    _check_values(events, "status", tuple(STATUS_CODES))
    _check_values(events, "severity", tuple(reversed(SEVERITIES)))
    for name in ("event_id", "ingest_seq"):
        _check_unique(events, name)
    return events


def _first_row(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py()) + 1


def _check_values(events: pa.Table, name: str, allowed: Sequence[str]) -> None:
    column = events.column(name)
    bad = pc.invert(pc.is_in(column, value_set=pa.array(allowed, pa.string())))
    if pc.any(bad).as_py():
        row = _first_row(bad)
        value = column[row - 1].as_py()
        raise InputError(f"column {name}: row {row}: {value!r} is not one of "
                         f"{', '.join(allowed)}")


def _check_unique(events: pa.Table, name: str) -> None:
    values = events.column(name).to_pandas()
    repeated = values.duplicated(keep=False)
    if repeated.any():
        rows = [int(i) + 1 for i in repeated[repeated].index[:2]]
        raise InputError(f"column {name}: {values.iloc[rows[0] - 1]!r} appears in rows "
                         f"{rows[0]} and {rows[1]}")


def parse_instant(option: str, text: str) -> int:
    """`--from`/`--to`: a date (midnight UTC) or RFC 3339 with an offset → µs."""
    if _DATE_RE.fullmatch(text):
        try:
            return to_us(datetime.combine(date.fromisoformat(text), time(), UTC))
        except ValueError:
            pass  # e.g. 2026-02-30: the message below
    try:
        return parse_rfc3339_us(text)
    except TimestampError:
        raise InputError(f"{option}: {text!r} is not a date (2026-11-26) nor an RFC 3339 "
                         "time with an offset (2026-11-26T10:00:00Z)") from None


def read_lake(lake: Lake, tenant: str, start_us: int, end_us: int) -> pa.Table:
    """A tenant's accepted events and duplicates received in `[start_us, end_us)`."""
    start, end = us_to_datetime(start_us), us_to_datetime(end_us)
    where = (
        (ds.field("tenant_id") == tenant)
        & (ds.field("date") >= start.date()) & (ds.field("date") <= end.date())
        & (ds.field("received_at") >= pa.scalar(start, EVENTS.field("received_at").type))
        & (ds.field("received_at") < pa.scalar(end, EVENTS.field("received_at").type))
    )
    alerts = lake.read_table("raw/alerts", where)
    duplicates = lake.read_table("raw/duplicates", where)
    n = duplicates.num_rows
    duplicates = duplicates.append_column("signature", pa.array([""] * n, pa.string())) \
        .append_column("severity", pa.array(["warning"] * n, pa.string())) \
        .append_column("status", pa.array(["point"] * n, pa.string())) \
        .append_column("duplicate", pa.array([True] * n, pa.bool_()))
    return pa.concat_tables([conform(alerts), conform(duplicates)])


def read_settings(path: Path) -> CorrelationSettings:
    """A JSON object of correlation settings; absent fields take the SEMANTICS defaults."""
    with _opened(path) as handle:
        raw = handle.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError('expected a JSON object of settings, such as {"window": "15m"}')
    try:
        return CorrelationSettings.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None


def stored_timeline(tenant: str, history: Sequence[SettingsVersion]) -> SettingsTimeline:
    """A tenant's stored settings versions as a timeline, labelled `v<version number>`;
    before the first one (and for other tenants) the defaults, `v0`."""
    return stored_timelines({tenant: history})


def stored_timelines(histories: Mapping[str, Sequence[SettingsVersion]]) -> SettingsTimeline:
    """Every listed tenant's stored settings versions (see `stored_timeline`)."""
    return SettingsTimeline({tenant: [
        Version(f"v{v.version}", to_us(v.effective_at), v.settings) for v in history
    ] for tenant, history in histories.items()})
