"""``mmfr audit TARGET``: walk an artifact's lineage back to the raw sources and check every step.

For each artifact on the way (the target, its inputs, their inputs, ...) it recomputes the content
hash and compares it with the provenance record, checks that every input still has the hash the
artifact was built from, and notes artifacts built by other code than the installed ``mmfr``.
Params that no longer match the config are found by Snakemake itself (the status column of
``snakemake --summary``), which the CLI runs when given the config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from mmfr import provenance
from mmfr.generate import check_lines
from mmfr.snake import journals_of

# what a finding means, most serious first
PROBLEMS = {
    "missing": "the artifact is gone",
    "content": "its content no longer matches its provenance record (changed after it was built)",
    "no_record": "it has no provenance record (not built by this workflow, or the record was removed)",
    "stale_input": "an input changed after this artifact was built from it",
    "journal": "the journal of model responses it was built from changed after it was built",
    "params": "the config now gives its rule other params",
    "code": "it was built by another version of the mmfr code",
}


@dataclass(frozen=True)
class Finding:
    artifact: str
    problem: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.problem:12s} {self.artifact}  {self.detail or PROBLEMS[self.problem]}"


def lineage(target: str) -> list[str]:
    """The target and everything it was built from, by provenance records, target first."""
    order, seen, stack = [], set(), [target.rstrip("/")]
    while stack:
        artifact = stack.pop()
        if artifact in seen:
            continue
        seen.add(artifact)
        order.append(artifact)
        record = _record(artifact)
        if record:
            stack.extend(sorted(record["inputs"], reverse=True))
    return order


def audit(target: str, params_changed: set[str] = frozenset(), check_code: bool = True) -> tuple[list[str], list[Finding]]:
    """(the lineage walked, the findings). Hashes are computed once per artifact."""
    walked = lineage(target)
    current: dict[str, str | None] = {}

    def sha(path: str) -> str | None:
        if path not in current:
            current[path] = provenance.artifact_sha256(path) if os.path.exists(path) else None
        return current[path]

    code = provenance.code_version()["mmfr_sha256"]
    findings = []
    for artifact in walked:
        record = _record(artifact)
        if sha(artifact) is None:
            findings.append(Finding(artifact, "missing"))
            continue
        if record is None:
            findings.append(Finding(artifact, "no_record"))
            continue
        if sha(artifact) != record["sha256"]:
            findings.append(Finding(artifact, "content", f"sha256 {sha(artifact)[:12]} != recorded "
                                                         f"{record['sha256'][:12]} (rule {record['rule']})"))
        for path, recorded in sorted(record["inputs"].items()):
            now = sha(path)
            if now != recorded:
                findings.append(Finding(artifact, "stale_input", f"input {path} is now "
                                        f"{now[:12] if now else 'missing'}, was {recorded[:12]}"))
        for sealed in record.get("journals", []):
            findings.extend(Finding(artifact, "journal", d) for d in journal_problems(sealed))
        if artifact in params_changed:
            findings.append(Finding(artifact, "params"))
        if check_code and record["code"]["mmfr_sha256"] != code:
            findings.append(Finding(artifact, "code", f"built at commit {record['code'].get('git_commit') or '?'}"))
    order = list(PROBLEMS)
    findings.sort(key=lambda f: (order.index(f.problem), f.artifact))
    return walked, findings


def chain(target: str) -> list[str]:
    """The target's lineage, target first, as lines a person reads: each artifact with the rule (and
    wildcards) that built it, the model blocks among its params, the journals of model responses it
    was built from, and the jobs that generated those responses (rule, host, SLURM job, GPUs)."""
    lines = []
    for artifact in lineage(target):
        record = _record(artifact)
        if record is None:
            lines.append(f"{artifact}  (no provenance record)")
            continue
        wildcards = " ".join(f"{k}={v}" for k, v in sorted(record.get("wildcards", {}).items()))
        lines.append(f"{artifact}  <- rule {record['rule']}{' ' + wildcards if wildcards else ''}")
        for name, value in sorted(record.get("params", {}).items()):
            if isinstance(value, dict) and "backend" in value:
                model = value.get("model") or artifact_model(record) or "the checkpoint in its inputs"
                key = (_record(model) or {}).get("model_sha256")  # a checkpoint of this build: its content key
                revision = f"@{value['revision']}" if value.get("revision") else (f"@sha256:{key[:12]}" if key else "")
                lines.append(f"    model ({name}): {value['backend']} {model}{revision}")
        for sealed in record.get("journals", []):
            lines.append(f"    journal {sealed['path']}: {sealed['lines']} responses, sha256 {sealed['sha256'][:12]}")
        for job in record.get("generated_by", []):
            hw = job.get("hardware") or {}
            where = f" on {hw['host']}" if hw.get("host") else ""
            slurm = f", SLURM job {hw['slurm_job_id']}" if hw.get("slurm_job_id") else ""
            gpus = f", GPUs {', '.join(hw['gpus'])}" if hw.get("gpus") else ""
            which = " ".join(f"{k}={v}" for k, v in sorted((job.get("wildcards") or {}).items()))
            lines.append(f"    generated by rule {job.get('rule')}{' ' + which if which else ''}{where}{slurm}{gpus}")
    return lines


def artifact_model(record: dict) -> str | None:
    """The checkpoint among a record's inputs (``models/...``), for a block that takes it from there."""
    return next((p for p in sorted(record.get("inputs", {})) if p.startswith("models/")), None)


