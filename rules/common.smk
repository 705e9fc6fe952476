# Helpers shared by the rules: the config as lookup tables, paths, and input functions.
# Nothing here imports heavy libraries: every SLURM job parses this file.
import os

from snakemake.resources import Resources

from mmfr import cluster
from mmfr.config import (
    GROUPED_STAGES,
    canonicalise,
    check_config,
    check_filters,
    check_training,
    generation_groups,
    is_grouped,
)

check_config(config)
# mappings in sorted key order: Snakemake compares params as written, so every way of giving the
# same config (overlay order, profile or command line) must give the same params
canonicalise(config)
if workflow.is_main_process:  # needs duckdb and TRL; the jobs' own parses skip them
    check_filters(config)
    check_training(config)

SEED = config["seed"]
SOURCES = {s["name"]: s for s in config["sources"]}
BENCHMARKS = {b["name"]: b for b in config["benchmarks"]}
SUBSETS = {s["name"]: s for s in config["subsets"]}
RL = config["selection"]["rl"]
STUDENTS = {s["size"]: s for s in config["students"]}
SCORE_TARGETS = [(subset, size) for subset in SUBSETS for size in STUDENTS]
# training after the base model: sft, then gspo and/or dpo (each from sft's model)
STAGES = config["train"]["stages"]
# Long Grounded Thoughts: a reasoning model expands each finished trace, or None (off)
EXPAND = config["models"].get("expand")
EXPAND_SPEC = {
    "cue": "Wait,",
    "require_cue": True,
    **config["annotate"].get("expand", {}),
}
TRACE_STAGE = "expanded" if EXPAND else "traces"
# On a cluster, one GPU job loads a stage's model once for a group of a source's shards
# (grouping.<stage>_rows rows) and puts every response in the shards' journals; each shard's own
# job then loads no model. {stage: {group: (source, shards)}} for clean, caption and judge; the
# stages and their per-shard rules are mmfr.config.GROUPED_STAGES.
GROUPS = generation_groups(config)


def grouped(stage):
    """Does one GPU job generate for several of this stage's shards (benchmarks, for evaluate)?"""
    return is_grouped(config, stage)


def _names(names):
    return "|".join(sorted(names))


wildcard_constraints:
    source=_names(SOURCES),
    shard=r"\d{5}",
    bench=_names(BENCHMARKS),
    subset=_names([*SUBSETS, RL["name"]]),
    size=_names(STUDENTS),
    model=rf"base/({_names(STUDENTS)})|({_names(SUBSETS)})/({_names(STUDENTS)})/({_names(STAGES)})",


# Long Grounded Thoughts: sources whose questions a text LLM writes from dense captions (adapter
# caption_mcq), in question_jobs parts of the download each (rule write_questions)
QUESTION_SOURCES = [
    s for s, spec in SOURCES.items() if spec.get("adapter") == "caption_mcq"
]


def question_paths(source):
    """The question writer's replies for a source's download (none for other sources)."""
    if source not in QUESTION_SOURCES:
        return []
    parts = SOURCES[source].get("question_jobs", 1)
    return [f"data/raw/{source}/questions/{p:05d}.parquet" for p in range(parts)]


def shards(source):
    return [f"{i:05d}" for i in range(SOURCES[source]["shards"])]


def shard_paths(stage, source):
    return [f"data/{stage}/{source}/{shard}.parquet" for shard in shards(source)]


def shard_list(stage, source):
    """The list of a source's shards of a stage (rule list_shards) that its group jobs take."""
    return f"data/{stage}/{source}.shards.json"


def all_shard_paths(stage):
    return [p for source in SOURCES for p in shard_paths(stage, source)]


# A published dataset as the teacher (models.caption / models.trace with backend: release): read
# once into an index (rule release_index) that the caption and trace jobs answer from.
RELEASE_INDEX = "data/release/index.parquet"
RELEASE = next(
    (
        config["models"][r]
        for r in ("trace", "caption")
        if (config["models"].get(r) or {}).get("backend") == "release"
    ),
    None,
)


def teacher(role):
    """A teacher's model block, with the release index when it is a release."""
    block = config["models"][role]
    if block["backend"] == "release":
        return {**block, "index": RELEASE_INDEX}
    return block


def release_index(role):
    """Input: the release index, for a teacher that is a release."""
    return [RELEASE_INDEX] if config["models"][role]["backend"] == "release" else []


def release_folder():
    """Input: a release given as a local folder (a Hub id is downloaded by the job)."""
    return [RELEASE["model"]] if os.path.isdir(RELEASE["model"]) else []


def published_pass_rates():
    """difficulty.from_release: the release whose pass rates a question it holds takes (else None)."""
    if not config["difficulty"]["from_release"]:
        return None
    return {
        "index": RELEASE_INDEX,
        "model": RELEASE["model"],
        "phash_distance": RELEASE.get("phash_distance"),
    }


def release_pass_rates():
    """Input: the release index, when pass rates come from it."""
    return [RELEASE_INDEX] if config["difficulty"]["from_release"] else []


