"""The bridge between Snakemake scripts and the library: logging, provenance, clear errors.

Every script is::

    from mmfr.snake import step
    with step(snakemake) as s:
        some_function(s.input.x, s.output[0], **s.params.y)
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import sys
import time
from pathlib import Path

from mmfr import provenance


def _plain(value):
    """Snakemake params (Namedlist, dicts of them) → JSON-able values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@contextlib.contextmanager
def step(snakemake, extra: dict | None = None):
    """Send logs to the rule's log file, time the step, write a provenance record per output,
    and re-raise any error with the rule and wildcards named.

    An input named ``after`` is order-only: a temporary marker left by the job that generated this
    one's responses into the journals. It is not content, so provenance lists it not as an input but
    as ``generated_by`` (that job's rule, host, SLURM job and GPUs)."""
    log_path = snakemake.log[0] if snakemake.log else None
    handlers = [logging.FileHandler(log_path, mode="w")] if log_path else []
    handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rule = snakemake.rule
    wildcards = dict(snakemake.wildcards.items())
    log = logging.getLogger(f"mmfr.rule.{rule}")
    log.info("rule %s %s: start", rule, wildcards)
    started = time.time()
    try:
        yield snakemake
    except Exception as e:
        log.exception("rule %s %s failed", rule, wildcards)
        raise RuntimeError(f"rule {rule} {wildcards} failed: {type(e).__name__}: {e} (log: {log_path})") from e
    finished = time.time()
    params = {k: _plain(v) for k, v in snakemake.params.items()}
    after = _paths(snakemake.input.get("after"))
    inputs = [str(p) for p in snakemake.input if str(p) not in after]
    if after:  # the jobs that generated this one's responses: where they ran, on which GPUs
        extra = {**(extra or {}), "generated_by": [provenance.job_of(p) for p in after]}
    if snakemake.output and (journals := journals_of(str(snakemake.output[0]))):
        # the responses this output was built from: the audit checks the journals still hold them
        extra = {**(extra or {}), "journals": [provenance.seal(j) for j in journals]}
    for out in snakemake.output:
        provenance.write(str(out), rule=rule, wildcards=wildcards, params=params, inputs=inputs,
                         started=started, finished=finished, extra=extra)
    log.info("rule %s %s: done in %.1fs", rule, wildcards, finished - started)


def _paths(value) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def journal(snakemake) -> str:
    """The journal of finished generation requests for a rule's first output."""
    return journal_of(str(snakemake.output[0]))


def journal_of(output: str) -> str:
    """The journal of finished generation requests for an output of a generation rule."""
    return f"data/journal/{output.removeprefix('data/')}.jsonl"


def journals_of(output: str) -> list[str]:
    """The journals there are for an output: its own, and one per task where a stage asks several
    (``<journal stem>.clean.jsonl`` and ``.extract.jsonl``)."""
    stem = journal_of(output).removesuffix(".jsonl")
    return sorted(p for p in glob.glob(glob.escape(stem) + ".jsonl") + glob.glob(glob.escape(stem) + ".*.jsonl"))


def group_journals(outputs) -> list[str]:
    """The journals a group job fills: those of the per-shard (per-benchmark) outputs it generates
    for, which their own jobs then read."""
    return [journal_of(str(o)) for o in outputs]


def marker_outputs(markers) -> list[str]:
    """The per-shard outputs of a shard stage's group job, from its markers (one per shard, beside
    the shard's output: ``data/captions/<source>/<shard>.generated``). Taken from the outputs, not
    from params: a group job's params would change with the grouping, and regrouping would rerun."""
    return [str(m).removesuffix(".generated") + ".parquet" for m in markers]


def write_shard_list(shards, output: str) -> None:
    """List a source's shards of one stage in ``data/<stage>/<source>.shards.json``. A grouped
    stage's group jobs take this one file as input, not their group's shards, so their set of inputs
    is the same however the shards are grouped. It holds names only (no row counts): the rule takes
    the shards `ancient`, so a rebuilt shard does not rebuild the list (see rules/sources.smk)."""
    folder = shard_folder(output)
    strays = [str(p) for p in shards if str(Path(p).parent) != folder]
    if strays:
        raise ValueError(f"{output} lists the shards of {folder}/, not {strays[:3]}")
    names = [Path(p).name for p in map(str, shards)]
    Path(output).write_text(json.dumps({"folder": folder, "shards": names}, indent=1) + "\n")


def shard_folder(shard_list: str) -> str:
    """data/clean/<source>.shards.json -> data/clean/<source>"""
    return str(shard_list).removesuffix(".shards.json")


def listed_shards(shard_list: str, outputs) -> list[str]:
    """The shards of ``shard_list`` (a ``write_shard_list`` file) that a group job's per-shard
    outputs stand for, by file name, in the outputs' order; a name it does not list is an error."""
    listed = json.loads(Path(shard_list).read_text())["shards"]
    names = [Path(str(o)).name for o in outputs]
    missing = [n for n in names if n not in listed]
    if missing:
        raise ValueError(f"{shard_list} does not list {missing[:3]} ({len(missing)} shards of this group job)")
    return shards_in(shard_folder(shard_list), outputs)


def shards_in(folder: str, outputs) -> list[str]:
    """The shards of ``folder`` (data/std/<source>, data/clean/<source>, ...) that a group job's
    per-shard outputs stand for: the same file names, in the outputs' order."""
    return [f"{folder}/{Path(str(o)).name}" for o in outputs]


def write_markers(markers, counts: dict) -> None:
    """Leave a group job's marker (temporary: it goes once the jobs of its group have run)."""
    for marker in markers:
        with open(marker, "w") as f:
            f.write(f"{counts}\n")
