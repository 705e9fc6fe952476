"""Cost of the verify stage on one shard: today's repetition check and token counting against the
ones before them (kept below as private reference functions), alone and in the whole verify path.

Builds a shard of ``--samples`` synthetic traces of about ``--words`` words each (prose, numbers and
LaTeX in a Zipf-like mix; 1% caught in a repetition loop; choice, number, expression and text
answers; deterministic by ``--seed``) with its records and captions, then measures in paired runs,
old and new in turn:

  repetition  the 50-gram check over every CoT, in this process
  tokens      counting the tokens of every CoT and caption, a fresh process each (the tokenizer's
              thread pool is sized once per process): wall and CPU time, peak RSS, RSS before counting,
              and the threads the counting started (the tokenizer's pool)
  verify      verify_shard, the whole path: rule checks and token counts, a fresh process each

and prints milliseconds per sample (best of ``--rounds``, the order of old and new alternating from
round to round), peak memory and the ratios new/old. The answer comparisons are today's in both
(their time bound costs nothing until it is hit). The results of old and new must agree (flags,
counts, the verified shard's bytes). The tokenizer is the demo's
(``models/tokenizer/tokenizer.json``, built like rule build_tokenizer where it is missing).

    .venv/bin/python bench/verify.py --samples 10000 --words 2200 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mmfr import models, verify  # noqa: E402
from mmfr.answers import has_repeated_ngram, split_response  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROSE = ("the of and to a in is that it for we so this be with as on are by at from or which can then let us "
         "now need find first next since because if not all each there have but would total value same both other "
         "two three four more than less given number side angle area length point line circle triangle square sum "
         "product equation solve check compute answer image figure shows see look count red blue green left right "
         "top bottom wait hmm actually step means gives equals therefore thus however option correct bar chart "
         "graph axis scale shaded region radius diameter parallel perpendicular segment height width volume "
         "probability ratio percent rate speed time distance price cost each remaining").split()
MATH = ["x", "y", "=", "+", "-", "\\times", "\\frac{1}{2}", "\\sqrt{3}", "x^2", "(x+1)", "\\pi", "\\angle ABC",
        "$", "\\cdot", "\\le", "AB", "CD", "\\triangle", "2r", "\\theta", "f(x)", "\\dfrac{a}{b}", "90^\\circ"]
ANSWERS = {  # (gold, what the trace answers) by type
    "number": [("12", "12"), ("3.5", "3.50"), ("1,000", "1000"), ("45", "44"), ("0.25", "25%")],
    "expression": [("x^2+1", "1+x^2"), (r"5\sqrt{2}", r"\sqrt{50}"), (r"\frac{3}{4}", "0.75"), (r"2\pi", r"3\pi")],
    "text": [("Eiffel Tower", "the eiffel tower"), ("blue", "red")],
}


# ------------------------------------------------------------------ the implementations before

_HASH_MOD = (1 << 61) - 1
_HASH_BASE = 1_000_003


def _old_has_repeated_ngram(words: list[str], n: int, max_repeats: int) -> bool:
    """The repetition check before: a pure-Python rolling hash modulo 2**61-1, unconfirmed."""
    if n <= 0 or len(words) < n + max_repeats - 1:
        return False
    vocab: dict[str, int] = {}
    ids = [vocab.setdefault(w, len(vocab) + 1) for w in words]
    drop = pow(_HASH_BASE, n, _HASH_MOD)
    counts: dict[int, int] = {}
    h = 0
    for i, x in enumerate(ids):
        h = (h * _HASH_BASE + x - (ids[i - n] * drop if i >= n else 0)) % _HASH_MOD
        if i >= n - 1:
            counts[h] = c = counts.get(h, 0) + 1
            if c >= max_repeats:
                return True
    return False


def _old_count_tokens(tokenizer_json: str, texts: list[str], threads: int | None = None) -> list[int]:
    """Token counting before: one encode_batch over every text (with offsets), on all cores."""
    path = os.path.abspath(tokenizer_json)
    encodings = models._tokenizer_file(path, os.stat(path).st_mtime_ns).encode_batch(list(texts),
                                                                                     add_special_tokens=False)
    return [len(e.ids) for e in encodings]


# ------------------------------------------------------------------ the shard

def cot(rng: random.Random, n_words: int, weights: list[float]) -> str:
    """Prose with numbers and LaTeX mixed in, paragraphs of about 40 words."""
    out = []
    for i, w in enumerate(rng.choices(PROSE, weights, k=n_words)):
        r = rng.random()
        w = (rng.choice(MATH) if r < 0.08 else str(rng.randrange(1000)) if r < 0.14
             else f"{rng.randrange(100)}.{rng.randrange(100)}" if r < 0.16 else w)
        out.append(w + ("." if rng.random() < 0.06 else "," if rng.random() < 0.05 else ""))
        if i % 40 == 39:
            out.append("\n\n")
    return " ".join(out)


def make_shard(root: str, samples: int, words: int, seed: int) -> dict:
    """records, traces and captions of one shard under ``root``; returns how many loop."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(PROSE))]  # Zipf-like
    records, traces, captions, loops = [], [], [], 0
    for i in range(samples):
        sid = f"s{i:06d}"
        kind = rng.choices(["choice", "number", "expression", "text"], [40, 35, 20, 5])[0]
        if kind == "choice":
            gold, said, choices = rng.choice("ABCD"), rng.choice("ABCDA"), [f"{k} cm" for k in range(4)]
        else:
            (gold, said), choices = rng.choice(ANSWERS[kind]), []
        think = cot(rng, rng.randint(int(words * 0.8), int(words * 1.2)), weights)
        if rng.random() < 0.01:  # a loop: one passage said over and over
            loops += 1
            parts = think.split(" ")
            start = rng.randrange(len(parts) - 80)
            think = " ".join(parts[:start] + parts[start:start + 60] * 4 + parts[start:])
        finish = "length" if rng.random() < 0.01 else "stop"
        records.append({"id": sid, "question": "What is shown?", "answer": gold, "answer_type": kind,
                        "choices": choices})
        traces.append({"id": sid, "source": "bench", "sample_index": 0, "finish_reason": finish, "error": None,
                       "response": f"<think>\n{think}\n</think>\n<answer>{said}</answer>"})
        captions.append({"id": sid, "caption": cot(rng, 120, weights)})
    for name, rows in (("records", records), ("traces", traces), ("captions", captions)):
        pq.write_table(pa.Table.from_pylist(rows), os.path.join(root, f"{name}.parquet"))
    return {"loops": loops}


