"""``mmfr plan``: what a config will ask of the GPUs, before anything runs.

Per generation stage: requests (items x samples), expected output tokens from the recipe's
statistics (``plan.tokens`` in the config: the paper's mean CoT length per domain, its mean caption
length, ...), engine hours at a stated tokens-per-second figure, GPU hours (x tensor parallel), the
number of jobs (one per shard; a cleaning, captioning or judging job takes a group of a source's
shards, ``grouping.<stage>_rows``; evaluation, one per model and benchmark or, with
``grouping.evaluate``, one per model) and the share of GPU time spent loading the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from mmfr.config import generation_groups, source_rows

# Output tokens per expansion when the config gives no ``plan.tokens.expand``: our estimate of a
# reasoning model's continuation of a short trace after the cue (Long Grounded Thoughts), which
# re-checks the whole derivation and so runs to several times the short trace.
EXPAND_TOKENS = 4000
# Output tokens per caption a question writer spends when the config gives no ``plan.tokens.questions``:
# our estimate, about 120 tokens of JSON (question, four options, answer, a quoted sentence) per
# question asked for, four questions by default
QUESTION_TOKENS = 500


def load_config(paths: list[str]) -> dict:
    """config.yaml overlaid by recipe files the way Snakemake does: mappings merge, the rest replaces."""

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    config: dict = {}
    for path in paths:
        with open(path) as f:
            config = merge(config, yaml.safe_load(f) or {})
    return config


@dataclass
class Stage:
    stage: str
    model: str
    requests: int
    tokens: float  # expected output tokens
    tensor_parallel: int
    jobs: int

    def engine_hours(self, tokens_per_second: float) -> float:
        return self.tokens / tokens_per_second / 3600

    def gpu_hours(self, tokens_per_second: float, load_minutes: float) -> float:
        return (self.engine_hours(tokens_per_second) + self.jobs * load_minutes / 60) * self.tensor_parallel


def stages(config: dict) -> list[Stage]:
    tokens = (config.get("plan") or {}).get("tokens") or {}
    cot = tokens.get("trace", {})
    sources = config["sources"]
    models = config["models"]
    shards = sum(s.get("shards", 1) for s in sources)
    n = sum(source_rows(s) for s in sources)
    kept = sum(int(s.get("expected") or source_rows(s)) for s in sources)  # after verification (the 1.8M)
    by_domain = lambda count: sum(count(s) * float(cot.get(s["domain"], cot.get("default", 0))) for s in sources)  # noqa: E731
    samples = config.get("annotate", {}).get("traces_per_sample", 1)
    k = config.get("difficulty", {}).get("k", 4)

    groups = generation_groups(config)

    def stage(name, role, requests, out_tokens, grouped_as=None):
        spec = models.get(role) or {}
        jobs = len(groups[grouped_as]) if grouped_as in groups else shards
        return Stage(name, spec.get("model", "-"), int(requests), out_tokens, int(spec.get("tensor_parallel_size", 1)),
                     jobs)

    plan = []
    writes = [s for s in sources if s.get("adapter") == "caption_mcq"]
    if models.get("question_writer") and writes:  # one request per image (paper_raw counts images)
        images = sum(int(s.get("paper_raw") or s.get("expected") or s.get("n") or 0) for s in writes)
        spec = models["question_writer"]
        plan.append(Stage("questions", spec.get("model", "-"), images, images * tokens.get("questions", QUESTION_TOKENS),
                          int(spec.get("tensor_parallel_size", 1)), sum(s.get("question_jobs", 1) for s in writes)))
    if models.get("clean"):
        plan.append(stage("clean", "clean", n, n * tokens.get("clean", 0), "clean"))
    if models.get("extract"):
        share = tokens.get("extract_share", 0.1)
        plan.append(stage("extract", "extract", n * share, n * share * tokens.get("extract", 0), "clean"))
    plan.append(stage("caption", "caption", n, n * tokens.get("caption", 0), "caption"))
    plan.append(stage("trace", "trace", n * samples, samples * by_domain(source_rows)))
    if models.get("expand"):  # one request per trace (an upper bound: only finished traces are expanded)
        plan.append(stage("expand", "expand", n * samples, n * samples * tokens.get("expand", EXPAND_TOKENS)))
    if models.get("judge"):
        plan.append(stage("judge", "judge", n * samples, n * samples * tokens.get("judge", 0), "judge"))
    plan.append(stage("pass_rate", "proxy", kept * k, k * by_domain(lambda s: int(s.get("expected") or source_rows(s)))))
    # each student's base model, and its SFT and GSPO checkpoints per subset
    n_models = len(config.get("students", [])) * (1 + 2 * len(config.get("subsets", [])))
    evals = Stage("evaluate", "students", n_models * len(config.get("benchmarks", [])) * tokens.get("benchmark_items", 0),
                  n_models * len(config.get("benchmarks", [])) * tokens.get("benchmark_items", 0) * tokens.get("evaluate", 0),
                  int(config.get("evaluate", {}).get("generation", {}).get("tensor_parallel_size", 1)),
                  n_models if (config.get("grouping") or {}).get("evaluate") else n_models * len(config.get("benchmarks", [])))
    plan.append(evals)
    return plan


def render(plan: list[Stage], tokens_per_second: float, load_minutes: float) -> str:
    head = (f"{'stage':10s} {'model':38s} {'requests':>12s} {'out tokens':>14s} {'engine h':>9s} "
            f"{'TP':>3s} {'jobs':>5s} {'GPU h':>9s} {'load %':>7s}")
    lines = [f"At {tokens_per_second:,.0f} output tokens/s per engine and {load_minutes:g} min to load a model per job:",
             head, "-" * len(head)]
    total = 0.0
    for s in plan:
        gpu = s.gpu_hours(tokens_per_second, load_minutes)
        load = s.jobs * load_minutes / 60 * s.tensor_parallel
        total += gpu
        lines.append(f"{s.stage:10s} {s.model[:38]:38s} {s.requests:12,d} {s.tokens:14,.0f} "
                     f"{s.engine_hours(tokens_per_second):9,.1f} {s.tensor_parallel:3d} {s.jobs:5d} {gpu:9,.0f} "
                     f"{100 * load / gpu if gpu else 0:6.1f}%")
    lines.append(f"{'total':10s} {'':38s} {'':12s} {'':14s} {'':9s} {'':3s} {'':5s} {total:9,.0f}")
    return "\n".join(lines)
