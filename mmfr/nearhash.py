"""Perceptual-hash arithmetic shared by dedup and release matching: hex hashes to integers, and the
pairs of rows with an equal key whose hashes are at most d bits apart.

The join is multi-index hashing: the 64 bits are split into disjoint sets and two hashes within d
bits must agree on all bits of some combination of them (pigeonhole), so rows are grouped by key
and those bits and only pairs within a group are compared. Which split is decided from the data
(``cheapest_layout``): on spread hashes the plain d + 1 sets, on concentrated ones (images of
text on white, where a dozen bits hardly ever change) more, narrower sets taken several at a
time, which keeps the number of chance candidates from growing with the square of the rows.
Every layout yields the same pairs; only the work differs (bench/dedup.py)."""
from __future__ import annotations

import itertools

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


SAMPLE = 1 << 14  # rows per side the cost of each band layout is estimated on
EXTRA_BANDS = (0, 1, 2)  # layouts tried: d + 1 + s bands, a pair within d agrees on s + 1 of them
ROW_COST = 4  # one row through one grouping pass costs about as much as this many candidate pairs


def balanced_sets(count: int, sample: np.ndarray) -> list[np.uint64]:
    """Masks of ``count`` disjoint sets of bits covering all 64, dealt so that each set carries
    about the same entropy over ``sample``: most varied bit first, back and forth across the sets.
    In images of text on white a dozen bits hardly ever change, and a set made of them would put
    nearly every row in one group."""
    p = np.array([np.mean((sample >> np.uint64(b)) & np.uint64(1)) for b in range(64)]) if len(sample) else np.full(64, .5)
    entropy = -sum(np.where(q > 0, q * np.log2(np.maximum(q, 1e-300)), 0.) for q in (p, 1 - p))
    order = np.argsort(-entropy, kind="stable")
    turn = np.arange(64) % (2 * count)
    which = np.where(turn < count, turn, 2 * count - 1 - turn)  # 0..c-1, c-1..0, ...
    masks = np.zeros(count, np.uint64)
    np.bitwise_or.at(masks, which, np.uint64(1) << order.astype(np.uint64))
    return list(masks)


def layout(d: int, extra: int, sample: np.ndarray) -> list[np.uint64]:
    """The masks one join groups by: d + 1 + ``extra`` balanced sets of bits, taken ``extra`` + 1
    at a time. Two hashes within d bits differ in at most d sets, so they agree on every bit of
    at least one mask (pigeonhole); more sets make each mask longer (fewer chance candidates) and
    the masks more numerous (more passes, a close pair found more often)."""
    sets = balanced_sets(d + 1 + extra, sample)
    return [np.bitwise_or.reduce(c) for c in itertools.combinations(sets, extra + 1)]


def _sample(n: int) -> np.ndarray:
    return np.arange(n) if n <= SAMPLE else np.sort(np.random.default_rng(0).choice(n, SAMPLE, replace=False))


def cheapest_layout(key_a: np.ndarray, ph_a: np.ndarray, key_b: np.ndarray, ph_b: np.ndarray, d: int) -> list[np.uint64]:
    """The layout (of ``EXTRA_BANDS``) with the least estimated work: rows times passes, plus the
    candidate pairs, counted on a sample of each side and scaled up. Any layout finds the same pairs."""
    sa, sb = _sample(len(key_a)), _sample(len(key_b))
    ka, kb, pa_, pb_ = key_a[sa], key_b[sb], ph_a[sa], ph_b[sb]
    scale = (len(key_a) / len(sa)) * (len(key_b) / len(sb))
    keys, hashes = np.concatenate([ka, kb]), np.concatenate([pa_, pb_])
    best = None
    for extra in EXTRA_BANDS:
        masks = layout(d, extra, hashes)
        pairs = 0.
        for mask in masks:
            labels = group(keys, hashes & mask)
            pairs += np.dot(np.bincount(labels[:len(ka)], minlength=labels.max() + 1).astype(float),
                            np.bincount(labels[len(ka):], minlength=labels.max() + 1).astype(float))
        cost = len(masks) * (len(key_a) + len(key_b)) * ROW_COST + pairs * scale
        if best is None or cost < best[0]:
            best = (cost, masks)
    return best[1]


def hamming_join(key_a: np.ndarray, ph_a: np.ndarray, key_b: np.ndarray, ph_b: np.ndarray, d: int,
                 chunk: int = 1 << 22):
    """Yield (ia, ib, distance) arrays of the pairs with equal key and hashes at most ``d`` bits
    apart, in bounded chunks. A pair may be yielded more than once (once per mask it agrees on).
    Multi-index hashing: rows are grouped by key and the hash's bits under each mask of the
    cheapest layout, and only pairs within a group are compared."""
    if not len(key_a) or not len(key_b):
        return
    yield from join_on_bands(key_a, ph_a, key_b, ph_b, d, cheapest_layout(key_a, ph_a, key_b, ph_b, d), chunk)


def join_on_bands(key_a: np.ndarray, ph_a: np.ndarray, key_b: np.ndarray, ph_b: np.ndarray, d: int,
                  masks: list[np.uint64], chunk: int = 1 << 22):
    """``hamming_join`` grouping by the hash's bits under each of ``masks`` (a layout: two hashes
    within d bits must agree under at least one mask)."""
    for mask in masks:
        labels = group(np.concatenate([key_a, key_b]), np.concatenate([ph_a & mask, ph_b & mask]))
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