def thinks_of(root: str) -> list[str]:
    return [split_response(r)[0] or "" for r in pq.read_table(os.path.join(root, "traces.parquet"),
                                                               columns=["response"]).column("response").to_pylist()]


# ------------------------------------------------------------------ measurements

def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def child(kind: str, impl: str, root: str, tokenizer: str, threads: int) -> dict:
    """One measurement in this (fresh) process."""
    if impl == "old":
        verify.has_repeated_ngram, verify.count_tokens = _old_has_repeated_ngram, _old_count_tokens
        verify.limit_tokenizer_threads = lambda threads: None
    out = {}
    if kind == "tokens":
        texts = thinks_of(root) + pq.read_table(os.path.join(root, "captions.parquet")).column("caption").to_pylist()
        models._tokenizer_file(os.path.abspath(tokenizer), os.stat(tokenizer).st_mtime_ns)  # parsed outside the time
        out["rss_before_mib"], before = rss_mib(), len(os.listdir("/proc/self/task"))
        start, cpu = time.perf_counter(), time.process_time()
        counts = verify.count_tokens(tokenizer, texts, threads if impl == "new" else None)
        out["pool"] = len(os.listdir("/proc/self/task")) - before
        out["checksum"] = hashlib.sha256(json.dumps(counts).encode()).hexdigest()[:16]
    else:
        out["rss_before_mib"] = rss_mib()
        start, cpu = time.perf_counter(), time.process_time()
        target = os.path.join(root, f"verified.{impl}.parquet")
        out["counts"] = verify.verify_shard(*(os.path.join(root, f"{n}.parquet") for n in ("records", "traces",
                                                                                             "captions")),
                                            tokenizer, target, {}, threads=threads if impl == "new" else None)
        with open(target, "rb") as f:
            out["checksum"] = hashlib.sha256(f.read()).hexdigest()[:16]
    out.update(wall_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu,
               peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def in_child(kind: str, impl: str, root: str, tokenizer: str, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", kind, impl, root,
                           "--tokenizer", tokenizer, "--threads", str(threads)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def repetition(root: str, rounds: int) -> dict:
    """Seconds of each implementation over every CoT (best of ``rounds``, in turn), and the flags."""
    best, flags = {"old": float("inf"), "new": float("inf")}, {}
    impls = {"old": _old_has_repeated_ngram, "new": has_repeated_ngram}
    thinks = thinks_of(root)
    for r in range(rounds):
        for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
            check, spent, found = impls[name], 0.0, []
            for text in thinks:
                words = text.split()
                start = time.perf_counter()
                found.append(check(words, 50, 3))
                spent += time.perf_counter() - start
            best[name], flags[name] = min(best[name], spent), found
    assert flags["old"] == flags["new"], "old and new repetition checks disagree"
    return {"seconds": best, "flagged": sum(flags["new"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--words", type=int, default=2_200, help="CoT words per trace, on average")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds; the best time counts")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="the job's threads, for the new token counting (the old one takes every core)")
    parser.add_argument("--tokenizer", default=os.path.join(REPO, "models", "tokenizer", "tokenizer.json"))
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "IMPL", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.tokenizer, args.threads)))
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        if not os.path.exists(args.tokenizer):
            args.tokenizer = os.path.join(tmp, "tokenizer", "tokenizer.json")
            models.build_qwen_tokenizer(os.path.dirname(args.tokenizer))
        t = time.perf_counter()
        shard = make_shard(tmp, args.samples, args.words, args.seed)
        print(f"built {args.samples:,} traces of ~{args.words:,} words ({shard['loops']} looping, "
              f"{os.path.getsize(os.path.join(tmp, 'traces.parquet')) / 2**20:.0f} MiB on disk) in "
              f"{time.perf_counter() - t:.0f} s; tokenizer {args.tokenizer}; new threads {args.threads}")
        rep = repetition(tmp, args.rounds)
        runs = {kind: {} for kind in ("tokens", "verify")}
        for r in range(args.rounds):
            for kind, pair in runs.items():
                for impl in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    got = in_child(kind, impl, tmp, args.tokenizer, args.threads)
                    best = pair.setdefault(impl, got)
                    assert got["checksum"] == best["checksum"] == pair.get("old", got)["checksum"], \
                        f"{kind}: old and new results differ"
                    best.update({k: min(best[k], got[k]) for k in ("wall_s", "cpu_s")})
        n = args.samples
        print(f"repetition flagged {rep['flagged']}; verify counts {runs['verify']['new']['counts']}")
        print(f"\n{'measure (per sample unless MiB)':40s} {'old':>10s} {'new':>10s} {'new/old':>8s}")

        def row(name: str, old: float, new: float) -> None:
            print(f"{name:40s} {old:10.3f} {new:10.3f} {new / old:8.2f}")

        row("repetition check, ms", rep["seconds"]["old"] / n * 1e3, rep["seconds"]["new"] / n * 1e3)
        row("token counting, threads of its pool", runs["tokens"]["old"]["pool"], runs["tokens"]["new"]["pool"])
        for kind, label in (("tokens", "token counting"), ("verify", "verify_shard")):
            old, new = runs[kind]["old"], runs[kind]["new"]
            row(f"{label}, wall ms", old["wall_s"] / n * 1e3, new["wall_s"] / n * 1e3)
            row(f"{label}, CPU ms", old["cpu_s"] / n * 1e3, new["cpu_s"] / n * 1e3)
            row(f"{label}, peak RSS MiB", old["peak_mib"], new["peak_mib"])
            row(f"{label}, peak RSS above start MiB", old["peak_mib"] - old["rss_before_mib"],
                new["peak_mib"] - new["rss_before_mib"])


if __name__ == "__main__":
    main()
