"""Cluster resources, as policy over the config: the GPUs each rule asks for follow the recipe (a
model's ``tensor_parallel_size``, ``train.gpus``), and which profile entry sizes a rule whose
name the profile cannot know (one rule per group of shards) or whose job changes with grouping.

Where jobs go (partition, account, GPU model) is the user's ``cluster:`` overlay; runtimes and
memory are in the profile (``profiles/slurm``). ``rules/common.smk`` applies the result.
"""

from __future__ import annotations

from mmfr.config import GROUPED_STAGES, SHARD_STAGES, is_grouped

# Rules made in a loop (one per group of a source's shards) take the resources the profile gives
# their family
FAMILIES = tuple(f"{stage}_generate" for stage in SHARD_STAGES)


def model_gpus(config: dict, *roles: str) -> int:
    """GPUs of a job that loads the models of ``roles`` (the largest ``tensor_parallel_size`` of a
    GPU backend; 0 for the scripted, openai and CPU ones)."""
    specs = [config["models"].get(r) or {} for r in roles]
    return max([int(s.get("tensor_parallel_size", 1)) for s in specs
                if s.get("backend") in ("vllm", "transformers") and s.get("device", "cuda") != "cpu"] or [0])


def rule_gpus(config: dict) -> dict[str, int]:
    """GPUs per rule (per family, for looped rules). A grouped stage's per-shard jobs read the
    journals and need none; ungrouped, they run the model themselves."""
    generation = config["evaluate"]["generation"]
    generated = {stage: model_gpus(config, *spec.roles) for stage, spec in GROUPED_STAGES.items() if spec.roles}
    generated["evaluate"] = int(generation.get("tensor_parallel_size", 1)) if generation["backend"] == "vllm" else 0
    gpus = {f"{stage}_generate": n for stage, n in generated.items()}
    for stage, spec in GROUPED_STAGES.items():
        gpus[spec.shard_rule] = 0 if is_grouped(config, stage) else generated[stage]
    judge = config["evaluate"].get("judge") or {}
    gpus["evaluate_judge"] = int(judge.get("tensor_parallel_size", 1)) if judge.get("backend") == "vllm" else 0
    if not is_grouped(config, "evaluate"):  # the benchmark's evaluate job runs the answer judge itself
        gpus["evaluate"] = max(gpus["evaluate"], gpus["evaluate_judge"])
    train = int(config["train"].get("gpus", 0))
    return {**gpus, "trace": model_gpus(config, "trace"), "expand": model_gpus(config, "expand"),
            "write_questions": model_gpus(config, "question_writer"),
            "pass_rate": model_gpus(config, "proxy"), "sft": train, "gspo": train, "dpo": train,
            "base_model": 0}


def family(rule_name: str) -> str:
    return next((f for f in FAMILIES if rule_name.startswith(f + "_")), rule_name)


def sized_as(config: dict, rule_name: str) -> str:
    """Whose profile resources a rule takes: a looped rule its family's; a per-shard rule that runs
    the model itself (its stage not grouped) those of its stage's group job, which the profile sizes
    for the model."""
    stage = next((s for s, spec in GROUPED_STAGES.items() if spec.shard_rule == rule_name), None)
    if stage and not is_grouped(config, stage) and rule_gpus(config)[rule_name]:
        return f"{stage}_generate"
    return family(rule_name)


def placement(config: dict, rule_name: str, gpus: dict[str, int]) -> dict:
    """The resources a rule gets from the recipe and the site: gpu, slurm_partition, slurm_account,
    gpu_model (a rule's own settings win over these)."""
    cluster = config.get("cluster") or {}
    n = gpus.get(family(rule_name), 0)
    out = {"gpu": n} if n else {}
    if partition := (n and cluster.get("gpu_partition")) or cluster.get("partition"):
        out["slurm_partition"] = partition
    if cluster.get("account"):
        out["slurm_account"] = cluster["account"]
    if n and cluster.get("gpu_model"):
        out["gpu_model"] = cluster["gpu_model"]
    return out
