"""R2 body-hash duplicates: the numpy path for hashes of one width decides as the strings do."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warehouse.correlation import admission
from warehouse.correlation.admission import BODY_WINDOW_US, _duplicates, _same_width_codes

HOUR = 3_600_000_000


def table(rows: list[tuple[str, str, int]]) -> tuple[pa.Table, np.ndarray]:
    tenants, bodies, received = zip(*rows, strict=True) if rows else ((), (), ())
    n = len(rows)
    return pa.table({
        "tenant_id": pa.array(tenants, pa.string()),
        "source": pa.array(["nagios"] * n, pa.string()),
        "delivery_id": pa.nulls(n, pa.string()),
        "body_sha256": pa.array(bodies, pa.string()),
        "duplicate": pa.array([False] * n),
    }), np.array(received, np.int64)


def reference(rows: list[tuple[str, str, int]]) -> list[bool]:
    """R2 without a delivery id, as a plain loop: a duplicate when the tenant's accepted
    holder of the same body hash was received at most 24 h before."""
    held: dict[tuple[str, str], int] = {}
    out = []
    for tenant, body, received in rows:
        at = held.get((tenant, body))
        duplicate = body != "" and at is not None and received - at <= BODY_WINDOW_US
        if not duplicate and body:
            held[(tenant, body)] = received
        out.append(duplicate)
    return out


def digest(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.integers(0, 4),
                          st.integers(0, 60)), max_size=40),
       st.sampled_from([digest, lambda i: f"b{i}", lambda i: "x" * 9 + str(i),
                        lambda i: "y" * (i + 1)]))
def test_body_duplicates_equal_the_plain_loop(draws: list[tuple[str, int, int]], body) -> None:
    # R2: one width (hex digests, 2 or 10 characters) or several; per tenant; 24 h inclusive
    rows = sorted(((t, body(b), h * HOUR // 2) for t, b, h in draws), key=lambda r: r[2])
    events, received = table(rows)
    assert _duplicates(events, received).tolist() == reference(rows)


def test_one_width_takes_the_numpy_path_and_tells_tenants_apart() -> None:
    # R1/R2: the same body hash in two tenants is two values
    values = pa.array([digest(1), digest(2), digest(1), digest(1)])
    codes = _same_width_codes(np.array([0, 0, 0, 1]), values)
    assert codes is not None
    assert codes[0] == codes[2] and len({codes[0], codes[1], codes[3]}) == 3


def test_several_widths_fall_back_to_the_strings() -> None:
    assert _same_width_codes(np.zeros(2, np.int64), pa.array(["ab", "abc"])) is None


def test_equal_hashes_of_different_values_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # every value hashes alike: the bytes tell them apart, so the strings decide
    monkeypatch.setattr(admission, "_hash_rows",
                        lambda tenant, data: np.zeros(len(data), np.uint64))
    assert _same_width_codes(np.zeros(2, np.int64), pa.array([digest(1), digest(2)])) is None
    same = _same_width_codes(np.zeros(2, np.int64), pa.array([digest(1), digest(1)]))
    assert same is not None and same.tolist() == [0, 0]
    rows = [("t1", digest(1), 0), ("t1", digest(2), 1), ("t1", digest(1), 2)]
    events, received = table(rows)
    assert _duplicates(events, received).tolist() == [False, False, True]
