"""A Bloom filter over 16-byte digests: "certainly new" without a disk lookup.

Almost every key the intake checks is new; the filter answers that in memory and sends only
probable hits (real duplicates and ~1 % false positives) to SQLite. Positions come from the
digest itself (double hashing of its two 64-bit halves), so no hashing is repeated. Keys are
never removed: an expired body hash stays "probable" until the filter is rebuilt at the next
start, which only costs a lookup, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_K = 7  # positions per key: optimal for ~10 bits per key (≈1 % false positives)
_BATCH = 64  # below this many keys, plain Python beats numpy's per-call overhead


class BloomFilter:
    """`2**bits_log2` bits; ~1 % false positives up to `2**bits_log2 / 10` keys."""

    def __init__(self, bits_log2: int = 27) -> None:
        self.size = 1 << bits_log2
        self._mask = self.size - 1
        self._bits = np.zeros(self.size // 8, dtype=np.uint8)
        self.count = 0

    def _positions(self, keys: list[bytes]) -> np.ndarray:
        halves = np.frombuffer(b"".join(keys), dtype="<u8").reshape(-1, 2)
        steps = np.arange(_K, dtype=np.uint64)
        with np.errstate(over="ignore"):  # wrap-around is the point of the arithmetic
            return (halves[:, :1] + steps * (halves[:, 1:] | np.uint64(1))) & np.uint64(
                self._mask
            )

    def add(self, keys: Iterable[bytes]) -> None:
        batch = list(keys)
        if not batch:
            return
        pos = self._positions(batch).ravel()
        masks = np.left_shift(1, pos & np.uint64(7)).astype(np.uint8)
        np.bitwise_or.at(self._bits, pos >> np.uint64(3), masks)
        self.count += len(batch)

    def might_contain(self, keys: list[bytes]) -> list[bool]:
        """For each key: False = certainly never added; True = probably added."""
        if len(keys) < _BATCH:
            return [self._contains(key) for key in keys]
        pos = self._positions(keys)
        hits = (self._bits[pos >> np.uint64(3)] >> (pos & np.uint64(7)).astype(np.uint8)) & 1
        found: list[bool] = hits.all(axis=1).tolist()
        return found

    def _contains(self, key: bytes) -> bool:
        h1 = int.from_bytes(key[:8], "little")
        h2 = int.from_bytes(key[8:16], "little") | 1
        bits, mask = self._bits, self._mask
        for i in range(_K):
            p = (h1 + i * h2) & mask
            if not (bits[p >> 3] >> (p & 7)) & 1:
                return False
        return True
