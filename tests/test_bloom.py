"""The Bloom filter in front of the persisted duplicate keys: never a false negative, the two
lookup paths (plain Python for small batches, numpy for large ones) agree, and the false
positive rate is what the sizing promises."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import bloom as bloom_module
from service.bloom import BloomFilter

BATCH = bloom_module._BATCH  # below this, might_contain takes the plain-Python path
K = bloom_module._K

KEY = st.binary(min_size=16, max_size=16)


def random_keys(rng: random.Random, count: int) -> list[bytes]:
    return [rng.randbytes(16) for _ in range(count)]


def python_path(bf: BloomFilter, keys: list[bytes]) -> list[bool]:
    """Each key on its own: always the plain-Python path."""
    answers = [bf.might_contain([k])[0] for k in keys]
    assert answers == [bf._contains(k) for k in keys]
    return answers


def numpy_path(bf: BloomFilter, keys: list[bytes]) -> list[bool]:
    """Padded to a large batch: always the numpy path."""
    padding = [bytes(16)] * max(0, BATCH - len(keys))
    return bf.might_contain(keys + padding)[: len(keys)]


@settings(max_examples=300, deadline=None)
@given(added=st.lists(KEY, min_size=1, max_size=200), probes=st.lists(KEY, max_size=200))
def test_no_false_negatives_and_both_paths_agree(added: list[bytes], probes: list[bytes]) -> None:
    bf = BloomFilter(12)  # small, so that many probes are false positives too
    bf.add(added)
    assert bf.count == len(added)
    # Every added key is found, by either path, in batches of any size.
    assert python_path(bf, added) == [True] * len(added)
    assert numpy_path(bf, added) == [True] * len(added)
    assert bf.might_contain(added) == [True] * len(added)
    # Any other key gets the same answer from both paths.
    assert python_path(bf, probes) == numpy_path(bf, probes)


@settings(max_examples=100, deadline=None)
@given(batches=st.lists(st.lists(KEY, max_size=80), min_size=1, max_size=5))
def test_keys_added_in_several_batches_are_all_found(batches: list[list[bytes]]) -> None:
    bf = BloomFilter(16)
    for batch in batches:
        bf.add(batch)
    everything = [k for batch in batches for k in batch]
    assert bf.count == len(everything)
    assert all(bf.might_contain(everything))
    assert all(python_path(bf, everything))


@pytest.mark.parametrize(
    "key",
    [
        bytes(16),  # all zeros: the step is forced odd, positions still differ
        b"\xff" * 16,  # wrap-around of the 64-bit arithmetic
        b"\xff" * 8 + bytes(8),
        bytes(8) + b"\xff" * 8,
        bytes(range(16)),
    ],
)
@pytest.mark.parametrize("bits_log2", [3, 10, 20, 27])
def test_edge_keys_are_found_by_both_paths(key: bytes, bits_log2: int) -> None:
    bf = BloomFilter(bits_log2)
    bf.add([key])
    assert python_path(bf, [key]) == [True]
    assert numpy_path(bf, [key]) == [True]


def test_positions_are_k_distinct_bits_inside_the_filter() -> None:
    rng = random.Random(3)
    bf = BloomFilter(10)
    keys = random_keys(rng, 500)
    positions = bf._positions(keys)
    assert positions.shape == (500, K)
    assert int(positions.max()) < bf.size
    # The odd step and the power-of-two size make the K positions of a key distinct.
    assert all(len(set(row)) == K for row in positions.tolist())


def test_an_empty_filter_contains_nothing_and_empty_input_is_harmless() -> None:
    bf = BloomFilter(16)
    bf.add([])
    assert bf.count == 0
    assert bf.might_contain([]) == []
    keys = random_keys(random.Random(1), 3 * BATCH)
    assert bf.might_contain(keys) == [False] * len(keys)
    assert python_path(bf, keys[:10]) == [False] * 10


def test_add_accepts_any_iterable_of_keys() -> None:
    # The intake hands over a pending generation: a dict keyed by the digests.
    keys = random_keys(random.Random(2), 10)
    bf = BloomFilter(16)
    bf.add(dict.fromkeys(keys))
    assert bf.count == 10 and all(bf.might_contain(keys))


@pytest.mark.parametrize(
    ("bits_log2", "keys", "design_rate"),
    [
        # the test size of the brief: ~21 bits per key
        (20, 50_000, (1 - math.exp(-K * 50_000 / 2**20)) ** K),  # ≈ 0.015 %
        # the documented design point: 2**bits / 10 keys → about 1 %
        (20, 2**20 // 10, 0.01),
    ],
    ids=["50k-keys-in-2^20-bits", "10-bits-per-key"],
)
def test_false_positive_rate_is_near_design(
    bits_log2: int, keys: int, design_rate: float
) -> None:
    rng = random.Random(20)
    bf = BloomFilter(bits_log2)
    added = random_keys(rng, keys)
    bf.add(added)
    assert all(bf.might_contain(added))
    probes = 200_000
    rate = sum(bf.might_contain(random_keys(rng, probes))) / probes
    theory = (1 - math.exp(-K * keys / 2**bits_log2)) ** K
    assert rate <= design_rate * 1.5
    # Not suspiciously low either (a filter answering "no" too often would be broken).
    assert rate >= theory / 3
    assert rate == pytest.approx(theory, rel=0.5)
