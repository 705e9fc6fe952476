"""Checks on the config that a JSON schema cannot express. Run at parse time, before any job,
so a config error never costs work; every message names the config key at fault."""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass

from mmfr.exclusions import Exclusions
from mmfr.generate.role import ModelRole, RoleError

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    pass


def check_schema(config: dict, schema_path: str) -> None:
    """Every way ``config`` breaks the JSON schema, each named by its config key (``verify.min_cot_wrds``,
    ``sources[3].shards``), with the known keys beside an unknown one. Snakemake's own ``validate``
    (which then fills the defaults) prints the whole schema instead."""
    import jsonschema
    import yaml

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted({_describe(e, config) for e in validator.iter_errors(config)})
    if problems:
        raise ConfigError(f"{len(problems)} config error(s):\n  " + "\n  ".join(problems))


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error, config: dict) -> str:
    where = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        lines = []
        for k in extra:
            close = difflib.get_close_matches(k, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"{_key([*error.absolute_path, k])}: unknown key ({hint}known: {', '.join(known)})")
        return "; ".join(lines)
    if error.validator in ("oneOf", "anyOf") and error.context:
        # the alternative that got furthest says the most
        best = max(error.context, key=lambda e: len(e.absolute_path))
        return _describe(best, config)
    return f"{where}: {error.message}"


