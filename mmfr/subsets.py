"""Subsets: declarative filters over verified records and pass rates, written as datasets that
``datasets.load_dataset(<dir>)`` reads, with a dataset card.

The RL set is a seeded uniform draw held out of every SFT subset. Membership is decided per
sample (a hash of global seed and sample id below a threshold), so adding a source or resharding
never moves a sample already there in or out of the RL set.
"""

from __future__ import annotations

import json
import logging
import os

import duckdb
import pyarrow as pa

from mmfr import schema
from mmfr.schema import SUBSET

log = logging.getLogger(__name__)

_SCALE = 2**60


def in_rl(seed: int, sample_id: str, fraction: float) -> bool:
    return schema.seed_for(seed, "rl", sample_id) % _SCALE < fraction * _SCALE


def candidates(records: list[str], captions: list[str], verified: list[str], passrates: list[str]) -> duckdb.DuckDBPyConnection:
    """A connection with a view ``pool``: every verified-correct record with caption, trace and pass rate."""
    con = duckdb.connect()
    con.execute("SET threads TO 1")  # deterministic and light; the data are read once
    for name, paths in (("rec", records), ("cap", captions), ("ver", verified), ("pr", passrates)):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({paths!r})")
    cols = ", ".join(f"s.{n}" for n, _ in schema.RECORD_FIELDS)
    con.execute(f"""
        CREATE VIEW pool AS
        SELECT {cols}, c.caption, v.response, v.verdict, v.decided_by, v.cot_tokens, p.pass_rate
        FROM rec s
        JOIN ver v ON v.id = s.id AND v.verdict = 'correct'
        LEFT JOIN cap c ON c.id = s.id
        LEFT JOIN pr p ON p.id = s.id
    """)
    return con


_SQL_TYPES = {pa.string(): "VARCHAR", pa.binary(): "BLOB", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
              pa.bool_(): "BOOLEAN"}


def _sql_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_list(arrow_type):
        return _sql_type(arrow_type.value_type) + "[]"
    if pa.types.is_struct(arrow_type):
        return f"STRUCT({', '.join(f'{f.name} {_sql_type(f.type)}' for f in arrow_type)})"
    return _SQL_TYPES[arrow_type]


def check_where(*wheres: str) -> list[str | None]:
    """Why each ``where`` is not a valid subset filter (unknown column, syntax), or None: each is
    bound against an empty table with the columns a subset selects from (one connection for all:
    the build's parse pays for it)."""
    con = duckdb.connect(config={"threads": 1})
    # the table made in SQL: registering an Arrow table would import pyarrow.dataset (0.4 s a parse)
    con.execute(f"CREATE TABLE empty ({', '.join(f'{f.name} {_sql_type(f.type)}' for f in SUBSET)})")
    con.create_function("in_rl", lambda i: False, [str], bool, side_effects=False)
    problems = []
    try:
        for where in wheres:
            try:
                con.execute(f"SELECT * FROM empty WHERE NOT in_rl(id) AND ({where}) LIMIT 0")
                problems.append(None)
            except duckdb.Error as e:
                problems.append(str(e).splitlines()[0])
    finally:
        con.close()
    return problems


def build(inputs: dict, out_dir: str, spec: dict, rl: dict, seed: int, shard_rows: int = 5000) -> int:
    """Write subset ``spec`` (name, where | kind: rl) to ``out_dir``; returns its row count."""
    con = candidates(inputs["records"], inputs["captions"], inputs["verified"], inputs["passrates"])
    con.create_function("in_rl", lambda i: in_rl(seed, i, rl["fraction"]), [str], bool, side_effects=False)
    if spec.get("kind") == "rl":
        where = "in_rl(id)"
    else:
        where = f"NOT in_rl(id) AND ({spec.get('where', 'true')})"
    try:
        table = con.execute(f"SELECT * FROM pool WHERE {where} ORDER BY source, id").to_arrow_table()
    except duckdb.Error as e:
        raise ValueError(f"subsets.{spec['name']}.where: {spec.get('where')!r} is not a valid filter: {e}") from None
    table = table.cast(SUBSET)
    n_files = schema.write_dataset(table, out_dir, shard_rows)
    composition = con.execute(
        f"SELECT source, count(*) n, avg(pass_rate) mean_pass_rate, avg(cot_tokens) mean_cot_tokens "
        f"FROM pool WHERE {where} GROUP BY source ORDER BY source").fetchall()
    write_card(out_dir, spec, rl, seed, table.num_rows, composition)
    log.info("subset %s: %d rows in %d files", spec["name"], table.num_rows, n_files)
    return table.num_rows


def write_card(out_dir: str, spec: dict, rl: dict, seed: int, n: int, composition: list) -> None:
    rule = "a seeded uniform draw" if spec.get("kind") == "rl" else f"`{spec.get('where', 'true')}`"
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train-*.parquet",
        "---",
        f"# {spec['name']}",
        "",
        f"{n} samples built by mmfr. Every sample's teacher trace verified correct against the ground truth.",
        f"Selection: {rule}; RL hold-out fraction {rl['fraction']} (seed {seed}), "
        + ("this set *is* the hold-out." if spec.get("kind") == "rl" else "held out of this set."),
        "",
        "Columns: the canonical record (`source`, `id`, `original_question`, `original_answer`, `image`, `question`,",
        "`answer`, ...), `caption` (instruct teacher), `response` (thinking teacher: <think>…</think><answer>…</answer>),",
        "`verdict` and `decided_by` (verification step), `cot_tokens`, `pass_rate` (proxy model, k samples).",
        "",
        "| source | samples | mean pass rate | mean CoT tokens |",
        "|---|---|---|---|",
    ]
    for source, count, pr, tok in composition:
        lines.append(f"| {source} | {count} | {_fmt(pr)} | {_fmt(tok)} |")
    lines += ["", "Selection spec:", "```json", json.dumps(spec, sort_keys=True), "```", ""]
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def _fmt(x) -> str:
    return "" if x is None else f"{x:.3f}"
