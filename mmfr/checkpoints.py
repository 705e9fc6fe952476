"""Base checkpoints and tokenizers: download a pinned hub model (or copy a local mirror), or build
the demo's tiny Qwen3-VL from an architecture config with random weights."""

from __future__ import annotations

import logging
import os
import random
import shutil

log = logging.getLogger(__name__)


def demo_corpus(seed: int, per_family: int = 60) -> list[str]:
    """Text the demo student's tokenizer is trained on: prompts, synthetic questions and
    teacher-style traces (its 'pretraining' text; independent of the pipeline's data)."""
    from mmfr import prompts, synth
    from mmfr.generate.scripted import caption, trace

    texts = [prompts.load(name)[0] for name in ("student", "trace", "caption", "judge")]
    for family in synth.FAMILIES:
        for rec in synth.generate(family, "train", per_family, seed):
            ctx = {"metadata": rec["metadata"], "answer": rec["answer"], "answer_type": rec["answer_type"],
                   "choices": rec["choices"]}
            texts += [prompts.question_text(rec["question"], rec["choices"]), caption(rec["metadata"]),
                      trace(ctx, random.Random(0), {})]
    return texts


def prepare_base(spec: dict, out_dir: str, seed: int) -> None:
    """``spec`` is a ``students`` entry: ``{size, build: {...}}`` or ``{size, model, revision}``."""
    if "build" in spec:
        from mmfr.models import build_tiny_model

        if not spec.get("warmup"):
            build_tiny_model(out_dir, spec["build"], demo_corpus(seed), seed)
            return
        init = out_dir.rstrip("/") + ".init"
        build_tiny_model(init, spec["build"], demo_corpus(seed), seed)
        warm_up(init, out_dir, spec["warmup"], seed)
        shutil.rmtree(init)
        return
    fetch_model(spec["model"], spec.get("revision"), out_dir, key=f"students[size={spec['size']}].model")


def warm_up(init_dir: str, out_dir: str, cfg: dict, seed: int) -> None:
    """Turn the random-weight model into a small 'instruct' base: a short SFT on synthetic questions
    with brief answers, drawn from seeds the pipeline never uses (``warmup`` stage) and never from
    the held-out split. Without it every pass rate of the demo's proxy would be 0."""
    import tempfile

    import pyarrow as pa

    from mmfr import schema, synth
    from mmfr.train import sft

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


def fetch_model(model: str, revision: str | None, out_dir: str, key: str | None = None) -> None:
    """A local directory is copied; anything else is a hub id downloaded at ``revision``. A local
    path that does not exist is an error naming ``key``, where the config gives it."""
    from mmfr.models import require_model

    require_model(model, key)
    if os.path.isdir(model):
        shutil.copytree(model, out_dir)
        return
    from huggingface_hub import snapshot_download

    if not revision:
        log.warning("%s: no pinned revision, downloading the current main", model)
    snapshot_download(repo_id=model, revision=revision, local_dir=out_dir)


def prepare_tokenizer(spec: dict, out_json: str) -> None:
    """The teacher's tokenizer as a ``tokenizer.json``, for token statistics. The other files a
    tokenizer saves are left out: ``out_json`` is the rule's one output."""
    import shutil
    import tempfile

    os.makedirs(os.path.dirname(out_json) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out_json) or ".") as out_dir:
        if spec["kind"] == "qwen-tokenizer":
            from mmfr.models import build_qwen_tokenizer

            build_qwen_tokenizer(out_dir)
        else:
            from transformers import AutoTokenizer

            from mmfr.models import require_model

            require_model(spec["model"], "tokenizer.model")
            AutoTokenizer.from_pretrained(spec["model"], revision=spec.get("revision")).save_pretrained(out_dir)
        written = os.path.join(out_dir, "tokenizer.json")
        if not os.path.exists(written):
            raise FileNotFoundError(f"tokenizer.{spec['kind']}: no tokenizer.json was written")
        shutil.move(written, out_json)
