"""Student training with TRL: SFT on teacher traces, then GSPO with verifiable rewards.

Both stages read parquet shards of canonical records (``mmfr.schema``), build conversational rows
with the student prompt (``mmfr.prompts.student_messages``) and keep each record's image column as
is (TRL's vision collator turns ``image`` into ``images`` and the processor converts to RGB), so
no image is decoded or re-encoded while preparing the dataset. Outputs are a model directory that
``mmfr.models.load_model``/``load_processor`` read, plus ``metrics.json`` with the training log.
"""

from __future__ import annotations

import json
import os
import time

from mmfr.models import load_model, load_processor
from mmfr.prompts import student_messages
from mmfr.rewards import accuracy_reward, format_reward, reward_weights

SFT_DEFAULTS = {
    "learning_rate": 1e-5, "epochs": 3, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
    "lr_scheduler_type": "cosine", "warmup_ratio": 0.03, "weight_decay": 0.0, "max_length": None,
    "freeze_vision": True, "max_steps": -1, "logging_steps": 5, "gradient_checkpointing": False,
    "max_pixels": None, "min_pixels": None,  # image resolution bounds (recipe: 768^2 / 32^2); None keeps the processor's
}
GSPO_DEFAULTS = {
    "learning_rate": 1e-6, "max_steps": 10, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
    "num_generations": 4, "num_iterations": 1, "temperature": 1.0, "top_p": 1.0, "max_completion_length": 64,
    "lr_scheduler_type": "constant", "warmup_steps": 0, "weight_decay": 0.1,
    "epsilon": 3e-4, "epsilon_high": 4e-4, "beta": 0.0,  # GSPO paper clip range, no KL term
    "freeze_vision": True, "logging_steps": 1, "gradient_checkpointing": False,
    "max_pixels": None, "min_pixels": None,
}


def _resolve(cfg: dict, defaults: dict, stage: str) -> dict:
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {stage} config keys {unknown} (known: {sorted(defaults)})")
    return {**defaults, **cfg}


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


def _freeze_vision(model) -> None:
    """Freeze the vision tower and its merger (the projector): both live under ``model.model.visual``."""
    visual = getattr(getattr(model, "model", None), "visual", None)
    if visual is None:
        raise ValueError(f"freeze_vision: {type(model).__name__} has no .model.visual to freeze")
    visual.requires_grad_(False)


def _finish(trainer, processor, out_dir: str, stage: str, cfg: dict, seed: int, n_rows: int, seconds: float) -> dict:
    trainer.save_model(out_dir)
    processor.save_pretrained(out_dir)
    metrics = {
        "stage": stage, "seed": seed, "n_rows": n_rows, "steps": trainer.state.global_step,
        "train_time_s": round(seconds, 3), "config": cfg,
        "log": [h for h in trainer.state.log_history if "loss" in h],
    }
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1, sort_keys=True)
    return metrics


def sft(model_dir: str, train_parquet: list[str], out_dir: str, cfg: dict, seed: int) -> dict:
    """Supervised fine-tuning on teacher traces with TRL's ``SFTTrainer``, loss on assistant tokens only.

    Shards need the canonical ``question``, ``choices`` and ``image`` columns plus ``response`` (the
    ``<think>…</think>\\n<answer>…</answer>`` trace). ``cfg`` keys and defaults: ``SFT_DEFAULTS``;
    ``warmup_ratio`` is a fraction of the total steps. Saves model and processor to ``out_dir`` and
    returns (and writes to ``out_dir/metrics.json``) the loss log, step count, train time and row count.
    Deterministic given ``seed`` on CPU."""
    from trl import SFTConfig, SFTTrainer

    c = _resolve(cfg, SFT_DEFAULTS, "sft")
    if not 0 <= c["warmup_ratio"] < 1:
        raise ValueError(f"sft warmup_ratio {c['warmup_ratio']} must be in [0, 1)")

    def build(row):
        answer = {"role": "assistant", "content": [{"type": "text", "text": row["response"]}]}
        return {"messages": student_messages(row["question"], row["choices"]) + [answer]}

    data = _load_rows(train_parquet, ["question", "choices", "image", "response"], build,
                      drop=["question", "choices", "response"])
    processor = _processor(model_dir, c)
    model = load_model(model_dir, dtype="float32")
    if c["freeze_vision"]:
        _freeze_vision(model)
    args = SFTConfig(
        output_dir=out_dir, seed=seed, data_seed=seed, learning_rate=c["learning_rate"],
        num_train_epochs=c["epochs"], max_steps=c["max_steps"], per_device_train_batch_size=c["per_device_batch_size"],
        gradient_accumulation_steps=c["gradient_accumulation_steps"], lr_scheduler_type=c["lr_scheduler_type"],
        warmup_steps=c["warmup_ratio"], weight_decay=c["weight_decay"], max_length=c["max_length"],
        activation_checkpointing=c["gradient_checkpointing"], assistant_only_loss=True,
        logging_steps=c["logging_steps"], save_strategy="no", report_to="none", dataloader_num_workers=0,
        **_precision_args())
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=processor)
    start = time.time()
    trainer.train()
    return _finish(trainer, processor, out_dir, "sft", c, seed, len(data), time.time() - start)


