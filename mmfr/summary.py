"""``results/summary.duckdb``: every stage's counts, rejects, token statistics, pass rates,
subset composition, training curves, scores and the provenance of every artifact."""

from __future__ import annotations

import json
import logging
import os

import duckdb

from mmfr import provenance

log = logging.getLogger(__name__)


def _parquet(paths: list[str]) -> str:
    return f"read_parquet({sorted(paths)!r}, union_by_name = true)"


def build_summary(inputs: dict[str, list[str]], out: str, sources: list[dict]) -> None:
    if os.path.exists(out):
        os.remove(out)
    con = duckdb.connect(out)
    con.execute("SET threads TO 1")
    con.execute("CREATE TABLE source_config (source VARCHAR, kind VARCHAR, domain VARCHAR, license VARCHAR, "
                "hf_id VARCHAR, revision VARCHAR, shards INTEGER, paper_raw BIGINT, expected BIGINT)")
    con.executemany("INSERT INTO source_config VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(s["name"], s["kind"], s["domain"], s.get("license"), s.get("hf_id"), s.get("revision"),
                      s.get("shards", 1), s.get("paper_raw"), s.get("expected")) for s in sources])
    dropped, rec, cap, tr, ver, pr = (_parquet(inputs[k]) for k in
                                      ("dropped", "records", "captions", "traces", "verified", "passrates"))
    # the expansions proper (Long Grounded Thoughts): rows of expanded traces whose short trace finished
    ex = (f"(SELECT e.* FROM {_parquet(inputs['expanded'])} e JOIN {tr} t USING (id, sample_index) "
          "WHERE t.finish_reason = 'stop')") if inputs.get("expanded") else None
    _accounting(con, inputs["counts"], dropped, rec)
    con.execute(f"""CREATE TABLE stage_counts AS
        SELECT 'raw' stage, source, raw n FROM accounting
        UNION ALL SELECT 'kept', source, count(*) FROM {rec} GROUP BY source
        UNION ALL SELECT 'captioned', source, count(*) FROM {cap} WHERE finish_reason = 'stop' GROUP BY source
        UNION ALL SELECT 'traced', source, count(*) FROM {tr} WHERE finish_reason = 'stop' GROUP BY source
        {f"UNION ALL SELECT 'expanded', source, count(*) FROM {ex} WHERE finish_reason = 'stop' GROUP BY source"
         if ex else ""}
        UNION ALL SELECT 'verified_correct', source, count(*) FROM {ver} WHERE verdict = 'correct' GROUP BY source
        UNION ALL SELECT 'pass_rated', source, count(*) FROM {pr} GROUP BY source
        ORDER BY stage, source""")
    con.execute(f"""CREATE TABLE cleaning AS SELECT source, clean_status, answer_from, answer_type, count(*) n
        FROM {rec} GROUP BY ALL ORDER BY ALL""")
    # every model call by outcome: stop, length (hit max tokens), empty, error; none counts as an answer
    ev = _parquet(inputs["eval_items"]) if inputs["eval_items"] else None
    con.execute(f"""CREATE TABLE generation_outcomes AS
        SELECT 'caption' kind, source, finish_reason, count(*) n FROM {cap} GROUP BY ALL
        UNION ALL SELECT 'trace', source, finish_reason, count(*) FROM {tr} GROUP BY ALL
        {f"UNION ALL SELECT 'expand', source, finish_reason, count(*) FROM {ex} GROUP BY ALL" if ex else ""}
        UNION ALL SELECT 'clean', source, CASE WHEN clean_status IN ('cleaned', 'unchanged') THEN 'stop'
               ELSE replace(clean_status, 'failed:', '') END, count(*) FROM {rec} GROUP BY ALL
        UNION ALL SELECT 'pass_rate', source, unnest(['stop', 'length', 'error']),
               unnest([sum(k - n_truncated - n_error), sum(n_truncated), sum(n_error)]) FROM {pr} GROUP BY source
        {f"UNION ALL SELECT 'evaluate', benchmark, finish_reason, count(*) FROM {ev} GROUP BY ALL" if ev else ""}
        ORDER BY ALL""")
    con.execute(f"""CREATE TABLE verdicts AS SELECT source, verdict, decided_by, count(*) n
        FROM {ver} GROUP BY ALL ORDER BY ALL""")
    con.execute(f"""CREATE TABLE token_stats AS
        WITH t AS (SELECT source, cot_tokens, caption_tokens FROM {ver} WHERE verdict = 'correct')
        SELECT kind, source, count(*) n, avg(v) mean, median(v) median, quantile_cont(v, 0.95) p95,
               max(v) max, sum(v) total
        FROM (SELECT 'cot' kind, source, cot_tokens v FROM t
              UNION ALL SELECT 'caption', source, caption_tokens FROM t
              UNION ALL SELECT 'cot', '(all)', cot_tokens FROM t
              UNION ALL SELECT 'caption', '(all)', caption_tokens FROM t)
        GROUP BY kind, source ORDER BY kind, source""")
    # the histogram behind token_stats: how many verified traces have each length
    con.execute(f"""CREATE TABLE token_lengths AS
        WITH t AS (SELECT source, cot_tokens, caption_tokens FROM {ver} WHERE verdict = 'correct')
        SELECT kind, source, v tokens, count(*) n
        FROM (SELECT 'cot' kind, source, cot_tokens v FROM t UNION ALL SELECT 'caption', source, caption_tokens FROM t)
        GROUP BY ALL ORDER BY ALL""")
    con.execute(f"""CREATE TABLE pass_rates AS SELECT source, pass_rate, count(*) n
        FROM {pr} GROUP BY ALL ORDER BY ALL""")
    con.execute("""CREATE TABLE sources AS
        SELECT c.source, c.expected, a.raw, a.kept, coalesce(v.n, 0) verified_correct,
               round(coalesce(v.n, 0) / c.expected, 3) verified_vs_expected
        FROM source_config c
        LEFT JOIN accounting a USING (source)
        LEFT JOIN (SELECT source, n FROM stage_counts WHERE stage = 'verified_correct') v USING (source)
        ORDER BY c.source""")
    subset_rows = []
    for d in inputs["subsets"]:
        files = sorted(os.path.join(d, "data", f) for f in os.listdir(os.path.join(d, "data")))
        name = os.path.basename(d.rstrip("/"))
        subset_rows += [(name, *r) for r in con.execute(
            f"SELECT source, domain, count(*), avg(pass_rate), avg(cot_tokens) FROM {_parquet(files)} "
            "GROUP BY ALL ORDER BY ALL").fetchall()]
    con.execute("CREATE TABLE subsets (subset VARCHAR, source VARCHAR, domain VARCHAR, n BIGINT, "
                "mean_pass_rate DOUBLE, mean_cot_tokens DOUBLE)")
    if subset_rows:
        con.executemany("INSERT INTO subsets VALUES (?, ?, ?, ?, ?, ?)", subset_rows)
    _scores(con, inputs["eval_items"])
    _training(con, inputs["models"])
    if inputs.get("compare"):  # the build beside a release (mmfr.release.compare)
        con.execute(f"ATTACH '{inputs['compare'][0]}' AS cmp (READ_ONLY)")
        for table in ("release_sources", "release_subsets"):
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM cmp.{table}")
        con.execute("DETACH cmp")
    _provenance(con, [p for k, paths in inputs.items() for p in paths])
    con.close()
    log.info("summary written to %s", out)


