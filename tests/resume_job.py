"""A generation job that tests/test_resume.py kills with SIGKILL and then resumes.

It runs ``mmfr.annotate.trace_shard`` (or ``caption_shard``) on one shard of canonical records
with the scripted teacher, journaling into ``--journal``, and writes ``--out``. The teacher is
slowed down by ``--latency`` seconds per request so that a kill lands in the middle of the work.

When the environment variable ``MMFR_SCRIPTED_LOG`` names a file, one line with the request key
is appended to it (and flushed to the OS) for every response the backend *generates*, just before
the response is handed to the journal. A request whose line is in the log but not in the journal
was generated and then lost to a kill; a key on two lines was generated twice.

    python tests/resume_job.py SHARD OUT --journal J [--task trace] [--n-samples 2] [--latency 0.005]
"""

from __future__ import annotations

import argparse
import os
import sys

from mmfr.annotate import caption_shard, trace_shard
from mmfr.demo.teacher import ScriptedBackend

MODEL = {"backend": "scripted", "model": "mmfr-scripted-teacher", "revision": "v1"}


def log_generations(path: str) -> None:
    """Wrap the scripted backend so that every generated response is logged before it is yielded."""
    log = open(path, "a", encoding="ascii")  # kept open for the life of the process
    generate = ScriptedBackend.generate

    def logged(self, requests, keys):
        for response in generate(self, requests, keys):
            log.write(response.key + "\n")
            log.flush()  # in the OS's hands now: survives a SIGKILL of this process
            yield response

    ScriptedBackend.generate = logged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shard")
    ap.add_argument("out")
    ap.add_argument("--journal", required=True)
    ap.add_argument("--task", choices=("trace", "caption"), default="trace")
    ap.add_argument("--n-samples", type=int, default=2)
    ap.add_argument("--latency", type=float, default=0.005, help="seconds per generated request")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if os.environ.get("MMFR_SCRIPTED_LOG"):
        log_generations(os.environ["MMFR_SCRIPTED_LOG"])
    model = {**MODEL, "latency_s": args.latency}
    if args.task == "trace":
        n = trace_shard(args.shard, args.out, model, args.n_samples, args.seed, args.journal)
    else:
        n = caption_shard(args.shard, args.out, model, args.seed, args.journal)
    print(f"wrote {n} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