def gspo(model_dir: str, train_parquet: list[str], out_dir: str, cfg: dict, seed: int) -> dict:
    """GSPO with TRL's ``GRPOTrainer``: sequence-level importance ratios (``importance_sampling_level=
    "sequence"``) with the per-sequence ``"grpo"`` loss, no KL term, the GSPO clip range, and rewards
    ``accuracy_reward``/``format_reward`` weighted by ``mmfr.rewards.reward_weights()``.

    Shards need ``question``, ``choices``, ``image``, ``answer`` and ``answer_type``. ``cfg`` keys and
    defaults: ``GSPO_DEFAULTS``; ``per_device_batch_size`` counts completions, so each step sees
    ``per_device_batch_size / num_generations`` prompts. Saves like ``sft``; the log holds per-step
    loss, mean total reward and the mean of each reward function."""
    from trl import GRPOConfig, GRPOTrainer

    c = _resolve(cfg, GSPO_DEFAULTS, "gspo")
    if c["per_device_batch_size"] % c["num_generations"]:
        raise ValueError(f"gspo per_device_batch_size {c['per_device_batch_size']} must be a multiple of "
                         f"num_generations {c['num_generations']}")

    def build(row):
        return {"prompt": student_messages(row["question"], row["choices"])}

    # answer, answer_type and choices stay: TRL passes them to the reward functions
    data = _load_rows(train_parquet, ["question", "choices", "image", "answer", "answer_type"], build,
                      drop=["question"])
    processor = _processor(model_dir, c)
    # TRL re-runs the processor on the prompts to rebuild mm_token_type_ids; with right padding they
    # no longer line up with the left-padded prompt ids whenever prompt lengths differ in a batch.
    processor.tokenizer.padding_side = "left"
    model = load_model(model_dir, dtype="float32")
    if c["freeze_vision"]:
        _freeze_vision(model)
    args = GRPOConfig(
        output_dir=out_dir, seed=seed, data_seed=seed, learning_rate=c["learning_rate"], max_steps=c["max_steps"],
        per_device_train_batch_size=c["per_device_batch_size"],
        gradient_accumulation_steps=c["gradient_accumulation_steps"], num_generations=c["num_generations"],
        num_iterations=c["num_iterations"], temperature=c["temperature"], top_p=c["top_p"],
        max_completion_length=c["max_completion_length"], lr_scheduler_type=c["lr_scheduler_type"],
        warmup_steps=c["warmup_steps"], weight_decay=c["weight_decay"],
        importance_sampling_level="sequence", loss_type="grpo", beta=c["beta"], epsilon=c["epsilon"],
        epsilon_high=c["epsilon_high"], reward_weights=reward_weights(),
        activation_checkpointing=c["gradient_checkpointing"], logging_steps=c["logging_steps"], save_strategy="no",
        report_to="none", dataloader_num_workers=0, log_completions=False,
        **_precision_args())
    trainer = GRPOTrainer(model=model, args=args, train_dataset=data, processing_class=processor,
                          reward_funcs=[accuracy_reward, format_reward])
    start = time.time()
    trainer.train()
    return _finish(trainer, processor, out_dir, "gspo", c, seed, len(data), time.time() - start)


def subset_files(subset_dir: str) -> list[str]:
    """The parquet shards of a subset written by ``mmfr.subsets.build``; an empty subset is an error."""
    import glob

    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(subset_dir, "data", "*.parquet")))
    if not files or sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 0:
        raise ValueError(f"subset {subset_dir} has no rows to train on: loosen its filter in config "
                         f"(subsets[].where or selection.rl.fraction)")
    return files
