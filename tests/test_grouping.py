"""Grouped generation (grouping.<stage>_rows): one job loads a stage's model once for several
shards and journals every response; each shard's own job then loads nothing and writes exactly
what it would have written alone."""

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

import mmfr.generate
from mmfr import schema, sources
from mmfr.annotate import caption_group, caption_shard, trace_shard
from mmfr.config import generation_groups
from mmfr.generate import Response
from mmfr.plan import load_config
from mmfr.sources import ImagePolicy, to_canonical
from mmfr.verify import judge_group, verify_shard

from conftest import REPO

TEACHER = {"backend": "scripted", "model": "mmfr-scripted-teacher", "revision": "v1",
           "mistakes": {"wrong_answer": 0.4}}
JUDGE = {"backend": "openai", "model": "test-judge", "revision": "r1"}
CHECKS = {"min_cot_words": 40}


class Judge:
    """A judge that calls an answer equivalent for about half the requests (by key), and counts."""

    name = "test-judge"
    asked: list = []

    def generate(self, requests, keys):
        for r, k in zip(requests, keys):
            Judge.asked.append(k)
            verdict = "EQUIVALENT" if int(hashlib.sha256(k.encode()).hexdigest(), 16) % 2 else "DIFFERENT"
            yield Response(k, r.sample_id, r.sample_index, f"Compared.\nJUDGMENT: {verdict}", "stop", 5)


@pytest.fixture
def loads(monkeypatch):
    """Every model a backend is made for (the scripted teacher is real; the judge is ``Judge``)."""
    made = []
    real = mmfr.generate.make_backend

    def make(spec, **kwargs):
        made.append(spec["model"])
        return Judge() if spec["model"] == JUDGE["model"] else real(spec, **kwargs)

    monkeypatch.setattr(mmfr.generate, "make_backend", make)
    monkeypatch.setattr("mmfr.annotate.make_backend", make)
    Judge.asked = []
    return made


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three clean-records shards of the synthetic families, their traces (many wrong answers)
    and a word-level tokenizer."""
    root = tmp_path_factory.mktemp("grouping")
    paths = []
    for i, family in enumerate(["counting", "geometry", "charts"]):
        rows = sources.synthetic_rows({"kind": "synthetic", "family": family, "n": 10}, i)
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
    assert counts == {"shards": 3, "rows": 30, "finish_reason": {"stop": 30}}
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
    assert loads == [JUDGE["model"]] and counts["shards"] == 3 and counts["traces"] == 30
    assert counts["judged"] == len(Judge.asked) > 0 and counts["finish_reason"] == {"stop": counts["judged"]}

    def verify(i, journal, out):
        return verify_shard(str(paths[i]), traces[i], str(captions), str(root / "tokenizer.json"), str(tmp_path / out),
                            CHECKS, JUDGE, 7, journal)

    verdicts = [verify(i, grouped[i], f"g{i}.parquet") for i in range(len(paths))]
    assert loads == [JUDGE["model"]]  # the shard jobs found every judgment in their journals
    judged = sum(n for v in verdicts for k, n in v.items() if k.endswith("/judge"))
    assert judged == counts["judged"] and sum(v.get("correct/judge", 0) for v in verdicts) > 0
    for i in range(len(paths)):  # the same verdicts as a verify job that asks the judge itself
        assert verify(i, str(tmp_path / "alone" / f"{i}.jsonl"), f"a{i}.parquet") == verdicts[i]
        assert (tmp_path / f"g{i}.parquet").read_bytes() == (tmp_path / f"a{i}.parquet").read_bytes()
    assert len(Judge.asked) == 2 * counts["judged"]


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
