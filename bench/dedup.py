"""Speed of dedup's near-duplicate join: today's bands against contiguous bands (the old join), paired.

    .venv/bin/python bench/dedup.py [--template 50000,100000,200000] [--varied 2300000]

Two workloads, each run with mmfr.dedup.find_drops twice in one process: once with the join of
mmfr.nearhash as it is, once with the old join (``contiguous_join`` below: d + 1 runs of adjacent
bits), checking that both drop exactly the same rows for the same reasons:

  template  rows that all share one question and answer, with images of text on white: their
            perceptual hashes are drawn bit by bit with the frequencies measured on ``--render``
            rendered text images (some bits almost never change), all distinct. This is the
            quadratic corner: every pair that agrees on a band is a candidate.
  varied    bench/dedup_calibration.py's synthetic table: random hashes, 5% copies (the common case).

Prints seconds per workload and size, old / new, and the drop counts. A bench script, not a test.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_calibration import synthetic_table  # noqa: E402

from mmfr import dedup, images, nearhash  # noqa: E402


def contiguous_join(key_a, ph_a, key_b, ph_b, d, chunk=1 << 22):
    """The old join: d + 1 bands of adjacent bits, whatever the bits' frequencies."""
    edges = np.linspace(0, 64, d + 2).round().astype(int)
    masks = [np.uint64(((1 << (hi - lo)) - 1) << lo) for lo, hi in zip(edges[:-1], edges[1:])]
    return nearhash.join_on_bands(key_a, ph_a, key_b, ph_b, d, masks, chunk)


def text_bit_frequencies(n: int, seed: int = 0) -> np.ndarray:
    """How often each bit of the perceptual hash is set over ``n`` rendered images of short sums."""
    rng = random.Random(seed)
    hashes = []
    for _ in range(n):
        img = Image.new("RGB", (rng.randint(300, 500), rng.randint(120, 300)), "white")
        draw = ImageDraw.Draw(img)
        for line in range(rng.randint(1, 4)):
            draw.text((10 + rng.randint(0, 20), 10 + 25 * line),
                      f"Compute {rng.randint(1, 999)} + {rng.randint(1, 999)} x {rng.choice('abcxyz')}", fill="black")
        hashes.append(int(images.perceptual_hash(img), 16))
    h = np.array(hashes, np.uint64)
    return ((h[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)


def template_table(n: int, freq: np.ndarray, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ph = np.zeros(n, np.uint64)
    for bit, p in enumerate(freq):
        ph |= (rng.random(n) < p).astype(np.uint64) << np.uint64(bit)
    ph = np.unique(ph)  # all distinct: identical hashes are one node already
    n = len(ph)
    return pa.table({
        "source": pa.array(["s0"] * n), "id": pa.array([f"{i:016x}" for i in range(n)]),
        "original_id": pa.array([str(i) for i in range(n)]),
        "question": pa.array(["Compute the value shown in the image."] * n), "answer": pa.array(["42"] * n),
        "image_sha256": pa.array([f"{i:064x}" for i in range(n)]),
        "image_phash": pa.array([f"{x:016x}" for x in ph]),
    })


def paired(name: str, train: pa.Table, bench: pa.Table, priority: list[str]) -> None:
    took, drops = {}, {}
    for label, join in (("old", contiguous_join), ("new", nearhash.hamming_join)):
        dedup.hamming_join = join
        t0 = time.perf_counter()
        drops[label] = dedup.find_drops(train, bench, priority, dedup.DedupConfig())
        took[label] = time.perf_counter() - t0
    dedup.hamming_join = nearhash.hamming_join
    same = drops["old"].sort_by("id").equals(drops["new"].sort_by("id"))
    print(f"{name:>9} {train.num_rows:>10,} rows  old {took['old']:7.2f} s  new {took['new']:7.2f} s  "
          f"old/new {took['old'] / took['new']:5.1f}x  drops {drops['new'].num_rows:,}  identical {same}", flush=True)
    if not same:
        raise SystemExit("the two joins dropped different rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--template", default="50000,100000,200000", help="row counts, comma separated ('' skips)")
    ap.add_argument("--varied", default="2300000", help="row counts, comma separated ('' skips)")
    ap.add_argument("--render", type=int, default=1500, help="rendered images to measure bit frequencies on")
    args = ap.parse_args()
    sizes = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    if sizes(args.template):
        freq = text_bit_frequencies(args.render)
        print(f"bits of rendered text images: {int((np.abs(freq - 0.5) > 0.45).sum())} of 64 almost constant")
        for n in sizes(args.template):
            train = template_table(n, freq)
            paired("template", train, train.slice(0, 0), ["s0"])
    for n in sizes(args.varied):
        train, bench = synthetic_table(n, 20_000)
        paired("varied", train, bench, ["s0", "s1", "s2", "s3"])


if __name__ == "__main__":
    main()
