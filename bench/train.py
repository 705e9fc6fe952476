"""Training on the CPU, measured on the demo's SFT subset (run `make demo` first): padding
efficiency, tokens/s per process (padded and padding-free batches, 1 and 2 processes), checkpoint
save and resume times.

    .venv/bin/python bench/train.py [--subset data/subsets/mfr123k] [--model models/base/tiny] [--steps 12]

- padding efficiency: real tokens / computed tokens (``mmfr.packing.padding_efficiency``) over the
  subset's first 256 rows: batches of ``--batch`` rows padded to their longest row (TRL's vision
  collator); padding-free batches (``padding_free: true``: one row per batch, nothing padded, 1.0
  by construction in the linear layers); rows packed to ``--max-length`` by best fit decreasing
  (how full such rows would be);
- tokens/s per process: the real tokens of ``--steps`` SFT steps (steps x batch x the mean row
  length) over the wall time of the run, padded and padding-free with 1 process, and padded with 2
  processes (gloo) of half as many rows each;
- checkpoint save: the time from a step's end to its checkpoint's seal (model, optimizer,
  scheduler, RNG, state), per checkpoint; resume: the wall time of a run that resumes from the final
  checkpoint with nothing left to train, against one that starts with nothing to train.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmfr import train  # noqa: E402
from mmfr.models import load_processor  # noqa: E402
from mmfr.packing import padding_efficiency  # noqa: E402
from mmfr.prompts import student_messages  # noqa: E402


def lengths(subset: str, model: str, n: int) -> list[int]:
    """Token counts (text and image tokens) of the first ``n`` rows, as the trainer sees them."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    processor = load_processor(model)
    rows = pq.read_table(sorted(glob.glob(f"{subset}/data/*.parquet"))[0],
                         columns=["question", "choices", "image", "response"]).slice(0, n).to_pylist()
    out = []
    for r in rows:
        messages = student_messages(r["question"], r["choices"]) + [
            {"role": "assistant", "content": [{"type": "text", "text": r["response"]}]}]
        text = processor.apply_chat_template(messages, tokenize=False)
        image = Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB")
        out.append(len(processor(text=[text], images=[image])["input_ids"][0]))
    return out


def timed_sft(model: str, subset: str, out: str, cfg: dict, processes: int = 1) -> tuple[dict, float]:
    start = time.perf_counter()
    metrics = train.run("sft", model, train.subset_files(subset), out, cfg, 0, processes=processes)
    return metrics, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--subset", default="data/subsets/mfr123k")
    p.add_argument("--model", default="models/base/tiny")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    a = p.parse_args()
    lens = lengths(a.subset, a.model, 256)
    padded = padding_efficiency(lens, a.batch, a.max_length, packed=False)
    binned = padding_efficiency(lens, a.batch, a.max_length, packed=True)
    print(f"padding efficiency (256 rows, batches of {a.batch}): {padded:.3f} padded to the longest row; "
          f"1.000 padding-free; {binned:.3f} in rows packed to {a.max_length}; mean row {sum(lens) / len(lens):.0f} "
          f"tokens")
    base = {"max_steps": a.steps, "logging_steps": 1, "learning_rate": 1e-3, "activation_checkpointing": False,
            "max_length": a.max_length}
    tokens = a.steps * a.batch * sum(lens) / len(lens)
    with tempfile.TemporaryDirectory() as tmp:
        rates = {}
        for processes, free in ((1, False), (1, True), (2, False)):
            cfg = {**base, "per_device_train_batch_size": a.batch // processes, "padding_free": free}
            _, seconds = timed_sft(a.model, a.subset, f"{tmp}/p{processes}{free}", cfg, processes)
            rates[processes, free] = tokens / seconds / processes
            print(f"{processes} process(es), {'padding-free' if free else 'padded'}: {rates[processes, free]:,.0f} "
                  f"real tokens/s per process ({tokens:,.0f} tokens in {seconds:.1f} s, with loading)")
        print(f"padding-free / padded, 1 process: {rates[1, True] / rates[1, False]:.2f}x")
        saves = []
        seal = train.mark_complete

        def timed_seal(folder, step):
            seal(folder, step)
            saves.append(time.perf_counter())

        ends = []
        run = train._train

        def watched(trainer, out_dir):
            from transformers import TrainerCallback

            class End(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    ends.append(time.perf_counter())

            trainer.add_callback(End())
            return run(trainer, out_dir)

        train.mark_complete, train._train = timed_seal, watched
        cfg = {**base, "per_device_train_batch_size": a.batch, "save_steps": max(1, a.steps // 3)}
        out = f"{tmp}/ckpt"
        os.makedirs(train.checkpoint_dir(out), exist_ok=True)
        train.run("sft", a.model, train.subset_files(a.subset), out, {**cfg, "save_total_limit": 10}, 0)
        paired = [s - max(e for e in ends if e <= s) for s in saves]
        print(f"checkpoint save: {sum(paired) / len(paired):.2f} s per checkpoint ({len(paired)} saved)")
    with tempfile.TemporaryDirectory() as tmp:
        train.mark_complete, train._train = seal, run
        cfg = {**base, "per_device_train_batch_size": a.batch, "save_steps": a.steps}
        out = f"{tmp}/r"
        keep = train.shutil.rmtree
        train.shutil.rmtree = lambda *args, **kw: None  # keep the final checkpoint to resume from
        train.run("sft", a.model, train.subset_files(a.subset), out, cfg, 0)
        train.shutil.rmtree = keep
        _, resumed = timed_sft(a.model, a.subset, out, cfg)
        plain = {k: v for k, v in cfg.items() if k != "save_steps"}
        _, fresh = timed_sft(a.model, a.subset, f"{tmp}/fresh", {**plain, "max_steps": 1})
        print(f"resume from the final checkpoint with nothing left to train: {resumed:.1f} s; "
              f"a fresh run of one step: {fresh:.1f} s")
        print(json.dumps({"resumed_from": json.load(open(f"{out}/metrics.json"))["resumed_from"] is not None}))


if __name__ == "__main__":
    main()
