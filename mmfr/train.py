"""Student training with TRL: SFT on teacher traces, then GSPO with verifiable rewards, or DPO on
pairs of a correct and a wrong trace of one question (``mmfr.pairs``).

The stages read parquet shards of canonical records (``mmfr.schema``), build conversational rows
with the student prompt (``mmfr.prompts.student_messages``) and keep each record's image column as
is (TRL's vision collator turns ``image`` into ``images`` and the processor converts to RGB), so
no image is decoded or re-encoded while preparing the dataset. Outputs are a model directory that
``mmfr.models.load_model``/``load_processor`` read, plus ``metrics.json`` with the training log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time

from mmfr.models import load_model, load_processor
from mmfr.provenance import checkpoint_dir
from mmfr.prompts import student_messages
from mmfr.rewards import accuracy_reward, format_reward, reward_weights

# Training settings are TRL's own: ``train.sft`` keys are fields of ``trl.SFTConfig``, ``train.gspo``
# keys fields of ``trl.GRPOConfig``, ``train.dpo`` keys fields of ``trl.DPOConfig``, with TRL's defaults (the recipe's values are in config.yaml).
# Beside them, the few settings mmfr itself applies, and those a job or the recipe's method fixes.
OWN = {"freeze_vision": True, "max_pixels": None, "min_pixels": None,  # vision tower frozen; image bounds
       "attn_implementation": None}  # the model's attention kernel (None: its default, sdpa)
CONFIG_CLASSES = {"sft": "SFTConfig", "gspo": "GRPOConfig", "dpo": "DPOConfig"}
_JOB = {"output_dir", "seed", "data_seed", "save_strategy", "save_only_model", "overwrite_output_dir",
        "resume_from_checkpoint", "report_to", "dataloader_num_workers", "use_cpu", "bf16", "fp16"}
FIXED = {  # set by mmfr for every run: a config key naming one of these is an error
    "sft": _JOB | {"assistant_only_loss"},
    "gspo": _JOB | {"importance_sampling_level", "loss_type", "reward_weights", "log_completions"},
    "dpo": _JOB,
}
# TRL fields that TRL refuses for image datasets, with what to use instead
REFUSED = {"sft": {"packing": "TRL cannot pack image datasets; padding_free: true puts each batch in one row "
                              "with no padding and per-example positions (mmfr.packing)"}}
COMPLETE = "mmfr-complete.json"  # written into a checkpoint once everything of it is on disk


class SettingsError(ValueError):
    """A training setting that TRL's config class does not have, or that mmfr sets itself."""


def trl_fields(stage: str) -> set[str]:
    """The fields of the stage's TRL config class. Importing TRL takes seconds and the Snakefile checks
    the settings at every parse, so the names are kept per TRL version in the user's cache."""
    import dataclasses
    from importlib.metadata import version

    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mmfr",
                         f"trl-{version('trl')}-fields.json")
    try:
        with open(cache) as f:
            return set(json.load(f)[CONFIG_CLASSES[stage]])
    except (OSError, ValueError, KeyError):
        pass
    import trl

    fields = {name: sorted(f.name for f in dataclasses.fields(getattr(trl, name)) if f.init)
              for name in CONFIG_CLASSES.values()}
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache + f".{os.getpid()}", "w") as f:
            json.dump(fields, f)
        os.replace(cache + f".{os.getpid()}", cache)
    except OSError:  # a read-only home: no cache, the same answer
        pass
    return set(fields[CONFIG_CLASSES[stage]])


