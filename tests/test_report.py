"""The report's tables and plots, from a tiny summary database written here (the tables and columns
that ``mmfr.summary`` makes)."""

import csv
from pathlib import Path

import duckdb
import pytest

from mmfr import report
from mmfr.report import CATEGORIES, PLOTS, TABLES, write_report

REPO = Path(__file__).resolve().parents[1]

SUMMARY = """
CREATE TABLE stage_counts AS SELECT * FROM (VALUES
    ('raw', 'a', 10), ('kept', 'a', 8), ('traced', 'a', 8), ('verified_correct', 'a', 6), ('pass_rated', 'a', 6),
    ('raw', 'b', 5), ('kept', 'b', 5), ('traced', 'b', 4), ('verified_correct', 'b', 3), ('pass_rated', 'b', 3)
) t(stage, source, n);
CREATE TABLE drop_reasons AS SELECT * FROM (VALUES
    ('a', 'duplicate', 'exact_duplicate', 1), ('a', 'quarantined', 'empty_question', 1)
) t(source, category, reason, n);
CREATE TABLE token_stats AS SELECT * FROM (VALUES
    ('cot', '(all)', 9, 20.0, 20.0, 30.0, 31, 180), ('cot', 'a', 6, 15.0, 15.0, 19.0, 20, 90),
    ('cot', 'b', 3, 30.0, 30.0, 31.0, 31, 90)
) t(kind, source, n, mean, median, p95, max, total);
CREATE TABLE token_lengths AS SELECT * FROM (VALUES
    ('cot', 'a', 10, 3), ('cot', 'a', 20, 3), ('cot', 'b', 29, 1), ('cot', 'b', 31, 2),
    ('caption', 'a', 50, 6), ('caption', 'b', 70, 3)
) t(kind, source, tokens, n);
CREATE TABLE pass_rates AS SELECT * FROM (VALUES
    ('a', 0.0, 4), ('a', 0.5, 2), ('b', 0.0, 1), ('b', 1.0, 2)
) t(source, pass_rate, n);
CREATE TABLE subsets AS SELECT * FROM (VALUES
    ('hard', 'a', 'math', 4, 0.0, 14.0), ('hard', 'b', 'general', 1, 0.0, 29.0),
    ('rl', 'a', 'math', 1, 0.5, 20.0)
) t(subset, source, domain, n, mean_pass_rate, mean_cot_tokens);
CREATE TABLE scores AS SELECT * FROM (VALUES
    ('base/s', NULL, 's', 'base', 'bench', '(all)', 10.0, 20), ('base/s', NULL, 's', 'base', 'bench', 'x', 20.0, 10),
    ('hard/s/gspo', 'hard', 's', 'gspo', 'bench', '(all)', 30.0, 20),
    ('hard/s/sft', 'hard', 's', 'sft', 'bench', '(all)', 25.0, 20)
) t(model, subset, size, stage, benchmark, category, accuracy, n);
CREATE TABLE training AS SELECT * FROM (VALUES
    ('hard/s/sft', 1, 2.0, NULL, 0.1, NULL), ('hard/s/sft', 2, 1.5, NULL, 0.1, NULL),
    ('hard/s/gspo', 1, 0.0, 0.2, 0.1, NULL), ('hard/s/dpo', 1, 0.69, NULL, 0.1, 0.0), ('hard/s/dpo', 2, 0.5, NULL, 0.1, 0.4)
) t(model, step, loss, reward, learning_rate, reward_margin);
CREATE TABLE release_sources AS SELECT * FROM (VALUES
    ('a', 8, 7, 0.875, 1, 7, 6, 7, 0.05, 300.0, 310.0, 90.0, 95.0)
) t(source, records, matched, matched_share, matched_by_image_content, answers_agree, verdicts_agree,
    pass_rates_both, pass_rate_mean_abs_diff, our_trace_words_median, their_trace_words_median,
    our_caption_words_median, their_caption_words_median);
CREATE TABLE release_subsets AS SELECT * FROM (VALUES
    ('hard', 'OpenDataArena/x', 5, 6, 4, 0.5714)
) t(subset, released, ours, theirs, in_both, jaccard);
"""


@pytest.fixture
def summary(tmp_path) -> str:
    path = str(tmp_path / "summary.duckdb")
    con = duckdb.connect(path)
    con.execute(SUMMARY)
    con.close()
    return path


@pytest.fixture
def con(summary):
    con = duckdb.connect(summary, read_only=True)
    yield con
    con.close()


def rows(table) -> dict:
    return {r[0]: r[1:] for r in table.rows}