def canonical(value):
    """``value`` with the keys of every mapping in sorted order (lists keep theirs). Snakemake compares
    params by their ``repr``, so the same config given by another overlay order must read the same."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def canonicalise(config: dict) -> None:
    """Put ``config`` in canonical key order, in place (Snakemake's ``config`` object is shared)."""
    ordered = canonical(config)
    config.clear()
    config.update(ordered)


# Questions adapter grounded_mcq writes per image, unless the source says otherwise
QUESTIONS_PER_IMAGE, COMPOSED_PER_IMAGE = 4, 2


def source_rows(source: dict) -> int:
    """Items a source brings: the paper's starting count, else its 1.8M count, else the generated n.
    A source of images that grounded_mcq (or a question writer, caption_mcq) writes questions about
    counts images: times its questions."""
    n = int(source.get("paper_raw") or source.get("expected") or source.get("n") or 0)
    if source.get("adapter") in ("grounded_mcq", "caption_mcq") or source.get("kind") == "synthetic_detection":
        n *= source.get("questions_per_image", QUESTIONS_PER_IMAGE) + source.get("composed_per_image", COMPOSED_PER_IMAGE)
    return n


def shard_groups(sources: list[dict], rows_per_job: int | None) -> dict[str, tuple[str, list[str]]]:
    """Consecutive shards of each source packed into jobs of about ``rows_per_job`` rows (from the
    source's expected size), for a stage whose work per shard is short next to loading its model.
    ``{group: (source, shards)}``, a group named by its source and first shard (``mmr1_00005``).
    Groups never span sources: adding or changing a source leaves the other sources' groups alone."""
    groups = {}
    for source in sources:
        n = int(source.get("shards", 1))
        shard_rows = max(1, -(-source_rows(source) // n))
        per_job = max(1, rows_per_job // shard_rows) if rows_per_job else 1
        for first in range(0, n, per_job):
            groups[f"{source['name']}_{first:05d}"] = (source["name"], [f"{i:05d}" for i in range(first, min(n, first + per_job))])
    return groups


@dataclass(frozen=True)
class GroupedStage:
    """A stage whose model calls one GPU job makes for several parts (a group of a source's shards;
    every benchmark, for evaluation), leaving each part's responses in its journal for the part's own
    job (``shard_rule``), which then loads no model."""

    roles: tuple[str, ...]  # the models.<role> blocks the group job loads
    shard_rule: str  # the rule that reads the journals, one job per shard (per benchmark)
    outputs: str  # the folder of the shard rule's outputs (data/<outputs>/...), where markers go


# The one table of grouping: grouping.<stage>_rows sets a shard stage's rows per job (null: each
# shard's job generates itself); grouping.evaluate (true/false) groups evaluation by model.
GROUPED_STAGES = {
    "clean": GroupedStage(("clean", "extract"), "clean", "data/clean"),
    "caption": GroupedStage(("caption",), "caption", "data/captions"),
    "judge": GroupedStage(("judge",), "verify", "data/verified"),
    "evaluate": GroupedStage((), "evaluate", "results/scores"),
}
SHARD_STAGES = ("clean", "caption", "judge")  # grouped by rows of a source's shards


def is_grouped(config: dict, stage: str) -> bool:
    """Does one GPU job generate for several of this stage's shards (benchmarks, for evaluate)?"""
    grouping = config.get("grouping") or {}
    if stage == "evaluate":
        return bool(grouping.get("evaluate"))
    return bool(grouping.get(f"{stage}_rows")) and any(config["models"].get(r) for r in GROUPED_STAGES[stage].roles)


def generation_groups(config: dict) -> dict[str, dict[str, tuple[str, list[str]]]]:
    """``{stage: shard_groups(...)}`` for each stage of ``GROUPED_STAGES`` that has rows per job set
    and a model to run."""
    return {stage: shard_groups(config["sources"], config["grouping"][f"{stage}_rows"])
            for stage in SHARD_STAGES if is_grouped(config, stage)}


def _unique(items: list[dict], key: str, where: str) -> None:
    seen = set()
    for i, item in enumerate(items):
        if item[key] in seen:
            raise ConfigError(f"{where}[{i}].{key}: {item[key]!r} appears twice")
        seen.add(item[key])


def _check_compare(config: dict) -> None:
    """compare: a Hub release at a pinned revision; released sets for subsets the build makes."""
    spec = config.get("compare") or {}
    names = {s["name"] for s in config["subsets"]} | {config["selection"]["rl"]["name"]}
    if spec.get("subsets") and not spec.get("release"):
        raise ConfigError("compare.subsets: set compare.release too (the sources are compared with it)")
    if spec.get("release") and not os.path.isdir(spec["release"]) and not spec.get("revision"):
        raise ConfigError(f"compare.revision: the release {spec['release']!r} is read at a pinned revision")
    for name, released in (spec.get("subsets") or {}).items():
        if name not in names:
            raise ConfigError(f"compare.subsets.{name}: no subset of that name (subsets: {sorted(names)})")
        if isinstance(released, str) and not os.path.isdir(released):
            raise ConfigError(f"compare.subsets.{name}: the Hub set {released!r} is read at a pinned revision: "
                              "give {dataset, revision}")


def check_config(config: dict) -> None:
    _unique(config["sources"], "name", "sources")
    _unique(config["benchmarks"], "name", "benchmarks")
    _unique(config["subsets"], "name", "subsets")
    _unique(config["students"], "size", "students")
    rl = config["selection"]["rl"]["name"]
    if rl in {s["name"] for s in config["subsets"]}:
        raise ConfigError(f"selection.rl.name: {rl!r} is also the name of an SFT subset")
    stages = config["train"].get("stages", ["sft", "gspo"])
    if not stages or stages[0] != "sft":
        raise ConfigError(f"train.stages: {stages} must begin with sft (gspo and dpo start from its model)")
    families = set()
    for i, s in enumerate(config["sources"]):
        if s["kind"] == "synthetic":
            families.add(s["family"])
    known = {"counting", "charts", "geometry", "puzzle"}
    for i, s in enumerate(config["sources"]):
        for fam in [s.get("family")] if s["kind"] == "synthetic" else s.get("families", []):
            if fam not in known:
                raise ConfigError(f"sources[{i}] ({s['name']}): unknown synthetic family {fam!r}; known: {sorted(known)}")
    _check_exclusions(config)
    for i, s in enumerate(config["sources"]):
        if s.get("adapter") == "caption_mcq" and not config["models"].get("question_writer"):
            raise ConfigError(f"sources[{i}] ({s['name']}): adapter caption_mcq needs models.question_writer, the "
                              "text LLM that writes its questions from the dense captions")
        if s.get("dense_captions") and s["kind"] != "synthetic_detection":
            raise ConfigError(f"sources[{i}].dense_captions ({s['name']}): only a synthetic_detection source "
                              "generates captions; a dataset's own caption column is read by adapter caption_mcq")
    unpinned = [s["name"] for s in config["sources"] + config["benchmarks"] if s["kind"] == "hf" and not s.get("revision")]
    if unpinned:
        log.warning("%d datasets have no pinned revision (downloads are not reproducible): %s",
                    len(unpinned), ", ".join(unpinned))
    sizes = {s["size"] for s in config["students"]}
    for role, spec in config["models"].items():
        if not spec:
            continue
        _check_role(spec, f"models.{role}")
        path = spec["model"]
        if path.startswith("models/"):
            parts = path.split("/")
            if len(parts) != 3 or parts[1] != "base" or parts[2] not in sizes:
                raise ConfigError(f"models.{role}.model: {path!r} is not a model this workflow builds "
                                  f"(models/base/<size> with size in {sorted(sizes)})")
        if spec["backend"] == "release" and role not in ("caption", "trace"):
            raise ConfigError(f"models.{role}.backend: a release answers captions and traces only")
        if spec["backend"] == "release" and not spec.get("revision"):
            raise ConfigError(f"models.{role}.revision: a release is read at a pinned revision (a Hub commit; "
                              f"for a folder, a label that changes with its content)")
        if spec["backend"] == "scripted" and role not in ("caption", "trace", "clean", "extract", "expand",
                                                          "question_writer"):
            raise ConfigError(f"models.{role}.backend: the scripted backend can only caption, trace, clean, extract, "
                              "expand and write questions")
    if config["difficulty"].get("from_release") and not any(
            (config["models"].get(r) or {}).get("backend") == "release" for r in ("caption", "trace")):
        raise ConfigError("difficulty.from_release: no release to take pass rates from (models.trace with "
                          "backend: release)")
    releases = {(config["models"][r]["model"], config["models"][r].get("revision")) for r in ("caption", "trace")
                if (config["models"].get(r) or {}).get("backend") == "release"}
    if len(releases) > 1:
        raise ConfigError(f"models.caption, models.trace: one release for both (got {sorted(releases)})")
    _check_compare(config)
    # evaluation's block runs each checkpoint in turn: checked with a stand-in for the model
    _check_role({**config["evaluate"]["generation"], "model": "<checkpoint>"}, "evaluate.generation")
    if config["evaluate"].get("judge"):
        _check_role(config["evaluate"]["judge"], "evaluate.judge")
    for i, sub in enumerate(config["subsets"]):
        where = sub.get("where", "true")
        if ";" in where:
            raise ConfigError(f"subsets[{i}].where: {where!r} must be a single SQL expression")
    for where, items in (("sources", config["sources"]), ("benchmarks", config["benchmarks"])):
        for i, s in enumerate(items):
            hf_id = s.get("hf_id")
            if hf_id and _looks_like_path(hf_id) and not os.path.exists(hf_id):
                raise ConfigError(f"{where}[{i}].hf_id ({s['name']}): the local path {hf_id!r} does not exist "
                                  f"(from {os.getcwd()}); a hub id is written owner/name")


def _check_role(block: dict, key: str) -> None:
    """A model block is what every job of its role will run: built once here, so that a block no
    backend can run fails before any job, naming its key."""
    try:
        ModelRole.from_config(block, key)
    except RoleError as e:
        raise ConfigError(str(e)) from e


def check_training(config: dict) -> None:
    """The keys of ``train.sft``, ``train.gspo``, ``train.dpo`` (and a demo student's ``warmup``) against TRL's own
    config classes, so a misspelt setting fails here, naming the valid keys, and not in the training
    job (which checks the values too). The Snakefile runs it in the main process only."""
    from mmfr.train import check_settings, SettingsError

    blocks = [(stage, config["train"].get(stage), f"train.{stage}") for stage in ("sft", "gspo", "dpo")]
    gspo = config["train"].get("gspo") or {}
    if "gspo" in config["train"].get("stages", []) and gspo.get("use_vllm") and not config["train"].get("gpus"):
        raise ConfigError("train.gspo.use_vllm: vLLM rollouts need GPUs and train.gpus is 0; set use_vllm: false "
                          "to generate the rollouts with transformers (the CPU path)")
    for i, student in enumerate(config["students"]):
        if student.get("warmup"):
            warm = {k: v for k, v in student["warmup"].items() if k != "n_per_family"}
            blocks.append(("sft", warm, f"students[{i}].warmup"))
    for stage, cfg, where in blocks:
        try:
            check_settings(stage, cfg or {}, where, values=False)
        except SettingsError as e:
            raise ConfigError(str(e)) from e


def check_filters(config: dict) -> None:
    """Each subset's ``where`` compiled against the columns a subset is selected from, so a typo fails
    here and not in the subset job, after verification and pass rates ran. Needs duckdb: the
    Snakefile runs it in the main process only."""
    from mmfr.subsets import check_where

    wheres = [sub.get("where", "true") for sub in config["subsets"]]
    for i, (sub, problem) in enumerate(zip(config["subsets"], check_where(*wheres))):
        if problem:
            raise ConfigError(f"subsets[{i}].where ({sub['name']}): {sub.get('where')!r} is not a valid filter: "
                              f"{problem}")


def _looks_like_path(hf_id: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything absolute, relative (``./``, ``../``, ``~``) or
    with more than one slash is a local path, and so is ``dir/name`` when ``dir`` is a local folder."""
    return (hf_id.startswith(("/", ".", "~")) or hf_id.count("/") > 1
            or ("/" in hf_id and os.path.isdir(hf_id.split("/")[0])))


def _check_exclusions(config: dict) -> None:
    """A source the recipe excludes as a whole (say a FineVision config named in exclude.origins)
    is a config mistake: it would download only to drop every record."""

    exclusions = Exclusions.from_config(config.get("exclude") or {})
    for i, s in enumerate(config["sources"]):
        if hit := exclusions.origin_match(s["name"], s.get("config")):
            raise ConfigError(f"sources[{i}] ({s['name']}): matches exclude.origins entry {hit!r}; "
                              "remove the source or the exclusion")
