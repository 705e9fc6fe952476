"""The clean step: dedup drops applied, questions cleaned or flagged, answers extracted, all cached."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import schema
from mmfr.clean import CLEAN, clean_shard, parse_cleaned, parse_extracted
from mmfr.sources import ImagePolicy, to_canonical
from test_sources import row

SCRIPTED = {"backend": "scripted", "model": "mmfr-scripted", "revision": "v1"}
DROPS = pa.schema([("source", pa.string()), ("id", pa.string()), ("original_id", pa.string()),
                   ("category", pa.string()), ("reason", pa.string()), ("matched_source", pa.string()),
                   ("matched_id", pa.string()), ("distance", pa.int32()), ("question", pa.string())])


def test_parsers_are_strict():
    assert parse_cleaned("STATUS: OK\nQUESTION:\nHow many?") == ("OK", "How many?")
    assert parse_cleaned("STATUS: UNANSWERABLE\nQUESTION:\n") == ("UNANSWERABLE", "")
    assert parse_cleaned("Sure! Here is the question: How many?") is None
    assert parse_cleaned("STATUS: OK\nQUESTION:\n   ") is None
    assert parse_extracted("The solution says 7.\nANSWER: 7") == "7"
    assert parse_extracted("ANSWER: $\\frac{1}{2}$") == "\\frac{1}{2}"
    assert parse_extracted("ANSWER: NONE") is None and parse_extracted("no answer line") is None


def write_shard(path, rows):
    recs = [to_canonical(r, "src", "CC0-1.0", ImagePolicy()) for r in rows]
    schema.write_table(pa.Table.from_pylist(recs, schema=schema.RECORD), str(path))
    return recs


def test_clean_shard(tmp_path):
    recs = write_shard(tmp_path / "std.parquet", [
        row("plain", question="How many red circles are there?"),
        row("noisy", question="Question 4: How many squares?<br> Answer directly with a single number."),
        row("unanswerable", question="Using the table on the previous page, what is the total?"),
        row("solution", question="What is 3 + 4?", answer=None, solution="Three and four. So we get 7."),
        row("hopeless", question="Which colour?", answer=None, solution="It is the colour of the sky.",
            answer_type="text"),
        row("leaked", question="How many triangles are in the figure shown?"),
    ])
    leaked = next(r for r in recs if r["original_id"] == "leaked")
    drops = tmp_path / "drops.parquet"
    pq.write_table(pa.Table.from_pylist([{"source": "src", "id": leaked["id"], "original_id": "leaked",
                                          "category": "contaminated", "reason": "bench_question",
                                          "matched_source": "mathvista", "matched_id": "17", "distance": None,
                                          "question": leaked["question"]}], schema=DROPS), drops)
    journal = str(tmp_path / "journal.jsonl")
    counts = clean_shard(str(tmp_path / "std.parquet"), str(drops), str(tmp_path / "out.parquet"),
                         str(tmp_path / "dropped.parquet"), SCRIPTED, SCRIPTED, 0, journal)
    out = {r["original_id"]: r for r in pq.read_table(tmp_path / "out.parquet").to_pylist()}
    assert pq.read_schema(tmp_path / "out.parquet").names == CLEAN.names
    assert set(out) == {"plain", "noisy", "solution"}
    assert out["noisy"]["question"] == "How many squares? Work it out step by step, then state the final answer."
    assert out["noisy"]["original_question"].startswith("Question 4:")
    assert out["noisy"]["clean_status"] == "cleaned" and out["plain"]["clean_status"] == "unchanged"
    assert (out["solution"]["answer"], out["solution"]["answer_from"]) == ("7", "llm")
    assert out["plain"]["answer_from"] == "source"
    dropped = {r["original_id"]: (r["category"], r["reason"]) for r in pq.read_table(tmp_path / "dropped.parquet").to_pylist()}
    assert dropped == {"unanswerable": ("excluded", "unanswerable"), "hopeless": ("quarantined", "missing_answer"),
                       "leaked": ("contaminated", "bench_question")}
    assert counts["kept"] == 3 and counts["dropped"]["contaminated"] == {"bench_question": 1}
    # every response is journaled per sample: a rerun generates nothing and writes the same bytes
    lines = [json.loads(x) for x in open(tmp_path / "journal.clean.jsonl")]
    assert len(lines) == 5  # the leaked record never reached the cleaner
    first = (tmp_path / "out.parquet").read_bytes()
    clean_shard(str(tmp_path / "std.parquet"), str(drops), str(tmp_path / "out.parquet"),
                str(tmp_path / "dropped.parquet"), SCRIPTED, SCRIPTED, 0, journal)
    assert len(open(tmp_path / "journal.clean.jsonl").readlines()) == 5
    assert (tmp_path / "out.parquet").read_bytes() == first


def test_without_models_questions_stay_and_answerless_items_are_quarantined(tmp_path):
    write_shard(tmp_path / "std.parquet", [row("a"), row("b", answer=None, solution="So we get 2.")])
    pq.write_table(pa.Table.from_pylist([], schema=DROPS), tmp_path / "drops.parquet")
    counts = clean_shard(str(tmp_path / "std.parquet"), str(tmp_path / "drops.parquet"), str(tmp_path / "o.parquet"),
                         str(tmp_path / "d.parquet"), None, None, 0)
    assert counts["kept"] == 1 and counts["clean_status"] == {"skipped": 1}
    assert counts["dropped"] == {"quarantined": {"missing_answer": 1}}


def test_a_group_job_loads_each_model_once_and_the_shard_jobs_load_none(tmp_path, monkeypatch):
    """grouping.clean_rows: one job cleans several shards with one load of each model (the cleaner,
    then the extractor), and each shard's own job finds every response in its journals."""
    import mmfr.clean
    import mmfr.generate

    loads = []
    real = mmfr.generate.make_backend
    monkeypatch.setattr(mmfr.generate, "make_backend", lambda role: loads.append(role.model) or real(role))
    monkeypatch.setattr(mmfr.clean, "make_backend", mmfr.generate.make_backend)
    drops = tmp_path / "drops.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=DROPS), drops)
    stds, journals = [], []
    for i in range(3):
        write_shard(tmp_path / f"{i}.parquet", [
            row(f"q{i}", question=f"Question {i}: How many squares?<br> Answer directly."),
            row(f"s{i}", question=f"What is {i} + 4?", answer=None, solution=f"So we get {i + 4}."),
        ])
        stds.append(str(tmp_path / f"{i}.parquet"))
        journals.append(str(tmp_path / f"{i}.jsonl"))
    extract = {**SCRIPTED, "model": "mmfr-scripted-extract"}
    counts = mmfr.clean.generate_group(stds, journals, str(drops), SCRIPTED, extract, 0)
    assert counts == {"shards": 3, "rows": 6, "unanswerable": 0, "to_extract": 3}
    assert loads == ["mmfr-scripted", "mmfr-scripted-extract"]
    for std, journal in zip(stds, journals):
        out = std.replace(".parquet", ".clean.parquet")
        clean_shard(std, str(drops), out, out + ".dropped", SCRIPTED, extract, 0, journal)
        assert sorted(r["answer"] for r in pq.read_table(out).to_pylist())[-1] == str(int(std[-9]) + 4)
    assert loads == ["mmfr-scripted", "mmfr-scripted-extract"]  # the shard jobs loaded nothing


def test_a_missing_cleaner_path_names_its_config_key(tmp_path):
    import pytest

    write_shard(tmp_path / "std.parquet", [row("plain", question="How many red circles are there?")])
    pq.write_table(pa.Table.from_pylist([], schema=DROPS), tmp_path / "drops.parquet")
    cleaner = {"backend": "transformers", "model": "/nonexistent/mmfr-cleaner"}
    with pytest.raises(FileNotFoundError, match=r"models\.clean\.model: model '/nonexistent/mmfr-cleaner'"):
        clean_shard(str(tmp_path / "std.parquet"), str(tmp_path / "drops.parquet"), str(tmp_path / "o.parquet"),
                    str(tmp_path / "d.parquet"), cleaner, None, 0, str(tmp_path / "j.jsonl"))