def _accounting(con, counts_paths: list[str], dropped: str, records: str) -> None:
    """Per source: raw = kept + quarantined + excluded + duplicate + contaminated (``balanced``
    says it holds), the reasons behind each category, and the paper's count beside ours."""
    raw = []
    for path in counts_paths:
        with open(path) as f:
            c = json.load(f)
        raw.append((c["source"], c["raw"]))
    con.execute("CREATE TABLE raw_counts (source VARCHAR, raw BIGINT)")
    con.executemany("INSERT INTO raw_counts VALUES (?, ?)", raw)
    con.execute(f"""CREATE TABLE drop_reasons AS SELECT source, category, reason, count(*) n
        FROM {dropped} GROUP BY ALL ORDER BY ALL""")
    con.execute(f"""CREATE TABLE accounting AS
        WITH d AS (PIVOT (SELECT source, category, n FROM drop_reasons) ON category
                   IN ('quarantined', 'excluded', 'duplicate', 'contaminated') USING sum(n)),
             k AS (SELECT source, count(*) kept FROM {records} GROUP BY source)
        SELECT r.source, r.raw, coalesce(k.kept, 0) kept,
               coalesce(d.quarantined, 0)::BIGINT quarantined, coalesce(d.excluded, 0)::BIGINT excluded,
               coalesce(d.duplicate, 0)::BIGINT duplicate, coalesce(d.contaminated, 0)::BIGINT contaminated,
               c.paper_raw, c.expected
        FROM raw_counts r JOIN source_config c USING (source)
        LEFT JOIN k USING (source) LEFT JOIN d USING (source) ORDER BY r.source""")
    con.execute("""ALTER TABLE accounting ADD COLUMN balanced BOOLEAN""")
    con.execute("""UPDATE accounting SET balanced = raw = kept + quarantined + excluded + duplicate + contaminated""")
    off = con.execute("SELECT source FROM accounting WHERE NOT balanced").fetchall()
    if off:
        log.error("accounting does not add up for %s: see the accounting table", [s for s, in off])