def journal_problems(sealed: dict) -> list[str]:
    """What is wrong with a journal an artifact was built from (``sealed`` as its provenance record
    has it): gone, cut short, its sealed bytes changed, or lines that fail their own sha256."""
    path = sealed["path"]
    if not os.path.exists(path):
        return [f"journal {path} is gone"]
    problems = []
    now = provenance.prefix_sha256(path, sealed["bytes"])
    if now is None:
        problems.append(f"journal {path} is shorter than the {sealed['bytes']} bytes it was built from")
    elif now != sealed["sha256"]:
        problems.append(f"journal {path}: its first {sealed['bytes']} bytes changed after this artifact was "
                        f"built from them")
    bad = check_lines(path)
    problems += [f"journal {path} line {n}: {why}" for n, why in bad[:5]]
    if len(bad) > 5:
        problems.append(f"journal {path}: {len(bad) - 5} more bad lines")
    return problems


def params_changed(summary: str) -> set[str]:
    """The outputs whose status in ``snakemake --summary`` is "params changed". (Not ``--list-changes
    params``: Snakemake 9.27 lists there every output with recorded params, changed or not.)"""
    return {r["output_file"] for r in summary_rows(summary) if r["status"] == "params changed"}


def summary_rows(summary: str) -> list[dict]:
    """The rows of ``snakemake --summary`` (output_file, date, rule, log-file(s), status, plan)."""
    lines = summary.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("output_file\t")), None)
    if start is None:
        raise ValueError("no `snakemake --summary` table (its header begins with output_file)")
    columns = lines[start].split("\t")
    rows = [line.split("\t") for line in lines[start + 1:]]
    return [dict(zip(columns, r)) for r in rows if len(r) == len(columns)]


def build_files(summary: str) -> list[str]:
    """Every file a graph's outputs leave: each output, its logs, its provenance record, the journal
    of model responses (and its index) it was built from, and a training job's checkpoints."""

    files = []
    for row in summary_rows(summary):
        out = row["output_file"]
        logs = [p.strip() for p in row.get("log-file(s)", "").split(",") if p.strip() and p.strip() != "-"]
        # a group job's marker has none: the journals it fills are those of its shards' outputs
        journals = [] if out.endswith((".generated", ".judged")) else journals_of(out)
        files += [out, *logs, provenance.record_path(out), *[f for j in journals for f in (j, j + ".idx")],
                  provenance.checkpoint_dir(out)]
    return list(dict.fromkeys(files))


def _record(artifact: str) -> dict | None:
    path = provenance.record_path(artifact)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def report(target: str, walked: list[str], findings: list[Finding]) -> str:
    lines = [f"audit of {target}: {len(walked)} artifacts in its lineage, {len(findings)} findings"]
    lines += [f"  {f}" for f in findings]
    if not findings:
        lines.append("  every artifact matches its provenance record, and every input the hash it was built from")
    return "\n".join(lines)
