"""DPO for Long Grounded Thoughts: preference pairs from verified traces of one question, and the
student trained on them with TRL's DPOTrainer."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmfr import pairs
from mmfr.schema import SUBSET, VERIFIED, write_table


def record(i: int) -> dict:
    row = {name: None for name in SUBSET.names}
    return {**row, "source": "toy", "id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1),
            "answer_type": "number", "choices": [], "domain": "math", "image": {"bytes": b"\x89PNG", "path": None}}


def trace(i: int, k: int, verdict: str, finish: str = "stop", decided_by: str = "numeric") -> dict:
    answer = i + 1 if verdict == "correct" else i + 2 + k
    row = {name: None for name in VERIFIED.names}
    return {**row, "id": f"q{i}", "source": "toy", "sample_index": k, "verdict": verdict, "finish_reason": finish,
            "decided_by": decided_by, "response": f"<think>trace {k}</think>\n<answer>{answer}</answer>"}


@pytest.fixture
def built(tmp_path):
    """Five questions with four traces each: q0 right-wrong-wrong-wrong, q1 all right, q2 all wrong,
    q3 right-right-wrong (cut off)-wrong (template), q4 right-right-wrong-wrong but not in the subset."""
    verdicts = {0: ["correct", "wrong", "wrong", "wrong"], 1: ["correct"] * 4, 2: ["wrong"] * 4,
                3: ["correct", "correct", "wrong", "rejected"], 4: ["correct", "correct", "wrong", "wrong"]}
    ver = [trace(i, k, v, finish="length" if (i, k) == (3, 2) else "stop",
                 decided_by="template" if v == "rejected" else "numeric")
           for i, vs in verdicts.items() for k, v in enumerate(vs)]
    write_table(pa.Table.from_pylist(ver, schema=VERIFIED), str(tmp_path / "verified.parquet"))
    subset_rows = [{**record(i), "response": t["response"], "verdict": "correct"}
                   for i in (0, 1, 2, 3) for t in ver if t["id"] == f"q{i}" and t["verdict"] == "correct"]
    (tmp_path / "subset" / "data").mkdir(parents=True)
    write_table(pa.Table.from_pylist(subset_rows, schema=SUBSET), str(tmp_path / "subset/data/train-00000-of-00001.parquet"))
    return tmp_path


def test_pairs_take_a_right_trace_against_a_wrong_one_that_ran_to_its_end(built):
    counts = pairs.build(str(built / "subset"), [str(built / "verified.parquet")], str(built / "pairs"),
                         {"per_question": 2}, seed=0)
    rows = pq.read_table(built / "pairs/data/train-00000-of-00001.parquet").to_pylist()
    # q0: one right trace, so one pair; q1 and q2: no wrong or no right trace; q3: its only wrong
    # trace was cut off and its other one broke the template; q4 is not in the subset (nor q2: no
    # right trace)
    assert [(r["id"], r["rejected_index"]) for r in rows] == [("q0", 1)]
    assert rows[0]["chosen"].endswith("<answer>1</answer>") and rows[0]["rejected"].endswith("<answer>3</answer>")
    assert rows[0]["question"] == "What is 0 + 1?" and rows[0]["image"]["bytes"] == b"\x89PNG"
    assert counts == {"questions": 3, "questions_with_pairs": 1, "pairs": 1, "per_question": 2, "by_source": {"toy": 1}}
    card = (built / "pairs/README.md").read_text()
    assert "1 pairs over 1 of the 3 questions" in card and json.loads(card.split("```json\n")[1].split("```")[0]) == counts


def test_pairs_per_question_and_seeded_order(built, tmp_path):
    ver = pq.read_table(built / "verified.parquet").to_pylist()
    for t in ver:  # q1 now has two wrong traces too: two right ones were answered wrong
        if t["id"] == "q1" and t["sample_index"] >= 2:
            t.update(verdict="wrong", response=t["response"].replace("<answer>2", "<answer>9"))
    write_table(pa.Table.from_pylist(ver, schema=VERIFIED), str(built / "verified.parquet"))
    sub = built / "subset/data/train-00000-of-00001.parquet"
    write_table(pq.read_table(sub).filter(pa.compute.invert(pa.compute.and_(
        pa.compute.equal(pq.read_table(sub).column("id"), "q1"),
        pa.compute.match_substring(pq.read_table(sub).column("response"), "<answer>9")))), str(sub))
    one = pairs.build(str(built / "subset"), [str(built / "verified.parquet")], str(tmp_path / "one"),
                      {"per_question": 1}, seed=0)
    two = pairs.build(str(built / "subset"), [str(built / "verified.parquet")], str(tmp_path / "two"),
                      {"per_question": 2}, seed=0)
    assert (one["pairs"], two["pairs"]) == (2, 3)
    q1 = [r for r in pq.read_table(tmp_path / "two/data/train-00000-of-00001.parquet").to_pylist() if r["id"] == "q1"]
    assert sorted(r["rejected_index"] for r in q1) == [2, 3] and len({r["chosen"] for r in q1}) == 2
    again = pairs.build(str(built / "subset"), [str(built / "verified.parquet")], str(tmp_path / "again"),
                        {"per_question": 2}, seed=0)
    assert again == two and (tmp_path / "again/data/train-00000-of-00001.parquet").read_bytes() == \
        (tmp_path / "two/data/train-00000-of-00001.parquet").read_bytes()
    with pytest.raises(ValueError, match="per_question must be at least 1"):
        pairs.build(str(built / "subset"), [str(built / "verified.parquet")], str(tmp_path / "x"), {"per_question": 0}, 0)


def test_a_subset_without_pairs_names_what_to_change(built, tmp_path):
    from mmfr.train import subset_files

    sub = built / "subset/data/train-00000-of-00001.parquet"
    write_table(pq.read_table(sub).filter(pa.compute.equal(pq.read_table(sub).column("id"), "q1")), str(sub))
    counts = pairs.build(str(built / "subset"), [str(built / "verified.parquet")], str(tmp_path / "pairs"), {}, 0)
    assert counts["pairs"] == 0 and counts["questions"] == 1
    with pytest.raises(ValueError, match="annotate.traces_per_sample"):
        subset_files(str(tmp_path / "pairs"))


@pytest.mark.workflow
def test_dpo_moves_the_student_towards_the_chosen_traces(tmp_path):
    """DPO on pairs whose rejected trace differs only in its answer: the implicit reward margin (policy
    against the SFT reference, TRL's ``rewards/margins``) starts at 0 and grows, and the saved model
    loads like any student."""
    from test_models import CORPUS, write_shard
    from mmfr.demo.models import build_tiny_model
    from mmfr.models import load_model
    from mmfr.train import dpo

    build_tiny_model(str(tmp_path / "tiny"), {}, CORPUS, seed=0)
    table = pq.read_table(write_shard(tmp_path / "train.parquet"))
    rows = [{**r, "chosen": r["response"], "rejected": r["response"].replace(f"<answer>{r['answer']}<", "<answer>7<")}
            for r in table.to_pylist()]
    shard = str(tmp_path / "pairs.parquet")
    write_table(pa.Table.from_pylist(rows, schema=table.schema.append(pa.field("chosen", pa.string()))
                                     .append(pa.field("rejected", pa.string()))), shard)
    cfg = {"max_steps": 6, "per_device_train_batch_size": 4, "logging_steps": 1, "learning_rate": 5e-3,
           "max_length": 384, "max_pixels": 16384, "min_pixels": 4096}
    metrics = dpo(str(tmp_path / "tiny"), [shard], str(tmp_path / "dpo"), cfg, seed=0)
    margins = [h["rewards/margins"] for h in metrics["log"]]
    assert metrics["steps"] == 6 and metrics["stage"] == "dpo" and len(margins) == 6
    assert margins[0] == 0.0 and margins[-1] > 0.3 and metrics["log"][-1]["rewards/accuracies"] == 1.0
    assert metrics["log"][-1]["loss"] < metrics["log"][0]["loss"]
    load_model(str(tmp_path / "dpo"), dtype="float32")


def test_pairs_load_with_the_image_as_an_image_feature(built):
    from datasets import Dataset, Image

    pairs.build(str(built / "subset"), [str(built / "verified.parquet")], str(built / "pairs"), {}, seed=0)
    data = Dataset.from_parquet(str(built / "pairs/data/train-00000-of-00001.parquet"))
    assert isinstance(data.features["image"], Image)