def check_settings(stage: str, cfg: dict, where: str | None = None, values: bool = True) -> None:
    """Every key of ``cfg`` a field of the stage's TRL config class (or one of ``OWN``), none of the
    ``FIXED`` ones, and (``values``) the values accepted by the class itself: a misspelt key is named
    with the closest valid ones. The Snakefile checks the keys before any job; the training job
    checks the values too, and that what needs a GPU (vLLM rollouts, flash attention) has one and
    its package, before it loads anything."""
    import difflib
    import tempfile

    where = where or f"train.{stage}"
    fields = trl_fields(stage)
    for key in cfg:
        if key in FIXED[stage]:
            raise SettingsError(f"{where}.{key}: set by mmfr for every run, not in config")
        if key in REFUSED.get(stage, {}) and cfg[key]:
            raise SettingsError(f"{where}.{key}: {REFUSED[stage][key]}")
        if key not in fields and key not in OWN:
            close = difflib.get_close_matches(key, sorted(fields | set(OWN)), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise SettingsError(f"{where}.{key}: unknown key{hint}: the keys are the fields of "
                                f"trl.{CONFIG_CLASSES[stage]} and {', '.join(sorted(OWN))}")
    if not values:
        return
    _require_attention(cfg.get("attn_implementation"))
    if cfg.get("use_vllm"):
        _require_vllm()
    import trl

    with tempfile.TemporaryDirectory() as tmp:
        try:
            getattr(trl, CONFIG_CLASSES[stage])(output_dir=tmp, use_cpu=True, report_to="none", **_trl_part(cfg))
        except (ValueError, TypeError) as e:
            raise SettingsError(f"{where}: trl.{CONFIG_CLASSES[stage]} refuses the settings: {e}") from e


# --------------------------------------------------------------------------- checkpoints

def _files(folder: str) -> dict[str, int]:
    return {os.path.relpath(os.path.join(d, f), folder): os.path.getsize(os.path.join(d, f))
            for d, _, names in os.walk(folder) for f in names if not f.startswith(COMPLETE)}


def mark_complete(folder: str, step: int) -> None:
    """Seal a checkpoint: its step and every file with its size, written last and atomically."""
    tmp = os.path.join(folder, COMPLETE + ".tmp")
    seal = {"step": step, "files": _files(folder)}
    with open(tmp, "w") as f:
        json.dump(seal, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, COMPLETE))


def newest_complete(folder: str) -> str | None:
    """The newest checkpoint under ``folder`` whose seal lists files that are all there with their
    sizes; a checkpoint a kill cut short (no seal, a file missing or shorter) is passed over."""
    if not os.path.isdir(folder):
        return None
    steps = sorted((int(m[1]), name) for name in os.listdir(folder) if (m := re.fullmatch(r"checkpoint-(\d+)", name)))
    for step, name in reversed(steps):
        path = os.path.join(folder, name)
        try:
            with open(os.path.join(path, COMPLETE)) as f:
                seal = json.load(f)
        except (OSError, ValueError):
            continue
        if seal.get("step") == step and all(
                os.path.isfile(os.path.join(path, p)) and os.path.getsize(os.path.join(path, p)) == n
                for p, n in seal.get("files", {}).items()):
            return path
    return None


def _sealing_callback():
    from transformers import TrainerCallback

    class SealCheckpoint(TrainerCallback):
        """After the trainer has saved a checkpoint (model, optimizer, scheduler, RNG, state), seal it."""

        def on_save(self, args, state, control, **kwargs):
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if state.is_world_process_zero and os.path.isdir(folder):
                mark_complete(folder, state.global_step)

    return SealCheckpoint()


def _checkpointing(cfg: dict, out_dir: str) -> dict:
    """TRL arguments for checkpoints every ``save_steps`` steps (none without it) in the job's
    checkpoint folder."""
    return {"output_dir": checkpoint_dir(out_dir), "save_strategy": "steps" if cfg.get("save_steps") else "no",
            "save_only_model": False}


def _train(trainer, out_dir: str) -> str | None:
    """Train, resuming from the newest complete checkpoint of an earlier run of the same job (a job
    killed at its time limit, then retried); returns the checkpoint it resumed from."""
    os.makedirs(out_dir, exist_ok=True)  # the output is under way (Snakemake's record of a job in flight)
    resume = newest_complete(checkpoint_dir(out_dir))
    if resume:
        logging.getLogger(__name__).info("resuming from %s", resume)
    trainer.add_callback(_sealing_callback())
    trainer.train(resume_from_checkpoint=resume)
    return resume


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH_SETTINGS = ("fsdp_config", "deepspeed")  # files shipped in the repository (envs/fsdp2.json)


def _trl_part(cfg: dict) -> dict:
    """The TRL settings; a relative ``fsdp_config`` or ``deepspeed`` file that is not in the working
    directory is the repository's (``envs/fsdp2.json``), wherever the workflow runs."""
    out = {k: v for k, v in cfg.items() if k not in OWN}
    for key in PATH_SETTINGS:
        path = out.get(key)
        if isinstance(path, str) and not os.path.isabs(path) and not os.path.exists(path) \
                and os.path.exists(os.path.join(REPO, path)):
            out[key] = os.path.join(REPO, path)
    return out


