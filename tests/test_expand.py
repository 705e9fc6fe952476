"""Long Grounded Thoughts trace expansion: a reasoning model continues each finished trace after a
cue, through the one generation interface, and the result reads like a trace to verify."""

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO
from mmfr import annotate, prompts, schema
from mmfr.demo import synth
from mmfr.demo.sources import synthetic_rows
from mmfr.annotate import continuation, expand_shard, trace_shard
from mmfr.config import check_config
from mmfr.generate import Response
from mmfr.demo.teacher import ScriptedBackend
from mmfr.demo.teacher import expand as scripted_expand
from mmfr.plan import load_config, stages
from mmfr.sources import ImagePolicy, to_canonical
from mmfr.verify import VerifyConfig, verify_response, verify_shard

TEACHER = {"backend": "scripted", "model": "mmfr-scripted-teacher", "revision": "v1",
           "mistakes": {"wrong_answer": 0.4}}
REASONER = {"backend": "scripted", "model": "mmfr-scripted-reasoner", "revision": "v1"}
SPEC = {"cue": "Wait,", "require_cue": True}
CFG = VerifyConfig(min_cot_words=40)
CUT = {0: "length", 1: "error"}  # traces the teacher did not finish, by row


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A clean-records shard of every synthetic family, its traces (with wrong answers) and two
    traces that did not finish."""
    root = tmp_path_factory.mktemp("expand")
    rows = [r for family in synth.FAMILIES
            for r in synthetic_rows({"kind": "synthetic", "family": family, "n": 12}, 5)]
    records = sorted((to_canonical(r, "synthetic", "CC0-1.0", ImagePolicy()) for r in rows), key=lambda r: r["id"])
    schema.write_table(pa.Table.from_pylist(records, schema=schema.RECORD), str(root / "records.parquet"))
    trace_shard(str(root / "records.parquet"), str(root / "traces.parquet"), TEACHER, 1, 7)
    traces = pq.read_table(root / "traces.parquet").to_pylist()
    for i, reason in CUT.items():
        traces[i].update(finish_reason=reason, response=traces[i]["response"][:80] if reason == "length" else "",
                         error="boom" if reason == "error" else "")
    schema.write_table(pa.Table.from_pylist(traces, schema=schema.TRACES), str(root / "traces.parquet"))
    return root, {r["id"]: r for r in records}, traces


def expand(root, out="expanded.parquet", journal="j1/expand.jsonl", model=REASONER, spec=SPEC):
    return expand_shard(str(root / "records.parquet"), str(root / "traces.parquet"), str(root / out), model,
                        spec, 7, str(root / journal))


class Counting(ScriptedBackend):
    calls: list = []

    def generate(self, requests, keys):
        Counting.calls += keys
        yield from super().generate(requests, keys)


@pytest.fixture
def counting(monkeypatch):
    Counting.calls = []
    monkeypatch.setattr(annotate, "make_backend", lambda spec, **_: Counting(spec))
    return Counting.calls


def test_every_finished_trace_is_expanded_and_verifies(shard, counting):
    root, records, traces = shard
    counts = expand(root)
    out = pq.read_table(root / "expanded.parquet")
    assert out.schema.equals(schema.TRACES)
    rows = out.to_pylist()
    assert [(r["id"], r["sample_index"]) for r in rows] == [(t["id"], t["sample_index"]) for t in traces]
    n_stop = sum(t["finish_reason"] == "stop" for t in traces)
    assert len(counting) == n_stop and counts == {"stop": n_stop, "passed_through/length": 1,
                                                   "passed_through/error": 1}
    before = after = fixed = 0
    for t, r in zip(traces, rows):
        if t["finish_reason"] != "stop":
            assert r == t  # passed through as it was: never a trace
            continue
        rec = records[t["id"]]
        short = annotate.short_reasoning(t["response"])
        assert r["finish_reason"] == "stop" and r["model"] == REASONER["model"]
        assert r["response"].startswith(f"<think>\n{short}\n\nWait, ")  # the short trace, then the cue
        assert len(r["response"].split()) > 1.5 * len(t["response"].split())
        was = verify_response(t["response"], rec["answer"], rec["answer_type"], rec["choices"], CFG)["verdict"]
        now = verify_response(r["response"], rec["answer"], rec["answer_type"], rec["choices"], CFG)
        assert now["verdict"] in ("correct", "wrong") and now["decided_by"] not in ("template", "length"), now
        before += was == "correct"
        after += now["verdict"] == "correct"
        fixed += was == "wrong" and now["verdict"] == "correct"
    # the teacher's wrong answers are mostly caught by the re-check, a right one is never lost
    assert before < n_stop and fixed > 0 and after == before + fixed


def test_verify_reads_expanded_traces_like_traces(shard, tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    root, records, traces = shard
    if not (root / "expanded.parquet").exists():
        expand(root)
    tok = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    captions = pa.table({"id": list(records), "caption": ["a picture"] * len(records)})
    pq.write_table(captions, tmp_path / "captions.parquet")
    counts = verify_shard(str(root / "records.parquet"), str(root / "expanded.parquet"),
                          str(tmp_path / "captions.parquet"), str(tmp_path / "tokenizer.json"),
                          str(tmp_path / "verified.parquet"), {"min_cot_words": 40})
    assert counts["rejected/generation"] == len(CUT)
    assert sum(n for k, n in counts.items() if k.startswith("correct/")) > 0.8 * (len(traces) - len(CUT))


def test_a_rerun_generates_nothing_and_the_prompt_is_in_the_key(shard, counting, monkeypatch):
    root, _, traces = shard
    expand(root, "first.parquet", "j2/expand.jsonl")
    n = len(counting)
    assert n == sum(t["finish_reason"] == "stop" for t in traces)
    expand(root, "second.parquet", "j2/expand.jsonl")
    assert len(counting) == n  # every response from the journal
    assert (root / "first.parquet").read_bytes() == (root / "second.parquet").read_bytes()
    # another prompt text: another key for every request, so everything is asked again
    load = prompts.load
    monkeypatch.setattr(prompts, "load", lambda name: (load(name)[0] + "\nBe thorough.\n", "edited") if name == "expand"
                        else load(name))
    expand(root, "third.parquet", "j2/expand.jsonl")
    assert len(counting) == 2 * n and not set(counting[:n]) & set(counting[n:])


class Fixed:
    """A backend that answers every request with the same (text, finish_reason)."""

    name = "fixed"

    def __init__(self, text, reason="stop"):
        self.text, self.reason = text, reason

    def generate(self, requests, keys):
        for r, k in zip(requests, keys):
            yield Response(k, r.sample_id, r.sample_index, self.text, self.reason, 9)


@pytest.mark.parametrize("text, reason, require_cue, outcome", [
    ("Wait, recheck. The final answer is: 3\n</think>\n<answer>3</answer>", "stop", True, "stop"),
    # a thinking model that reasoned privately first, then wrote the continuation
    ("I should continue the attempt.\n</think>\n\nWait, recheck.\n</think>\n<answer>3</answer>", "stop", True, "stop"),
    ("Let me recheck.\n</think>\n<answer>3</answer>", "stop", True, "error"),
    ("Let me recheck.\n</think>\n<answer>3</answer>", "stop", False, "stop"),
    ("Wait, let me recheck the first step, which", "length", True, "length"),
    ("", "empty", True, "empty"),
])
def test_replies_that_did_not_finish_or_left_the_cue_are_not_traces(shard, monkeypatch, tmp_path, text, reason,
                                                                    require_cue, outcome):
    root, _, traces = shard
    monkeypatch.setattr(annotate, "make_backend", lambda spec, **_: Fixed(text, reason))
    out = tmp_path / "out.parquet"
    expand_shard(str(root / "records.parquet"), str(root / "traces.parquet"), str(out),
                 {**REASONER, "model": "fixed"}, {"cue": "Wait,", "require_cue": require_cue}, 7, None)
    rows = [r for r, t in zip(pq.read_table(out).to_pylist(), traces) if t["finish_reason"] == "stop"]
    assert {r["finish_reason"] for r in rows} == {outcome}
    if outcome == "error":
        assert "cue" in rows[0]["error"]
    if text and outcome == "stop":
        assert rows[0]["response"].count("<think>") == 1 and "I should continue" not in rows[0]["response"]
        assert rows[0]["response"].endswith("</think>\n<answer>3</answer>")


def test_continuation():
    assert continuation("<think>\nWait, so", "Wait,") == "Wait, so"
    assert continuation("  wait, so", "Wait,") == "wait, so"
    assert continuation("plan</think>\n\nWait, so</think>", "Wait,") == "Wait, so</think>"
    assert continuation("Okay. Wait, so", "Wait,") is None


def test_scripted_expansion_is_seeded_and_takes_the_cue():
    rec = synth.generate("geometry", "train", 1, seed=2)[0]
    ctx = {"metadata": rec["metadata"], "answer": rec["answer"], "answer_type": rec["answer_type"],
           "choices": rec["choices"], "short_answer": rec["answer"], "cue": "Hold on,"}
    a, b = (scripted_expand(ctx, random.Random(3), {}) for _ in range(2))
    assert a == b and a.startswith("Hold on,") and a.endswith(f"</think>\n<answer>{rec['answer']}</answer>")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"]["expand"] = REASONER
    check_config(config)  # the scripted backend may expand


def test_plan_has_an_expand_stage_for_the_lgt_recipe():
    config = load_config([str(REPO / "config.yaml"), str(REPO / "recipes/lgt.yaml")])
    plan = {s.stage: s for s in stages(config)}
    assert list(plan)[:5] == ["questions", "clean", "extract", "caption", "trace"] and "expand" in plan
    dense = next(s for s in config["sources"] if s["adapter"] == "caption_mcq")
    assert plan["questions"].requests == dense["paper_raw"] and plan["questions"].jobs == dense["question_jobs"]
    assert plan["questions"].model == config["models"]["question_writer"]["model"]
    assert plan["expand"].requests == plan["trace"].requests
    assert plan["expand"].tokens == plan["expand"].requests * config["plan"]["tokens"]["expand"]
    assert plan["expand"].model == config["models"]["expand"]["model"]
    assert "expand" not in {s.stage for s in stages(load_config([str(REPO / "config.yaml")]))}


def test_a_trace_with_a_broken_format_is_asked_for_again_with_another_seed(tmp_path):
    """annotate.regenerate: a teacher that breaks the format half the time; asked again up to twice,
    most broken traces come back well formed, every attempt is in the journal, and a rerun of the
    job asks nothing new (the retries' keys are journaled like the first answers)."""
    from mmfr.annotate import flaw
    from mmfr.generate import Journal

    records = str(tmp_path / "records.parquet")
    rows = [r for r in synthetic_rows({"kind": "synthetic", "family": "counting", "n": 40}, 3)]
    schema.write_table(pa.Table.from_pylist(sorted((to_canonical(r, "synthetic", "CC0-1.0", ImagePolicy())
                                                    for r in rows), key=lambda r: r["id"]), schema=schema.RECORD),
                       records)
    sloppy = {**TEACHER, "mistakes": {"no_answer_tag": 0.5}}
    spec = {"tries": 2, "when": ["template"], "ngram": 50, "max_ngram_repeats": 3}

    def broken(path):
        return sum(flaw(t["response"], t["finish_reason"], spec) == "template" for t in pq.read_table(path).to_pylist())

    trace_shard(records, str(tmp_path / "once.parquet"), sloppy, 1, 7)
    journal = str(tmp_path / "again.jsonl")
    trace_shard(records, str(tmp_path / "again.parquet"), sloppy, 1, 7, journal, spec)
    first, last = broken(tmp_path / "once.parquet"), broken(tmp_path / "again.parquet")
    assert first >= 10 and last <= first // 3, (first, last)
    lines = len(Journal(journal).load())
    assert lines > 40 + first  # the first answers, the first retries and some second ones
    trace_shard(records, str(tmp_path / "rerun.parquet"), sloppy, 1, 7, journal, spec)
    assert len(Journal(journal).load()) == lines
    assert (tmp_path / "rerun.parquet").read_bytes() == (tmp_path / "again.parquet").read_bytes()
