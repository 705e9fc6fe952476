"""Grouped generation (grouping.<stage>_rows): one job loads a stage's model once for several
shards and journals every response; each shard's own job then loads nothing and writes exactly
what it would have written alone."""

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

import mmfr.generate
from mmfr import schema
from mmfr.demo.sources import synthetic_rows
from mmfr.annotate import caption_group, caption_shard, trace_shard
from mmfr.config import generation_groups
from mmfr.generate import Response
from mmfr.plan import load_config
from mmfr.snake import listed_shards, marker_outputs, write_shard_list
from mmfr.sources import ImagePolicy, to_canonical
from mmfr.verify import judge_group, verify_shard

from conftest import REPO

TEACHER = {"backend": "scripted", "model": "mmfr-scripted-teacher", "revision": "v1",
           "mistakes": {"wrong_answer": 0.4}}
JUDGE = {"backend": "openai", "model": "test-judge", "revision": "r1"}
CHECKS = {"min_cot_words": 40}


class Counting:
    """A backend that answers ``reply(key)`` to every request and records the keys it is asked."""

    def __init__(self, name, reply):
        self.name, self.reply, self.asked = name, reply, []

    def generate(self, requests, keys):
        for r, k in zip(requests, keys):
            self.asked.append(k)
            yield Response(k, r.sample_id, r.sample_index, self.reply(k), "stop", 5)


def judgment(key: str) -> str:
    """Equivalent for about half the requests (by key)."""
    verdict = "EQUIVALENT" if int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2 else "DIFFERENT"
    return f"Compared.\nJUDGMENT: {verdict}"


class Made(list):
    judge: Counting