# A published release the build is set beside (compare.release; rule release_compare), or None
COMPARE = config["compare"] if config["compare"]["release"] else None
COMPARE_DB = "results/release_compare.duckdb"


def compare_inputs(wildcards):
    """The build's stage shards and compared subsets (and a release given as a folder)."""
    released = [
        r
        for r in [COMPARE["release"], *COMPARE["subsets"].values()]
        if isinstance(r, str) and os.path.isdir(r)
    ]
    return {
        "clean": all_shard_paths("clean"),
        "captions": all_shard_paths("captions"),
        "traces": all_shard_paths("traces"),
        "verified": all_shard_paths("verified"),
        "passrate": all_shard_paths("passrate"),
        "subsets": [f"data/subsets/{name}" for name in COMPARE["subsets"]],
        "released": released,
    }


def regenerate_spec():
    """annotate.regenerate, with the repetition bounds verify rejects at (none when it is off)."""
    spec = config["annotate"]["regenerate"]
    if not spec["tries"]:
        return None
    verify = config["verify"]
    return {
        **spec,
        "ngram": verify["ngram"],
        "max_ngram_repeats": verify["max_ngram_repeats"],
    }


def verify_traces(wildcards):
    """The traces verify reads (and so everything downstream): expanded when models.expand is set."""
    return f"data/{TRACE_STAGE}/{wildcards.source}/{wildcards.shard}.parquet"


# A group job (<stage>_generate_<source>_<first shard>) leaves a temporary marker per shard of its
# group, named by the shard alone: the shard job takes its own as an order-only input (`after`), so
# its set of inputs is the same however the shards are grouped. The group job's own inputs are the
# source's (its std folder, or its list of shards: rule list_shards), not its group's, and it has
# no params of its group: its shards are those of its markers. So regrouping reruns nothing.
def group_markers(stage, source, shards):
    """The markers a group job leaves beside its shards' outputs, one per shard."""
    folder = GROUPED_STAGES[stage].outputs
    return [f"{folder}/{source}/{s}.generated" for s in shards]


def generated(stage):
    """Input function: the marker the shard's group job leaves once its responses are in the
    journals (nothing when the stage is not grouped)."""

    def marker(wildcards):
        if not grouped(stage):
            return []
        return group_markers(stage, wildcards.source, [wildcards.shard])

    return marker


def source_spec(wildcards):
    return SOURCES[wildcards.source]


def benchmark_spec(wildcards):
    return BENCHMARKS[wildcards.bench]


def student_spec(wildcards):
    return STUDENTS[wildcards.size]


def subset_spec(wildcards):
    if wildcards.subset == RL["name"]:
        return {"name": RL["name"], "kind": "rl"}
    return SUBSETS[wildcards.subset]


def workflow_models(spec):
    """A model given as a path under models/ is built by this workflow: make it an input."""
    path = (spec or {}).get("model", "")
    return [path] if path.startswith("models/") else []


def proxy_model(wildcards):
    return workflow_models(config["models"]["proxy"])


def subset_inputs(wildcards):
    return {
        "records": all_shard_paths("clean"),
        "captions": all_shard_paths("captions"),
        "verified": all_shard_paths("verified"),
        "passrates": all_shard_paths("passrate"),
    }


def all_subset_dirs():
    return [f"data/subsets/{name}" for name in [*SUBSETS, RL["name"]]]


def eval_model_dir(wildcards):
    return f"models/{wildcards.model}"


def score_table(subset, size):
    return f"results/scores/{subset}/{size}/scores.tsv"


def all_score_tables():
    return [score_table(subset, size) for subset, size in SCORE_TARGETS]


def scored_models(subset, size):
    """The checkpoints a score table compares: the base student, then each training stage on the
    subset (train.stages: SFT, GSPO, DPO)."""
    return {"base": f"base/{size}", **{st: f"{subset}/{size}/{st}" for st in STAGES}}


def score_inputs(wildcards):
    models = scored_models(wildcards.subset, wildcards.size)
    return {
        stage: [f"results/scores/{m}/{b}.parquet" for b in BENCHMARKS]
        for stage, m in models.items()
    }


def all_eval_items():
    models = {m for t in SCORE_TARGETS for m in scored_models(*t).values()}
    return sorted(f"results/scores/{m}/{b}.parquet" for m in models for b in BENCHMARKS)


# grouping.evaluate: one GPU job per model answers every benchmark (rule evaluate_generate), and
# with evaluate.judge one more judges them (rule evaluate_judge); each leaves one temporary marker
# per model, which the model's per-benchmark evaluate jobs take as an order-only input.
EVAL_JUDGED = grouped("evaluate") and bool(config["evaluate"].get("judge"))


def answers_marker(model, judged=False):
    return f"results/scores/{model}/answers.{'judged' if judged else 'generated'}"


def evaluated(wildcards):
    """The markers a model's evaluation jobs leave once every benchmark's answers (and the judge's
    verdicts on them) are in the journals."""
    if not grouped("evaluate"):
        return []
    return [answers_marker(wildcards.model)] + (
        [answers_marker(wildcards.model, True)] if EVAL_JUDGED else []
    )