def _own_part(cfg: dict) -> dict:
    return {**OWN, **{k: v for k, v in cfg.items() if k in OWN}}


def _load_rows(paths: list[str], columns: list[str], build, drop: list[str]):
    """The shards' ``columns`` as one ``datasets.Dataset`` (shard order kept), mapped row-wise by
    ``build``, without the ``drop`` columns."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    if not paths:
        raise ValueError("no training shards given")
    for path in paths:
        missing = sorted(set(columns) - set(pq.read_schema(path).names))
        if missing:
            raise ValueError(f"{path} lacks columns {missing}")
    return Dataset.from_parquet(list(paths), columns=columns).map(build, remove_columns=drop)


def _processor(model_dir: str, c: dict):
    """The model's processor, with the image resolution bounds of the training config applied."""

    processor = load_processor(model_dir)
    size = dict(processor.image_processor.size)
    if c["max_pixels"]:
        size["longest_edge"] = c["max_pixels"]
    if c["min_pixels"]:
        size["shortest_edge"] = c["min_pixels"]
    processor.image_processor.size = size
    return processor


def _precision_args() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported()}
    return {"use_cpu": True, "bf16": False}


def _require_vllm() -> None:
    """vLLM rollouts (``train.gspo.use_vllm``) need a GPU and vLLM in the job's environment."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise SettingsError("train.gspo.use_vllm: vLLM rollouts need a GPU and this job sees none; set "
                            "use_vllm: false for transformers generate")
    if importlib.util.find_spec("vllm") is None:
        raise SettingsError("train.gspo.use_vllm: vllm is not installed in this job's environment "
                            "(envs/gspo.yaml; run Snakemake with --software-deployment-method conda)")


def _require_attention(name: str | None) -> None:
    """Flash attention (``attn_implementation: flash_attention_*``) needs a GPU and flash-attn in the
    job's environment; said before the model loads, naming the key."""
    import importlib.util

    import torch

    if not name or not name.startswith("flash"):
        return
    if not torch.cuda.is_available():
        raise SettingsError(f"attn_implementation {name!r} needs a GPU and this job sees none; set it to null or sdpa")
    if importlib.util.find_spec("flash_attn") is None and name == "flash_attention_2":
        raise SettingsError("attn_implementation 'flash_attention_2': flash-attn is not installed in this job's "
                            "environment (pip install flash-attn --no-build-isolation, see envs/train.yaml), or "
                            "set it to sdpa (then keep padding_free rows short: sdpa computes a packed row's full "
                            "square of attention)")


def _freeze_vision(model) -> None:
    """Freeze the vision tower and its merger (the projector): both live under ``model.model.visual``."""
    visual = getattr(getattr(model, "model", None), "visual", None)
    if visual is None:
        raise ValueError(f"freeze_vision: {type(model).__name__} has no .model.visual to freeze")
    visual.requires_grad_(False)


def _student(model_dir: str, c: dict):
    """The processor (with the configured image bounds) and the float32 model, its vision tower frozen
    if so configured."""
    processor = _processor(model_dir, c)
    model = load_model(model_dir, dtype="float32", attn_implementation=c["attn_implementation"])
    if c["freeze_vision"]:
        _freeze_vision(model)
    return processor, model


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _finish(trainer, processor, out_dir: str, stage: str, cfg: dict, seed: int, n_rows: int, seconds: float,
            resumed: str | None = None) -> dict:
    """Save the model and processor to ``out_dir`` with ``metrics.json``; the checkpoints, no longer
    needed, are removed."""
    trainer.save_model(out_dir)
    if not trainer.is_world_process_zero():  # one process of several: the first one writes the rest
        return {}
    processor.save_pretrained(out_dir)
    metrics = {
        "stage": stage, "seed": seed, "n_rows": n_rows, "steps": trainer.state.global_step,
        "train_time_s": round(seconds, 3), "config": cfg, "resumed_from": resumed,
        "log": [h for h in trainer.state.log_history if "loss" in h],
    }
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1, sort_keys=True)
    if trainer.args.should_save:
        shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)
    return metrics