@pytest.fixture
def loads(monkeypatch):
    """Every model a backend is made for (the scripted teacher is real; the judge is ``judge``)."""
    made = Made()
    real = mmfr.generate.make_backend
    judge = Counting(JUDGE["model"], judgment)

    def make(role):
        made.append(role.model)
        return judge if role.model == JUDGE["model"] else real(role)

    monkeypatch.setattr(mmfr.generate, "make_backend", make)
    monkeypatch.setattr("mmfr.annotate.make_backend", make)
    monkeypatch.setattr("mmfr.verify.make_backend", make)
    made.judge = judge
    return made


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three clean-records shards of the synthetic families, their traces (many wrong answers)
    and a word-level tokenizer."""
    root = tmp_path_factory.mktemp("grouping")
    paths = []
    for i, family in enumerate(["counting", "geometry", "charts"]):
        rows = synthetic_rows({"kind": "synthetic", "family": family, "n": 10}, i)
        records = sorted((to_canonical(r, "synthetic", "CC0-1.0", ImagePolicy()) for r in rows), key=lambda r: r["id"])
        path = root / f"{i}.parquet"
        schema.write_table(pa.Table.from_pylist(records, schema=schema.RECORD), str(path))
        trace_shard(str(path), str(root / f"{i}.traces.parquet"), TEACHER, 1, 7)
        paths.append(path)
    tok = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(root / "tokenizer.json"))
    return root, paths


def test_a_caption_group_loads_the_teacher_once_and_the_shard_jobs_write_what_they_would_alone(shards, loads,
                                                                                                   tmp_path):
    root, paths = shards
    grouped = [str(tmp_path / f"g{i}.jsonl") for i in range(len(paths))]
    counts = caption_group([str(p) for p in paths], grouped, TEACHER, 7)
    assert counts == {"parts": 3, "requests": 30, "finish_reason": {"stop": 30}}
    assert loads == [TEACHER["model"]]
    for i, path in enumerate(paths):
        caption_shard(str(path), str(tmp_path / f"g{i}.parquet"), TEACHER, 7, grouped[i])
    assert loads == [TEACHER["model"]]  # every caption from the journals
    for i, path in enumerate(paths):  # and the same file as a shard job that generates its own
        caption_shard(str(path), str(tmp_path / f"a{i}.parquet"), TEACHER, 7, str(tmp_path / "alone" / f"{i}.jsonl"))
        assert (tmp_path / f"g{i}.parquet").read_bytes() == (tmp_path / f"a{i}.parquet").read_bytes()
    assert len(loads) == 1 + len(paths)


def test_a_judge_group_asks_once_per_wrong_answer_and_verify_reads_the_judgments(shards, loads, tmp_path):
    root, paths = shards
    captions = tmp_path / "captions.parquet"
    ids = [r for p in paths for r in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    pq.write_table(pa.table({"id": ids, "caption": ["a picture"] * len(ids)}), captions)
    traces = [str(root / f"{i}.traces.parquet") for i in range(len(paths))]
    grouped = [str(tmp_path / f"g{i}.jsonl") for i in range(len(paths))]
    counts = judge_group([str(p) for p in paths], traces, grouped, CHECKS, JUDGE, 7)
    assert loads == [JUDGE["model"]] and counts["parts"] == 3
    assert counts["requests"] == len(loads.judge.asked) > 0 and counts["finish_reason"] == {"stop": counts["requests"]}

    def verify(i, journal, out):
        return verify_shard(str(paths[i]), traces[i], str(captions), str(root / "tokenizer.json"), str(tmp_path / out),
                            CHECKS, JUDGE, 7, journal)

    verdicts = [verify(i, grouped[i], f"g{i}.parquet") for i in range(len(paths))]
    assert loads == [JUDGE["model"]]  # the shard jobs found every judgment in their journals
    judged = sum(n for v in verdicts for k, n in v.items() if k.endswith("/judge"))
    assert judged == counts["requests"] and sum(v.get("correct/judge", 0) for v in verdicts) > 0
    for i in range(len(paths)):  # the same verdicts as a verify job that asks the judge itself
        assert verify(i, str(tmp_path / "alone" / f"{i}.jsonl"), f"a{i}.parquet") == verdicts[i]
        assert (tmp_path / f"g{i}.parquet").read_bytes() == (tmp_path / f"a{i}.parquet").read_bytes()
    assert len(loads.judge.asked) == 2 * counts["requests"]


def test_a_judgment_that_does_not_parse_is_a_counted_judge_error_and_the_shard_goes_on(shards, loads, tmp_path):
    """A judge reply with no JUDGMENT line, or one cut at its token budget, makes the trace neither
    correct nor wrong (verdict judge_error, with the reason), and the rest of the shard is verified:
    the journal keeps the reply, so aborting would meet it again on every rerun."""
    root, paths = shards
    captions = tmp_path / "captions.parquet"
    ids = pq.read_table(paths[0], columns=["id"]).column("id").to_pylist()
    pq.write_table(pa.table({"id": ids, "caption": ["a picture"] * len(ids)}), captions)
    bad = {}

    def reply(key):  # every third request: prose with no verdict line; the rest a verdict
        n = int(hashlib.sha256(key.encode()).hexdigest(), 16)
        bad[key] = n % 3 == 0
        return "They look the same to me." if bad[key] else judgment(key)

    loads.judge.reply = reply
    counts = verify_shard(str(paths[0]), str(root / "0.traces.parquet"), str(captions), str(root / "tokenizer.json"),
                          str(tmp_path / "v.parquet"), CHECKS, JUDGE, 7, str(tmp_path / "j.jsonl"))
    rows = pq.read_table(tmp_path / "v.parquet").to_pylist()
    errors = [r for r in rows if r["verdict"] == "judge_error"]
    assert len(errors) == sum(bad.values()) > 0 and counts["judge_error/judge"] == len(errors)
    assert all(r["decided_by"] == "judge" and "no JUDGMENT line" in r["reason"] for r in errors)
    assert counts.get("correct/judge", 0) + counts.get("wrong/judge", 0) == len(bad) - len(errors) > 0


def test_a_group_job_finds_its_shards_through_the_source_list_in_the_order_of_its_markers(tmp_path):
    folder = tmp_path / "data/clean/src"
    folder.mkdir(parents=True)
    listing = f"{folder}.shards.json"
    write_shard_list([f"{folder}/{i:05d}.parquet" for i in range(4)], listing)
    assert json.loads(Path(listing).read_text())["shards"] == [f"{i:05d}.parquet" for i in range(4)]
    markers = [f"{tmp_path}/data/captions/src/{s}.generated" for s in ("00003", "00001")]
    assert listed_shards(listing, marker_outputs(markers)) == [f"{folder}/00003.parquet", f"{folder}/00001.parquet"]
    with pytest.raises(ValueError, match=r"src.shards.json does not list \['00007.parquet'\]"):
        listed_shards(listing, [f"{tmp_path}/data/captions/src/00007.parquet"])
    with pytest.raises(ValueError, match="lists the shards of"):  # one source's shards only
        write_shard_list([f"{folder}/00000.parquet", f"{tmp_path}/data/clean/other/00000.parquet"], listing)


def test_stages_are_grouped_only_with_rows_per_job_and_a_model():
    config = load_config([str(REPO / "config.yaml")])
    groups = generation_groups(config)
    assert set(groups) == {"clean", "caption", "judge"}
    assert len(groups["caption"]) == len(groups["judge"]) > len(groups["clean"])  # 50,000 rows, 100,000
    mmr1 = [shards for source, shards in groups["caption"].values() if source == "mmr1"]
    assert [len(s) for s in mmr1] == [3] * 42 + [1]  # 127 shards of ~12,600 rows: 3 to a job
    assert sorted(s for shards in mmr1 for s in shards) == [f"{i:05d}" for i in range(127)]
    config["models"]["judge"] = None
    config["grouping"]["caption_rows"] = None
    assert set(generation_groups(config)) == {"clean"}
    assert set(generation_groups(load_config([str(REPO / "config.yaml"), str(REPO / "recipes/demo.yaml")]))) == {
        "clean", "caption"}  # the demo has no judge


def test_an_evaluation_job_loads_the_model_once_for_every_benchmark(shards, monkeypatch, tmp_path):
    from mmfr.evaluate import answer_group, evaluate

    made = []
    student_model = Counting("test-student", lambda key: "<think>\nlooking\n</think>\n<answer>A</answer>")
    monkeypatch.setattr(mmfr.generate, "make_backend", lambda role: made.append(role.model) or student_model)
    monkeypatch.setattr("mmfr.student.make_backend", mmfr.generate.make_backend)
    _, paths = shards
    student = {"backend": "openai", "model": "test-student", "revision": "r1"}
    names = [f"bench{i}" for i in range(len(paths))]
    specs = [{"name": n} for n in names]
    grouped = [str(tmp_path / f"{n}.jsonl") for n in names]
    counts = answer_group([str(p) for p in paths], specs, grouped, student, 7)
    assert counts == {"parts": 3, "requests": 30, "finish_reason": {"stop": 30}} and made == ["test-student"]
    scores = [evaluate(str(p), s, str(tmp_path / f"{s['name']}.parquet"), student, 7, j)
              for p, s, j in zip(paths, specs, grouped)]
    assert made == ["test-student"] and len(student_model.asked) == 30  # scored from the journals
    for p, s, score in zip(paths, specs, scores):  # as a job that answers its one benchmark itself
        n = s["name"]
        alone = tmp_path / "alone" / f"{n}.parquet"
        assert evaluate(str(p), s, str(alone), student, 7, str(tmp_path / "alone" / f"{n}.jsonl")) == score
        assert alone.read_bytes() == (tmp_path / f"{n}.parquet").read_bytes()
    assert len(student_model.asked) == 60 and 0 < sum(scores) < 3


def test_an_evaluation_judge_job_loads_the_judge_once_and_evaluate_reads_its_verdicts(shards, monkeypatch, tmp_path):
    """Answers first (one load of the student), then one load of the judge for every benchmark's
    rule-wrong answers; each benchmark's evaluate job scores from the journal, loading nothing; a
    judge reply that is no verdict letter gives judge_error, never wrong."""
    from mmfr.evaluate import answer_group, evaluate, judge_group

    made = []
    student_model = Counting("test-student", lambda key: "<think>\nlooking\n</think>\n<answer>Z</answer>")
    judge_model = Counting("test-judge", lambda key: "A" if int(key[:8], 16) % 3 else "no idea")
    models = {"test-student": student_model, "test-judge": judge_model}
    monkeypatch.setattr(mmfr.generate, "make_backend", lambda role: made.append(role.model) or models[role.model])
    monkeypatch.setattr("mmfr.student.make_backend", mmfr.generate.make_backend)
    monkeypatch.setattr("mmfr.evaluate.make_backend", mmfr.generate.make_backend)
    _, paths = shards
    student = {"backend": "openai", "model": "test-student", "revision": "r1"}
    judge = {"backend": "openai", "model": "test-judge", "revision": "r1"}
    specs = [{"name": f"bench{i}"} for i in range(len(paths))]
    journals = [str(tmp_path / f"bench{i}.jsonl") for i in range(len(paths))]
    answer_group([str(p) for p in paths], specs, journals, student, 7)
    counts = judge_group([str(p) for p in paths], specs, journals, student, judge, 7)
    assert made == ["test-student", "test-judge"] and counts["requests"] == len(judge_model.asked) > 0
    out = [str(tmp_path / f"bench{i}.parquet") for i in range(len(paths))]
    for p, spec, journal, o in zip(paths, specs, journals, out):
        evaluate(str(p), spec, o, student, 7, journal, judge=judge)
    assert made == ["test-student", "test-judge"]  # scored from the journals
    rows = [r for o in out for r in pq.read_table(o).to_pylist()]
    verdicts = {r["verdict"] for r in rows}
    assert verdicts <= {"correct", "wrong", "judge_error"} and "judge_error" in verdicts
    assert all(r["decided_by"] == "judge" for r in rows if r["verdict"] == "correct" and r["answer"] != "Z")
    assert sum(r["verdict"] in ("correct", "wrong", "judge_error") and r["decided_by"].startswith("judge")
               for r in rows) == counts["requests"]