def test_yields_follow_the_stages_in_order_then_the_subsets(con):
    table = report.yields_table(con)
    assert table.columns == ["source", "raw", "kept", "traced", "verified_correct", "pass_rated", "hard", "rl"]
    assert rows(table) == {"a": (10, 8, 8, 6, 6, 4, 1), "b": (5, 5, 4, 3, 3, 1, 0), "(all)": (15, 13, 12, 9, 9, 5, 1)}


def test_drops_and_pass_rates_are_counted_per_source(con):
    assert rows(report.drops_table(con)) == {"duplicate: exact_duplicate": (1,), "quarantined: empty_question": (1,),
                                             "(all)": (2,)}
    table = report.pass_rates_table(con)
    assert table.columns == ["pass_rate", "a", "b"]
    assert rows(table) == {0.0: (4, 1), 0.5: (2, 0), 1.0: (0, 2), "(all)": (6, 3)}


def test_subset_shares_and_scores_per_model(con):
    subsets = report.subsets_table(con)
    assert [r[:5] for r in subsets.rows] == [("hard", "a", "math", 4, 80.0), ("hard", "b", "general", 1, 20.0),
                                             ("rl", "a", "math", 1, 100.0)]
    scores = report.scores_table(con)
    # base first, then SFT before GSPO; a category a model was not scored on stays empty
    assert scores.columns == ["benchmark / category", "base/s", "hard/s/sft", "hard/s/gspo"]
    assert rows(scores) == {"bench / (all)": (10.0, 25.0, 30.0), "bench / x": (20.0, None, None)}
    tokens = report.tokens_table(con)
    assert [r[:3] for r in tokens.rows] == [("cot", "a", 6), ("cot", "b", 3), ("cot", "(all)", 9)]


def every_artifact(root: Path) -> list[str]:
    return ([str(root / f"{n}.svg") for n in PLOTS] + [str(root / f"{n}.html") for n in TABLES]
            + [str(root / f"{n}.csv") for n in TABLES])


def test_write_report_writes_every_table_and_plot(summary, tmp_path):
    out = tmp_path / "report"
    write_report(summary, every_artifact(out))
    for name in PLOTS:
        svg = (out / f"{name}.svg").read_text()
        assert svg.startswith("<?xml") and "<svg" in svg and len(svg) > 5000, name
        assert "in this build" not in svg, name  # every panel had data
    for name in TABLES:
        with open(out / f"{name}.csv", newline="") as f:
            written = list(csv.reader(f))
        assert written[0] == TABLES[name](duckdb.connect(summary, read_only=True)).columns
        assert len(written) > 1
        page = (out / f"{name}.html").read_text()
        assert page.count("<tr>") == len(written)  # the header and every row
    assert "<td class=n>15</td>" in (out / "yields.html").read_text()
    assert "DPO reward margin" in (out / "training.svg").read_text()  # a build that trained DPO plots it


def test_plots_are_byte_identical_across_runs(summary, tmp_path):
    first, second = every_artifact(tmp_path / "1"), every_artifact(tmp_path / "2")
    write_report(summary, first)
    write_report(summary, second)
    for a, b in zip(first, second):
        assert Path(a).read_bytes() == Path(b).read_bytes(), a


def test_an_empty_build_still_gives_every_plot(tmp_path):
    path = str(tmp_path / "empty.duckdb")
    con = duckdb.connect(path)
    con.execute(SUMMARY)
    for (table,) in con.execute("SHOW TABLES").fetchall():
        con.execute(f"DELETE FROM {table}")
    con.close()
    out = tmp_path / "report"
    write_report(path, every_artifact(out))
    assert "no scores in this build" in (out / "scores.svg").read_text()
    assert "no cot tokens in this build" in (out / "tokens.svg").read_text()
    assert (out / "yields.csv").read_text().splitlines() == ["source"]


def test_an_unknown_artifact_names_the_known_ones(summary, tmp_path):
    with pytest.raises(ValueError, match="tables .*'yields'"):
        write_report(summary, [str(tmp_path / "yields.txt")])


def test_every_artifact_has_a_section_and_a_caption():
    for name in {*PLOTS, *TABLES}:
        assert name in CATEGORIES
        assert (REPO / "report" / f"{name}.rst").read_text().strip(), name
    assert (REPO / "report" / "workflow.rst").exists()


def test_mmfr_show_weights_a_subset_s_pass_rate_by_its_samples(summary):
    from mmfr.cli import SUBSETS

    con = duckdb.connect(summary)
    con.execute("INSERT INTO subsets VALUES ('rl', 'b', 'general', 3, 1.0, 10.0)")
    rows = con.execute(SUBSETS).fetchall()
    con.close()
    assert rows == [("hard", 5, 0.0), ("rl", 4, 0.875)]  # (1 x 0.5 + 3 x 1.0) / 4, not (0.5 + 1.0) / 2
