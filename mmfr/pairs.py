"""Preference pairs for DPO (the Long Grounded Thoughts recipe): for each question of a subset, a
trace the verification step judged correct (chosen) against one it judged wrong (rejected).

Chosen traces are the subset's own rows, so whatever the subset's filter keeps (pass rate, trace
length) holds for them. Rejected traces are the question's other traces in ``data/verified/`` with
verdict ``wrong`` that ran to their end (``finish_reason = 'stop'``): an answer that is wrong, not
a trace cut off at its token budget or one that broke the template (verdict ``rejected``), which
would teach the student to prefer shorter or well-formed text rather than right answers. With
several traces per question (``annotate.traces_per_sample``) a question gives up to
``per_question`` pairs: the i-th chosen (in a seeded order) with the i-th rejected (by sample index).
Questions the teacher always or never answered right give none; the card counts them.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter

import duckdb
import pyarrow as pa

from mmfr import schema

log = logging.getLogger(__name__)

PROMPT_FIELDS = ["source", "id", "question", "choices", "image", "answer", "answer_type", "domain"]
_FIELDS = [*((n, schema.RECORD.field(n).type) for n in PROMPT_FIELDS),
           ("chosen", pa.string()), ("rejected", pa.string()),
           ("rejected_index", pa.int64()),  # the rejected trace's sample_index in data/verified/
           ("rejected_decided_by", pa.string())]  # how verification found it wrong
PAIRS = pa.schema(_FIELDS, metadata=schema.hf_features_metadata(_FIELDS))  # image read as an Image feature


def build(subset_dir: str, verified: list[str], out_dir: str, spec: dict, seed: int, shard_rows: int = 5000) -> dict:
    """Write the pairs of the subset at ``subset_dir`` to ``out_dir`` (``data/train-*.parquet`` and a
    card); ``spec``: ``per_question`` (at least 1). Returns the counts the card gives."""
    per_question = int(spec.get("per_question", 1))
    if per_question < 1:
        raise ValueError(f"selection.pairs.per_question must be at least 1, not {per_question}")
    con = duckdb.connect()
    con.execute("SET threads TO 1")  # deterministic and light
    con.execute(f"CREATE VIEW sub AS SELECT * FROM read_parquet('{subset_dir}/data/*.parquet')")
    con.execute(f"CREATE VIEW ver AS SELECT * FROM read_parquet({list(verified)!r})")
    fields = ", ".join(f"c.{n}" for n in PROMPT_FIELDS)
    query = f"""
        WITH chosen AS (
            SELECT *, row_number() OVER (PARTITION BY id ORDER BY md5(concat(?, id, response))) AS k FROM sub),
        rejected AS (
            SELECT id, response, sample_index, decided_by,
                   row_number() OVER (PARTITION BY id ORDER BY sample_index) AS k
            FROM ver WHERE verdict = 'wrong' AND finish_reason = 'stop'
              AND id IN (SELECT id FROM sub))
        SELECT {fields}, c.response AS chosen, r.response AS rejected, r.sample_index AS rejected_index,
               r.decided_by AS rejected_decided_by
        FROM chosen c JOIN rejected r ON r.id = c.id AND r.k = c.k
        WHERE c.k <= ?
        ORDER BY c.source, c.id, c.k"""
    table = con.sql(query, params=[str(seed), per_question]).to_arrow_table().cast(PAIRS)
    counts = {
        "questions": con.execute("SELECT count(DISTINCT id) FROM sub").fetchone()[0],
        "questions_with_pairs": len(set(table.column("id").to_pylist())),
        "pairs": table.num_rows,
        "per_question": per_question,
        "by_source": dict(sorted(Counter(table.column("source").to_pylist()).items())),
    }
    schema.write_dataset(table, out_dir, shard_rows)
    _write_card(out_dir, os.path.basename(os.path.normpath(subset_dir)), counts)
    log.info("pairs of %s: %d pairs over %d of %d questions", subset_dir, counts["pairs"],
             counts["questions_with_pairs"], counts["questions"])
    return counts


def _write_card(out_dir: str, subset: str, counts: dict) -> None:
    lines = [
        "---", "configs:", "- config_name: default", "  data_files:", "  - split: train",
        "    path: data/train-*.parquet", "---",
        f"# {subset} preference pairs",
        "",
        f"{counts['pairs']} pairs over {counts['questions_with_pairs']} of the {counts['questions']} questions of "
        f"subset `{subset}` (at most {counts['per_question']} per question), built by mmfr for DPO.",
        "`chosen`: a teacher trace verified correct (a row of the subset); `rejected`: a trace of the same",
        "question verified wrong that ran to its end. A question whose traces were all right, or all wrong,",
        "gives no pair.",
        "",
        "| source | pairs |", "|---|---|",
        *(f"| {s} | {n} |" for s, n in counts["by_source"].items()),
        "", "```json", json.dumps(counts, sort_keys=True), "```", "",
    ]
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))
