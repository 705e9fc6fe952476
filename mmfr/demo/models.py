"""The demo's students: a tiny Qwen3-VL built from an architecture config with random weights, with
a tokenizer trained on demo text, then warmed up into a small 'instruct' base."""

from __future__ import annotations

import random
import shutil

from mmfr import prompts, schema
from mmfr.demo import synth
from mmfr.demo.teacher import caption, trace
from mmfr.models import build_tiny_model
from mmfr.train import sft


def build_base(spec: dict, out_dir: str, seed: int) -> None:
    """A ``students`` entry with ``build:`` (and optionally ``warmup:``) made into ``out_dir``."""

    if not spec.get("warmup"):
        build_tiny_model(out_dir, spec["build"], demo_corpus(seed), seed)
        return
    init = out_dir.rstrip("/") + ".init"
    build_tiny_model(init, spec["build"], demo_corpus(seed), seed)
    warm_up(init, out_dir, spec["warmup"], seed)
    shutil.rmtree(init)


def demo_corpus(seed: int, per_family: int = 60) -> list[str]:
    """Text the demo student's tokenizer is trained on: prompts, synthetic questions and
    teacher-style traces (its 'pretraining' text; independent of the pipeline's data)."""

    texts = [prompts.load(name)[0] for name in ("student", "trace", "caption", "judge")]
    for family in synth.FAMILIES:
        for rec in synth.generate(family, "train", per_family, seed):
            ctx = {"metadata": rec["metadata"], "answer": rec["answer"], "answer_type": rec["answer_type"],
                   "choices": rec["choices"]}
            texts += [prompts.question_text(rec["question"], rec["choices"]), caption(rec["metadata"]),
                      trace(ctx, random.Random(0), {})]
    return texts


def warm_up(init_dir: str, out_dir: str, cfg: dict, seed: int) -> None:
    """Turn the random-weight model into a small 'instruct' base: a short SFT on synthetic questions
    with brief answers, drawn from seeds the pipeline never uses (``warmup`` stage) and never from
    the held-out split. Without it every pass rate of the demo's proxy would be 0."""
    import tempfile

    import pyarrow as pa

    rows = []
    for family in synth.FAMILIES:
        for rec in synth.generate(family, "train", cfg["n_per_family"], schema.seed_for(seed, "warmup", family)):
            sol = synth.solution(rec["metadata"])
            response = f"<think>\n{' '.join(sol['steps'])}\n</think>\n<answer>{rec['answer']}</answer>"
            rows.append({"question": rec["question"], "choices": rec["choices"],
                         "image": {"bytes": rec["image"], "path": None}, "response": response})
    train_cfg = {k: v for k, v in cfg.items() if k != "n_per_family"}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/warmup.parquet"
        fields = [("question", pa.string()), ("choices", pa.list_(pa.string())), ("image", schema.IMAGE_TYPE),
                  ("response", pa.string())]
        table = pa.Table.from_pylist(rows, schema=pa.schema(fields, metadata=schema.hf_features_metadata(fields)))
        schema.write_table(table, path)
        sft(init_dir, [path], out_dir, train_cfg, seed)
