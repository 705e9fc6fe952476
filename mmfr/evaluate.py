"""Evaluation: a model answers each benchmark item through the generation interface (greedy by
default) and the same verification chain scores it."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import schema
from mmfr.generate import group_job, ModelRole
from mmfr.schema import ITEMS
from mmfr.student import ask, unfinished
from mmfr.verify import verify_response, VerifyConfig

log = logging.getLogger(__name__)


def category(metadata: str) -> str:
    meta = json.loads(metadata or "{}")
    return str(meta.get("family") or meta.get("category") or meta.get("subject") or "all")


def evaluate(bench: str, name: str, out: str, model: dict | ModelRole, seed: int, journal: str | None = None,
             score_truncated: bool = False) -> float:
    """Score ``model`` on benchmark file ``bench``; writes one row per item; returns accuracy.
    A response cut at max tokens or empty is wrong (verdict 'truncated'/'empty'), unless
    ``score_truncated``: then whatever answer it holds is checked like any other."""
    records = pq.read_table(bench).to_pylist()
    reqs, resps = ask(records, ModelRole.from_config(model, "evaluate.generation"), 1, seed, f"eval/{name}", journal)
    cfg = VerifyConfig(require_template=False)
    rows = []
    for rec, resp in zip(records, resps):
        if resp.finish_reason == "error":
            raise RuntimeError(f"{name}: generation failed for item {rec['id']}: {resp.error}")
        v = unfinished(resp.finish_reason, score_truncated) or verify_response(
            resp.text, rec["answer"], rec["answer_type"], rec["choices"], cfg)
        rows.append({"id": rec["id"], "benchmark": name, "category": category(rec["metadata"]),
                     "answer": rec["answer"], "response": resp.text, "finish_reason": resp.finish_reason,
                     "extracted": v["extracted"], "extract_method": v["extract_method"],
                     "verdict": v["verdict"], "decided_by": v["decided_by"], "correct": v["verdict"] == "correct"})
    rows.sort(key=lambda r: r["id"])
    schema.write_table(pa.Table.from_pylist(rows, schema=ITEMS), out)
    accuracy = sum(r["correct"] for r in rows) / max(1, len(rows))
    log.info("%s: accuracy %.4f on %d items", name, accuracy, len(rows))
    return accuracy


def answer_group(benches: list[str], names: list[str], journals: list[str], model: dict | ModelRole,
                 seed: int) -> dict:
    """A model's answers to several benchmarks in one job, with one load of the model: they go to
    each benchmark's journal (``journals[i]`` for ``benches[i]``), where ``evaluate`` finds and
    scores them."""
    role = ModelRole.from_config(model, "evaluate.generation")

    def run(part, loaded):
        bench, name, journal = part
        return ask(pq.read_table(bench).to_pylist(), role, 1, seed, f"eval/{name}", journal, loaded=loaded)[1]

    return group_job(list(zip(benches, names, journals)), run)


def score_table(items: dict[str, list[str]], out: str, paper: dict[str, float] | None = None) -> list[dict]:
    """Accuracy (percent) per benchmark and stage from per-item files, beside the paper's figures.

    ``items`` maps a stage name (base, sft, gspo) to its per-item files; writes a TSV."""
    import duckdb

    con = duckdb.connect()
    parts = [f"SELECT '{stage}' AS stage, * FROM read_parquet({paths!r})" for stage, paths in items.items()]
    rows = con.execute(
        f"SELECT benchmark, stage, round(100 * avg(correct::INT), 2) AS accuracy, count(*) AS n "
        f"FROM ({' UNION ALL '.join(parts)}) GROUP BY benchmark, stage ORDER BY benchmark, stage").fetchall()
    stages = list(items)
    table: dict[str, dict] = {}
    for bench, stage, acc, n in rows:
        table.setdefault(bench, {"benchmark": bench, "n": n})[stage] = acc
    result = list(table.values())
    if result:
        avg = {"benchmark": "Average", "n": sum(r["n"] for r in result)}
        for s in stages:
            vals = [r[s] for r in result if s in r]
            avg[s] = round(sum(vals) / len(vals), 2) if vals else None
        result.append(avg)
    with open(out, "w") as f:
        f.write("\t".join(["benchmark", "n", *stages, "paper"]) + "\n")
        for r in result:
            ref = (paper or {}).get(r["benchmark"])
            f.write("\t".join(str(x) for x in [r["benchmark"], r["n"], *[r.get(s, "") for s in stages],
                                               "" if ref is None else ref]) + "\n")
    return result
