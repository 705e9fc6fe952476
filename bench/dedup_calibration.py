"""Calibrate the perceptual-hash thresholds of mmfr.dedup, and time find_drops.

    python bench/dedup_calibration.py [--fixtures DIR] [--per-family 300] [--rows 1000000]

Prints (1) for the real images under the fixtures: the hamming distances between distinct images,
and how far a re-encoded, resized or cropped copy moves from its original; (2) for the demo's
synthetic images: how many distinct train/test pairs fall within d bits, for d = 0..10, on the
hash alone and with the same answer and options; (3) the time find_drops takes on a synthetic
table of ``--rows`` records with random hashes (0 skips it). A bench script, not a test.
"""

from __future__ import annotations

import argparse
import io
import itertools
import resource
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from mmfr import dedup, images
from mmfr.demo import synth
from mmfr.schema import seed_for

DS = range(0, 11)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def copies(img: Image.Image) -> dict[str, bytes]:
    """The ways an aggregate source alters an image."""
    w, h = img.size
    out = {"jpeg q=85": encode(img, "JPEG", quality=85)}
    for s in (0.5, 0.75):
        out[f"resize {s}x"] = encode(img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC))
    for c in (0.02, 0.05):
        dx, dy = round(w * c), round(h * c)
        out[f"crop {c:.0%}/side"] = encode(img.crop((dx, dy, w - dx, h - dy)))
    return out


def hist(values) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(Counter(values).items()))


def real_images(root: Path) -> None:
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    norm = {p: images.normalise(p.read_bytes(), 2048) for p in paths}
    by_sha = {images.sha256(n.data): n for n in norm.values()}
    hashes = [n.phash for n in by_sha.values()]
    dist = [images.hamming(a, b) for a, b in itertools.combinations(hashes, 2)]
    print(f"\n== real images: {len(paths)} files under {root}, {len(by_sha)} distinct ({len(dist)} pairs)")
    print(f"distinct pairs: min {min(dist)}, 1st percentile {np.percentile(dist, 1):.0f}, median {np.median(dist):.0f}")
    print("  bits:count", hist(dist))
    moved: dict[str, list[int]] = {}
    for n in by_sha.values():
        for name, data in copies(images.decode(n.data)).items():
            moved.setdefault(name, []).append(images.hamming(n.phash, images.normalise(data, 2048).phash))
    print("copy of an image vs its original:")
    for name, v in moved.items():
        print(f"  {name:14s} max {max(v):2d} mean {np.mean(v):5.2f}  bits:count {hist(v)}")


def demo_images(per_family: int) -> None:
    print(f"\n== demo images: {per_family} train x {per_family} test per family (mmfr.demo.synth, max_side 512)")
    print("distinct train/test pairs within d bits (hash alone | same answer and options too), "
          "d = " + ",".join(map(str, DS)))
    for family in synth.FAMILIES:
        side = {}
        for split in ("train", "test"):
            recs = synth.generate(family, split, per_family, seed_for(1234, "synth", family))
            ph = np.array([int(images.normalise(r["image"], 512).phash, 16) for r in recs], np.uint64)
            labels = np.array([f"{r['answer']}|{'|'.join(r['choices'])}" for r in recs])
            side[split] = (ph, labels)
        d = np.bitwise_count(side["train"][0][:, None] ^ side["test"][0][None, :])
        same = side["train"][1][:, None] == side["test"][1][None, :]
        alone = [int((d <= k).sum()) for k in DS]
        label = [int(((d <= k) & same).sum()) for k in DS]
        share0 = (d == 0).any(axis=0).mean()
        print(f"  {family:9s} {alone} | {label}   test images with a train image at 0 bits: {share0:.1%}")
        moved: dict[str, list[int]] = {}
        for r in synth.generate(family, "train", 40, seed_for(1, "synth", family)):
            img = images.decode(r["image"])
            for name, data in copies(img).items():
                moved.setdefault(name, []).append(images.hamming(images.perceptual_hash(img),
                                                                 images.normalise(data, 512).phash))
        print(f"  {'':9s} copies of 40 scenes, max bits moved: "
              + ", ".join(f"{name} {max(v)}" for name, v in moved.items()))


def synthetic_table(n: int, n_bench: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """n records with random hashes; 5% are copies of another record (same question and answer,
    hash 0-1 bits off, half of them with the same bytes); the benchmark is n_bench of the records."""
    rng = np.random.default_rng(seed)
    words = np.array("the of a triangle circle find value area angle length point line what is given shown "
                     "figure if then ratio sum".split())
    n_q = n // 2
    pool = np.array([" ".join(rng.choice(words, rng.integers(6, 40))) + f" {i}" for i in range(n_q)], dtype=object)
    q = pool[rng.integers(0, n_q, n)]
    ph = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    ph += rng.integers(0, 2, n).astype(np.uint64)
    ans = rng.integers(0, 20, n).astype(str)
    sha = np.array([f"{i:064x}" for i in range(n)], dtype=object)
    dup = rng.random(n) < 0.05
    src = rng.integers(0, n, n)
    flip = np.where(rng.random(n) < 0.5, np.uint64(1) << rng.integers(0, 64, n).astype(np.uint64), np.uint64(0))
    same_bytes = dup & (flip == 0)
    ph = np.where(dup, ph[src] ^ flip, ph)
    q, ans = np.where(dup, q[src], q), np.where(dup, ans[src], ans)
    sha = np.where(same_bytes, sha[src], sha)
    train = pa.table({
        "source": pa.array(np.array(["s0", "s1", "s2", "s3"])[rng.integers(0, 4, n)]),
        "id": pa.array([f"{i:016x}" for i in range(n)]),
        "original_id": pa.array([str(i) for i in range(n)]),
        "question": pa.array(q.tolist()), "answer": pa.array(ans.tolist()),
        "image_sha256": pa.array(sha.tolist()), "image_phash": pa.array([f"{x:016x}" for x in ph]),
    })
    bench = train.slice(0, n_bench).set_column(0, "source", pa.array(["bench"] * n_bench))
    return train, bench


def speed(rows: int) -> None:
    train, bench = synthetic_table(rows, 20_000)
    t0 = time.perf_counter()
    drops = dedup.find_drops(train, bench, ["s0", "s1", "s2", "s3"], dedup.DedupConfig())
    took = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n== find_drops on {rows:,} synthetic rows (20,000 benchmark rows): {took:.1f} s, peak RSS {rss:.1f} GiB")
    print("  drops:", dict(sorted(Counter(drops.column("reason").to_pylist()).items())))


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", type=Path, default=here.parent / "shared" / "fixtures")
    ap.add_argument("--per-family", type=int, default=300)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.fixtures.is_dir():
        real_images(args.fixtures)
    else:
        print(f"no fixtures at {args.fixtures}: real-image figures skipped")
    if args.per_family:
        demo_images(args.per_family)
    if args.rows:
        speed(args.rows)


if __name__ == "__main__":
    main()