def sft(model_dir: str, train_parquet: list[str], out_dir: str, cfg: dict, seed: int) -> dict:
    """Supervised fine-tuning on teacher traces with TRL's ``SFTTrainer``, loss on assistant tokens only.

    Shards need the canonical ``question``, ``choices`` and ``image`` columns plus ``response`` (the
    ``<think>…</think>\\n<answer>…</answer>`` trace). ``cfg``: ``trl.SFTConfig`` fields and ``OWN``
    (``check_settings``); a float ``warmup_steps`` below 1 is a fraction of the total steps. With
    ``padding_free``, which TRL refuses for images, each batch is one row with no padding
    (``mmfr.packing.PackedVisionCollator``): the same examples per step and the same loss, without
    the padding's compute; TRL's ``num_tokens`` cannot count such rows and is left out of the log.
    Saves model and processor to ``out_dir`` and returns (and writes to ``out_dir/metrics.json``) the
    loss log, step count, train time and row count. Deterministic given ``seed`` on CPU."""
    from trl import SFTConfig, SFTTrainer

    check_settings("sft", cfg)
    c = _own_part(cfg)

    def build(row):
        return {"messages": student_messages(row["question"], row["choices"]) + [_assistant(row["response"])]}

    data = _load_rows(train_parquet, ["question", "choices", "image", "response"], build,
                      drop=["question", "choices", "response"])
    processor, model = _student(model_dir, c)
    trl_cfg = _trl_part(cfg)
    packed = bool(trl_cfg.pop("padding_free", False))
    args = SFTConfig(**trl_cfg, **_checkpointing(cfg, out_dir), seed=seed, data_seed=seed,
                     assistant_only_loss=True, report_to="none", dataloader_num_workers=0, **_precision_args())
    collator = None
    if packed:
        from mmfr.packing import PackedVisionCollator

        collator = PackedVisionCollator(processor, model, max_length=args.max_length,
                                        flash_varlen=str(c["attn_implementation"] or "").startswith("flash"))
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=processor,
                         data_collator=collator)
    start = time.time()
    resumed = _train(trainer, out_dir)
    if packed:  # TRL counts a packed row as one token (it reads position_ids.size(1))
        for entry in trainer.state.log_history:
            entry.pop("num_tokens", None)
    return _finish(trainer, processor, out_dir, "sft", cfg, seed, len(data), time.time() - start, resumed)


def gspo(model_dir: str, train_parquet: list[str], out_dir: str, cfg: dict, seed: int) -> dict:
    """GSPO with TRL's ``GRPOTrainer``: sequence-level importance ratios (``importance_sampling_level=
    "sequence"``) with the per-sequence ``"grpo"`` loss, no KL term, the GSPO clip range, and rewards
    ``accuracy_reward``/``format_reward`` weighted by ``mmfr.rewards.reward_weights()``.

    Shards need ``question``, ``choices``, ``image``, ``answer`` and ``answer_type``. ``cfg``:
    ``trl.GRPOConfig`` fields and ``OWN``; ``per_device_train_batch_size`` counts completions, so each
    step sees ``per_device_train_batch_size / num_generations`` prompts. Saves like ``sft``; the log holds per-step
    loss, mean total reward and the mean of each reward function."""
    from trl import GRPOConfig, GRPOTrainer

    check_settings("gspo", cfg)
    c = _own_part(cfg)
    batch, group = cfg.get("per_device_train_batch_size", 8), cfg.get("num_generations", 8)
    if batch % group:
        raise SettingsError(f"train.gspo.per_device_train_batch_size {batch} must be a multiple of "
                            f"num_generations {group}")

    def build(row):
        return {"prompt": student_messages(row["question"], row["choices"])}

    # answer, answer_type and choices stay: TRL passes them to the reward functions
    data = _load_rows(train_parquet, ["question", "choices", "image", "answer", "answer_type"], build,
                      drop=["question"])
    processor, model = _student(model_dir, c)
    # TRL re-runs the processor on the prompts to rebuild mm_token_type_ids; with right padding they
    # no longer line up with the left-padded prompt ids whenever prompt lengths differ in a batch.
    processor.tokenizer.padding_side = "left"
    args = GRPOConfig(**_trl_part(cfg), **_checkpointing(cfg, out_dir), seed=seed, data_seed=seed,
                      importance_sampling_level="sequence", loss_type="grpo", reward_weights=reward_weights(),
                      report_to="none", dataloader_num_workers=0, log_completions=False, **_precision_args())
    trainer = GRPOTrainer(model=model, args=args, train_dataset=data, processing_class=processor,
                          reward_funcs=[accuracy_reward, format_reward])
    start = time.time()
    resumed = _train(trainer, out_dir)
    return _finish(trainer, processor, out_dir, "gspo", cfg, seed, len(data), time.time() - start, resumed)


