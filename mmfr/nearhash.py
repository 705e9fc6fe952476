"""Perceptual-hash arithmetic shared by dedup and release matching: hex hashes to integers, and the
pairs of rows with an equal key whose hashes are at most d bits apart (multi-index hashing: split
the 64 bits into d + 1 bands; two hashes within d bits agree exactly on at least one band)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def codes(arr: pa.Array) -> np.ndarray:
    """Integer codes of equal values (only equality is used); each null gets a code of its own."""
    enc = pc.dictionary_encode(arr)
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    nulls = np.flatnonzero(codes < 0)
    codes[nulls] = len(enc.dictionary) + np.arange(len(nulls))
    return codes


_HEX = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i


def phash_values(hexes: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """16-hex-char hashes → (uint64 values, valid mask); null or malformed hashes are invalid."""
    a = pc.utf8_lower(pc.cast(hexes, pa.string()))
    ok = pc.fill_null(pc.equal(pc.utf8_length(a), 16), False)
    a = pc.if_else(ok, a, "0" * 16).combine_chunks() if isinstance(a, pa.ChunkedArray) else pc.if_else(ok, a, "0" * 16)
    n = len(a)
    if not n:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    offsets = np.frombuffer(a.buffers()[1], np.int32)[a.offset:a.offset + n + 1]
    raw = np.frombuffer(a.buffers()[2], np.uint8)
    nibbles = _HEX[raw[offsets[:-1, None] + np.arange(16)]]
    valid = ok.to_numpy(zero_copy_only=False) & (nibbles != 255).all(axis=1)
    values = np.zeros(n, np.uint64)
    for k in range(16):
        values = (values << np.uint64(4)) | (nibbles[:, k] & 15).astype(np.uint64)
    return values, valid


def _bands(d: int) -> list[tuple[np.uint64, np.uint64]]:
    """(shift, mask) of d + 1 disjoint bands covering the 64 bits."""
    edges = np.linspace(0, 64, d + 2).round().astype(int)
    return [(np.uint64(lo), np.uint64((1 << (hi - lo)) - 1)) for lo, hi in zip(edges[:-1], edges[1:])]


def group(*keys: np.ndarray) -> np.ndarray:
    """Dense labels of equal key tuples (labels follow the sorted key order)."""
    n = len(keys[0])
    if not n:
        return np.zeros(0, np.int64)
    order = np.lexsort(keys[::-1])
    change = np.zeros(n, bool)
    for k in keys:
        ks = k[order]
        change[1:] |= ks[1:] != ks[:-1]
    labels = np.empty(n, np.int64)
    labels[order] = np.cumsum(change)
    return labels


def hamming_join(key_a: np.ndarray, ph_a: np.ndarray, key_b: np.ndarray, ph_b: np.ndarray, d: int,
                 chunk: int = 1 << 22):
    """Yield (ia, ib, distance) arrays of the pairs with equal key and hashes at most ``d`` bits
    apart, in bounded chunks. A pair may be yielded more than once (once per shared band)."""
    if not len(key_a) or not len(key_b):
        return
    for shift, mask in _bands(d):
        labels = group(np.concatenate([key_a, key_b]),
                        np.concatenate([(ph_a >> shift) & mask, (ph_b >> shift) & mask]))
        la, lb = labels[:len(key_a)], labels[len(key_a):]
        border = np.argsort(lb, kind="stable")
        lbs = lb[border]
        lo = np.searchsorted(lbs, la, "left")
        cnt = np.searchsorted(lbs, la, "right") - lo
        rows = np.flatnonzero(cnt)
        ends = np.cumsum(cnt[rows])
        start = 0
        while start < len(rows):
            stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + chunk, "right")))
            r, c = rows[start:stop], cnt[rows[start:stop]]
            ia = np.repeat(r, c)
            first = np.repeat(np.cumsum(c) - c, c)
            ib = border[np.repeat(lo[r], c) + np.arange(len(ia)) - first]
            dist = np.bitwise_count(ph_a[ia] ^ ph_b[ib]).astype(np.int64)
            keep = dist <= d
            yield ia[keep], ib[keep], dist[keep]
            start = stop
