"""Throughput of the sources stage: standardise + dedup, against a plain pyarrow read and write.

Builds a synthetic source of ``--rows`` records whose images are real-sized JPEGs (a pool of
``--pool`` distinct 768x576 pictures, each record with its own question; 1% exact copies so dedup
has work), then times, on one core:

  baseline     pyarrow: read the raw parquet in batches, write it back into ``--shards`` shards
  standardise  mmfr.sources.standardise: adapter, checks, safe decode, RGB, cap, sha256, phash, shards
  dedup        mmfr.dedup.dedup over the standardised shards (no benchmark)

and prints rows per second per core for each, and the ratio to the baseline. With ``--threads N``
(N > 1) standardise runs again with N worker processes: it checks that the shards are the same
bytes, and splits the CPU time between the main process (reading order, ids, shard writing: the
part that does not spread) and the workers, which gives the wall time on a node of ``--cores``
cores: max(main, all / cores) (Amdahl, from measured CPU seconds).

    .venv/bin/python bench/standardise.py --rows 100000 [--threads 2 --cores 64]
"""

from __future__ import annotations

import argparse
import filecmp
import io
import resource
import os
import random
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy/scipy (phash) must not fan out

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mmfr import dedup, schema, sources  # noqa: E402
from mmfr.schema import RAW  # noqa: E402
from mmfr.sources import ImagePolicy  # noqa: E402


def picture(rng: random.Random, size=(768, 576)) -> Image.Image:
    """A photo-like picture: a gradient, shapes, noise and blur, so the encoded size is realistic."""
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(20, 160)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    noise = Image.effect_noise(size, 40).convert("RGB")
    return Image.blend(img, noise, 0.25).filter(ImageFilter.GaussianBlur(1))


def unique_jpeg(base: Image.Image, i: int) -> bytes:
    """Every row gets its own image (a stamped copy of a base picture): real sources do not repeat
    one image, and parquet would dictionary-encode repeats into nothing."""
    img = base.copy()
    ImageDraw.Draw(img).text((10 + i % 500, 10 + i % 400), f"#{i}", fill=(255, 255, 0))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def make_raw(path: str, rows: int, pool: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    pictures = [picture(rng) for _ in range(pool)]
    writer = pq.ParquetWriter(path, RAW, compression="zstd")
    batch, size, image = [], 0, b""
    for i in range(rows):
        copy = i % 100 == 99  # 1% exact copies of the previous record
        j = i - 1 if copy else i
        image = image if copy else unique_jpeg(pictures[i % pool], i)
        batch.append({"original_id": str(i), "question": f"How many shapes are in picture {j}? Count carefully.",
                      "answer": str(j % 13), "solution": None, "answer_type": "number", "choices": [],
                      "images": [image], "metadata": "{}", "domain": "math", "origin": None})
        size += len(image)
        if len(batch) == 512:
            writer.write_table(pa.Table.from_pylist(batch, schema=RAW))
            batch = []
    if batch:
        writer.write_table(pa.Table.from_pylist(batch, schema=RAW))
    writer.close()
    return size


def baseline(raw: str, shard_paths: list[str]) -> None:
    writers = [pq.ParquetWriter(p, RAW, compression="zstd", compression_level=3) for p in shard_paths]
    for i, batch in enumerate(pq.ParquetFile(raw).iter_batches(batch_size=256)):
        writers[i % len(writers)].write_table(pa.Table.from_batches([batch]))
    for w in writers:
        w.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pool", type=int, default=2_000, help="distinct pictures")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=1, help="also run standardise with this many workers")
    parser.add_argument("--cores", type=int, default=64, help="the node the wall time is extrapolated to")
    args = parser.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        raw = os.path.join(tmp, "raw.parquet")
        t = time.perf_counter()
        image_bytes = make_raw(raw, args.rows, args.pool)
        print(f"built {args.rows:,} rows ({image_bytes / args.rows / 1024:.0f} KiB of JPEG per row, "
              f"{os.path.getsize(raw) / 2**30:.2f} GiB on disk) in {time.perf_counter() - t:.0f} s")

        def shard_paths(stage: str) -> list[str]:
            os.makedirs(os.path.join(tmp, stage), exist_ok=True)
            return [os.path.join(tmp, stage, f"{schema.shard_name(i)}.parquet") for i in range(args.shards)]

        timings = {}
        t = time.perf_counter()
        baseline(raw, shard_paths("baseline"))
        timings["baseline (pyarrow read+write)"] = time.perf_counter() - t
        t = time.perf_counter()
        std = shard_paths("std")
        counts = sources.standardise(raw, {"name": "bench", "adapter": "raw"}, std, os.path.join(tmp, "dropped.parquet"),
                                     None, ImagePolicy())
        timings["standardise"] = time.perf_counter() - t
        t = time.perf_counter()
        found = dedup.dedup(std, [], ["bench"], dedup.DedupConfig(), os.path.join(tmp, "drops.parquet"),
                            os.path.join(tmp, "report.tsv"))
        timings["dedup"] = time.perf_counter() - t
        timings["standardise + dedup"] = timings["standardise"] + timings["dedup"]
        print(f"standardise kept {counts['kept']:,}, dropped {counts['dropped']}; dedup found {found}")
        base = timings["baseline (pyarrow read+write)"]
        print(f"\n{'step':32s} {'seconds':>8s} {'rows/s/core':>12s} {'x baseline time':>16s}")
        for name, seconds in timings.items():
            print(f"{name:32s} {seconds:8.1f} {args.rows / seconds:12,.0f} {seconds / base:16.1f}")
        if args.threads > 1:
            parallel(args, raw, std, shard_paths("std_parallel"), tmp)


def cpu(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def parallel(args, raw: str, serial: list[str], shards: list[str], tmp: str) -> None:
    thread0, proc0, workers0 = time.thread_time(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    sources.standardise(raw, {"name": "bench", "adapter": "raw"}, shards, os.path.join(tmp, "dropped2.parquet"),
                        None, ImagePolicy(), threads=args.threads)
    wall = time.perf_counter() - t
    main = time.thread_time() - thread0  # the one thread that does not spread: order, ids, rows to shards
    writers = cpu(resource.RUSAGE_SELF) - proc0 - main  # row groups encoded and compressed, by shard
    workers = cpu(resource.RUSAGE_CHILDREN) - workers0  # read, adapt, decode, hash, re-encode
    same = all(filecmp.cmp(a, b, shallow=False) for a, b in zip(serial, shards))
    total = main + writers + workers
    node = max(main, total / args.cores)
    print(f"\nstandardise with {args.threads} workers: {wall:.1f} s wall, {args.rows / wall:,.0f} rows/s; CPU: main "
          f"thread {main:.1f} s ({main / total:.0%}), writer threads {writers:.1f} s, workers {workers:.1f} s; "
          f"shards byte-identical to one process: {same}")
    print(f"on {args.cores} cores: about {node:.1f} s for these {args.rows:,} rows, {args.rows / node:,.0f} rows/s "
          f"({args.rows / node / args.cores:,.0f} rows/s/core); MMR1's 1.6M rows in about "
          f"{1.6e6 / (args.rows / node) / 60:.1f} min (one process: {1.6e6 / (args.rows / total) / 3600:.2f} h)")


if __name__ == "__main__":
    main()