def dpo(model_dir: str, train_parquet: list[str], out_dir: str, cfg: dict, seed: int) -> dict:
    """DPO with TRL's ``DPOTrainer`` on preference pairs (``mmfr.pairs``): the student prompt with the
    image, a verified-correct trace as ``chosen`` and a wrong one as ``rejected``; the reference model
    is the starting model (a frozen copy TRL makes). Shards need ``question``, ``choices``, ``image``,
    ``chosen`` and ``rejected``. ``cfg``: ``trl.DPOConfig`` fields and ``OWN``. Saves like ``sft``;
    the log holds TRL's loss, reward margins and accuracies per logging step."""
    from trl import DPOConfig, DPOTrainer

    check_settings("dpo", cfg)
    c = _own_part(cfg)

    def build(row):
        return {"prompt": student_messages(row["question"], row["choices"]),
                "chosen": [_assistant(row["chosen"])], "rejected": [_assistant(row["rejected"])]}

    data = _load_rows(train_parquet, ["question", "choices", "image", "chosen", "rejected"], build,
                      drop=["question", "choices", "chosen", "rejected"])
    processor, model = _student(model_dir, c)
    args = DPOConfig(**_trl_part(cfg), **_checkpointing(cfg, out_dir), seed=seed, data_seed=seed,
                     report_to="none", dataloader_num_workers=0, **_precision_args())
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=processor)
    start = time.time()
    resumed = _train(trainer, out_dir)
    return _finish(trainer, processor, out_dir, "dpo", cfg, seed, len(data), time.time() - start, resumed)


STAGES = {"sft": sft, "gspo": gspo, "dpo": dpo}


def subset_files(data_dir: str) -> list[str]:
    """The parquet shards of a subset (``mmfr.subsets.build``) or of its preference pairs
    (``mmfr.pairs.build``); one with no rows is an error naming what to change."""
    import glob

    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(data_dir, "data", "*.parquet")))
    if not files or sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 0:
        fix = ("annotate.traces_per_sample (pairs need a right and a wrong trace of one question) or "
               "selection.pairs.per_question" if "pairs" in os.path.normpath(data_dir).split(os.sep)
               else "subsets[].where or selection.rl.fraction")
        raise ValueError(f"{data_dir} has no rows to train on: change {fix} in config")
    return files


# --------------------------------------------------------------------------- one process per GPU

def run(stage: str, model_dir: str, train_parquet: list[str], out_dir: str, cfg: dict, seed: int,
        processes: int = 1) -> dict:
    """``sft``, ``gspo`` or ``dpo`` in this process, or with ``processes`` > 1 in that many (one per GPU of the
    job; gloo on a CPU), launched by ``torch.distributed.run``: the global batch is then
    ``per_device_train_batch_size * gradient_accumulation_steps * processes``, and sharding (FSDP,
    DeepSpeed) comes from the TRL settings (``fsdp``, ``fsdp_config``, ``deepspeed``)."""
    import subprocess
    import sys

    if stage not in CONFIG_CLASSES:
        raise ValueError(f"unknown training stage {stage!r}")
    if processes <= 1:
        return STAGES[stage](model_dir, train_parquet, out_dir, cfg, seed)
    check_settings(stage, cfg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "mmfr.train", stage, model_dir, out_dir, "--seed", str(seed), "--settings", json.dumps(cfg),
           "--data", *train_parquet]
    logging.getLogger(__name__).info("launching %d processes: %s", processes, " ".join(cmd[:6]))
    subprocess.run(cmd, check=True)
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> None:
    """One process of a multi-process training run (``run`` starts them)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m mmfr.train")
    p.add_argument("stage", choices=sorted(CONFIG_CLASSES))
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--settings", default="{}", help="the stage's settings as JSON")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    STAGES[a.stage](a.model_dir, a.data, a.out_dir, json.loads(a.settings), a.seed)


if __name__ == "__main__":
    main()