def _scores(con, items: list[str]) -> None:
    """Score per benchmark (and category) and model: the share of right units, a unit being an item
    or, for a worst-case benchmark, a group of variants (ITEMS.group); with how many items the
    judge decided and how many nobody could (undecided, judge_error)."""
    con.execute("CREATE TABLE scores (model VARCHAR, subset VARCHAR, size VARCHAR, stage VARCHAR, "
                "benchmark VARCHAR, category VARCHAR, accuracy DOUBLE, n BIGINT, judged BIGINT, undecided BIGINT)")
    for path in items:
        model = os.path.dirname(path).removeprefix("results/scores/")
        parts = model.split("/")
        subset, size, stage = (None, parts[1], "base") if parts[0] == "base" else parts
        rows = con.execute(
            f"""WITH units AS (SELECT benchmark, category, "group", bool_and(correct) AS ok,
                                      count_if(decided_by = 'judge') AS judged,
                                      count_if(verdict IN ('undecided', 'judge_error')) AS undecided
                               FROM read_parquet('{path}') GROUP BY ALL)
                SELECT benchmark, category, 100 * avg(ok::INT), count(*), sum(judged), sum(undecided) FROM units
                GROUP BY GROUPING SETS ((benchmark, category), (benchmark)) ORDER BY ALL""").fetchall()
        overall = _benchmark_scores(path)
        con.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(model, subset, size, stage, b, "(all)" if c is None else c,
                          *(overall.get(b, (a, n)) if c is None else (a, n)), j, u) for b, c, a, n, j, u in rows])


def _benchmark_scores(path: str) -> dict[str, tuple[float, int]]:
    """{benchmark: (score in percent, units)} of a per-item file, by the benchmark's own protocol
    (WeMath's score is not a share of right units)."""
    import pyarrow.parquet as pq

    from mmfr.benchmarks import aggregate, PROTOCOLS

    rows = pq.read_table(path).to_pylist()
    out = {}
    for bench in {r["benchmark"] for r in rows}:
        mine = [r for r in rows if r["benchmark"] == bench]
        protocol = PROTOCOLS.get(str(mine[0].get("protocol") or "generic").split("/")[0], PROTOCOLS["generic"])
        units, correct = aggregate(protocol, mine)
        out[bench] = (100 * correct / max(1, units), units)
    return out


def _training(con, model_dirs: list[str]) -> None:
    # reward: GSPO's mean reward; reward_margin: DPO's implicit reward of chosen over rejected
    con.execute("CREATE TABLE training (model VARCHAR, step BIGINT, loss DOUBLE, reward DOUBLE, "
                "learning_rate DOUBLE, reward_margin DOUBLE)")
    for d in model_dirs:
        path = os.path.join(d, "metrics.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            metrics = json.load(f)
        rows = [(d.removeprefix("models/"), h.get("step"), h.get("loss"), h.get("reward"), h.get("learning_rate"),
                 h.get("rewards/margins")) for h in metrics.get("log", []) if "loss" in h]
        if rows:
            con.executemany("INSERT INTO training VALUES (?, ?, ?, ?, ?, ?)", rows)


def _provenance(con, artifacts: list[str]) -> None:
    con.execute("CREATE TABLE provenance (artifact VARCHAR, sha256 VARCHAR, rule VARCHAR, rows BIGINT, "
                "started DOUBLE, finished DOUBLE, host VARCHAR, slurm_job_id VARCHAR, git_commit VARCHAR, "
                "mmfr_sha256 VARCHAR, params JSON, inputs JSON, record JSON)")
    rows = []
    for artifact in sorted(set(artifacts)):
        path = provenance.record_path(artifact)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            r = json.load(f)
        rows.append((r["artifact"], r["sha256"], r["rule"], r.get("rows"), r["started"], r["finished"],
                     r["hardware"]["host"], r["hardware"].get("slurm_job_id"), r["code"]["git_commit"],
                     r["code"]["mmfr_sha256"], json.dumps(r["params"]), json.dumps(r["inputs"]), json.dumps(r)))
    if rows:
        con.executemany("INSERT INTO provenance VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