def answer_outputs(wildcards):
    """Params of an evaluation group job: the per-benchmark score files whose journals it fills."""
    return [f"results/scores/{wildcards.model}/{b}.parquet" for b in BENCHMARKS]


def gspo_env():
    """GSPO's environment: with vLLM rollouts (train.gspo.use_vllm) one where TRL and vLLM agree."""
    if config["train"]["gspo"].get("use_vllm"):
        return "../envs/gspo.yaml"
    return "../envs/train.yaml"


def all_trained_models():
    return sorted(
        f"models/{sub}/{size}/{st}" for sub, size in SCORE_TARGETS for st in STAGES
    )


def paper_scores(wildcards):
    return {
        name: b["paper"][wildcards.size]
        for name, b in BENCHMARKS.items()
        if wildcards.size in b.get("paper", {})
    }


# Every persistent artifact of a target's graph, as the target's input. Snakemake rebuilds a missing
# file only when a job that needs it runs, so without this a file lost in a crash stayed lost under
# its newer dependents and the build said it succeeded. Temporary markers are not listed.
def data_artifacts():
    """Everything the subsets are built from, raw downloads to pass rates."""
    files = [
        "data/dedup/drops.parquet",
        "results/dedup_report.tsv",
        "models/tokenizer/tokenizer.json",
    ] + ([RELEASE_INDEX] if RELEASE else [])
    for s in SOURCES:
        files += [
            f"data/raw/{s}/{f}" for f in ("data.parquet", "manifest.json", "images")
        ]
        files += question_paths(s)
        files += [
            f"data/std/{s}",
            f"data/std/{s}.dropped.parquet",
            f"data/std/{s}.counts.json",
        ]
    for b in BENCHMARKS:
        files += [
            f"data/raw/bench/{b}{f}" for f in (".parquet", ".manifest.json", ".images")
        ]
        files += [f"data/bench/{b}.parquet", f"data/bench/{b}.dropped.parquet"]
    stages = ["clean", "captions", "traces", "verified", "passrate"]
    for stage in stages + (["expanded"] if EXPAND else []):
        files += all_shard_paths(stage)
    files += [
        p.replace(".parquet", ".dropped.parquet") for p in all_shard_paths("clean")
    ]
    return files


def score_artifacts(subset, size):
    """Everything one score table is built from, beyond the data: subsets (and DPO's pairs),
    checkpoints, answers."""
    models = scored_models(subset, size)
    return [
        f"data/subsets/{subset}",
        f"data/subsets/{RL['name']}",
        *([f"data/pairs/{subset}"] if "dpo" in STAGES else []),
        *[f"models/{m}" for m in models.values()],
        *[
            f"results/scores/{m}/{b}.parquet"
            for m in models.values()
            for b in BENCHMARKS
        ],
        score_table(subset, size),
    ]


def score_target(subset, size):
    """The input function of a score target: its data and score artifacts."""
    return lambda wildcards: data_artifacts() + score_artifacts(subset, size)


def all_artifacts():
    files = data_artifacts() + all_subset_dirs()
    for subset, size in SCORE_TARGETS:
        files += score_artifacts(subset, size)
    return sorted(set(files))


def summary_inputs(wildcards):
    return {
        "counts": [f"data/std/{s}.counts.json" for s in SOURCES],
        "dropped": [f"data/std/{s}.dropped.parquet" for s in SOURCES]
        + [p.replace(".parquet", ".dropped.parquet") for p in all_shard_paths("clean")],
        "records": all_shard_paths("clean"),
        "captions": all_shard_paths("captions"),
        "traces": all_shard_paths("traces"),
        "expanded": all_shard_paths("expanded") if EXPAND else [],
        "verified": all_shard_paths("verified"),
        "passrates": all_shard_paths("passrate"),
        "subsets": all_subset_dirs(),
        "scores": all_score_tables(),
        "eval_items": all_eval_items(),
        "models": all_trained_models(),
        "compare": [COMPARE_DB] if COMPARE else [],
    }


# ---------------------------------------------------------------- cluster resources
# The policy is mmfr.cluster (GPUs follow the recipe; where jobs go is the `cluster:` overlay;
# runtimes and memory are the profile's); here it is applied to the rules.
def apply_cluster(rules):
    """Set gpu, partition, account and GPU model on every rule (what the rule itself sets wins),
    and give each looped rule the set-resources its profile gives its family (`clean_generate`, ...),
    and a per-shard rule that loads the model itself those of its stage's group job."""
    gpus = cluster.rule_gpus(config)
    # the profile's set-resources (Snakemake applies them by exact rule name only)
    overrides = workflow.resource_settings.overwrite_resources
    for r in rules:
        sized = cluster.sized_as(config, r.name)
        if sized != r.name and sized in overrides:
            r.resources.update(Resources.from_mapping(overrides[sized]))
        for key, value in cluster.placement(config, r.name, gpus).items():
            r.resources.setdefault(key, value)
