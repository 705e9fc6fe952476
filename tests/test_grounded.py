"""Long Grounded Thoughts' question synthesis from labelled boxes (mmfr.grounded, adapter grounded_mcq)."""

import io
import json
import random
import re
from collections import Counter

import pytest
from PIL import Image

from mmfr import grounded
from mmfr.demo import synth
from mmfr.adapters import AdapterError, adapt
from mmfr.options import LETTERS

SPEC = {"name": "coco", "adapter": "grounded_mcq", "domain": "general"}


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buf, format="PNG")
    return buf.getvalue()


def coco_record(image_id=7):
    """A record as detection-datasets/coco stores it: xywh boxes, numeric categories."""
    return {"image_id": image_id, "image": {"bytes": png(640, 480), "path": None}, "width": 640, "height": 480,
            "objects": {"bbox_id": [1, 2, 3, 4, 5, 6], "category": [0, 0, 0, 2, 16, 56], "area": [0] * 6,
                        "bbox": [[20, 300, 60, 150], [120, 310, 50, 140], [220, 305, 55, 145],
                                 [400, 350, 200, 100], [560, 40, 60, 50], [300, 120, 40, 40]]}}


LABELS = ["person", "bicycle", "car"] + [f"class{i}" for i in range(3, 16)] + ["bird"] + \
         [f"class{i}" for i in range(17, 56)] + ["chair"]


def check(question: grounded.Question, boxes: list[grounded.Box]) -> None:
    """Re-derive a simple question's answer from the boxes, independently of how it was written."""
    correct = question.choices[LETTERS.index(question.answer)]
    if question.kind == "count":
        asked = re.match(r"How many (.+) are there", question.question)[1]
        assert int(correct) == sum(grounded.plural(b.label) == asked for b in boxes)
    elif question.kind == "relation":
        a, b = re.match(r"Is the (.+?) (?:to the left or to the right of|above or below) the (.+?)\?",
                        question.question).groups()
        box = {x.label: x for x in boxes}
        horizontal = "left" in question.choices
        gap = box[a].cx - box[b].cx if horizontal else box[a].cy - box[b].cy
        assert correct == (("left" if gap < 0 else "right") if horizontal else ("above" if gap < 0 else "below"))
    elif question.kind == "largest":
        shown = [b for b in boxes if b.label in question.choices]
        assert correct == max(shown, key=lambda b: b.area).label
    elif question.kind == "extreme":
        attr, sign, _ = next(v for k, v in grounded.SIDES.items() if v[2] in question.question)
        assert correct == min(boxes, key=lambda b: sign * getattr(b, attr)).label


def test_every_simple_question_is_decided_by_the_boxes():
    kinds = Counter()
    for i, row in enumerate(synth.detections(60, 3)):
        boxes = grounded.boxes_from(row["objects"])
        for q in grounded.simple_questions(random.Random(i), boxes, row["width"], row["height"], 4):
            assert len(set(q.choices)) == len(q.choices) >= 2 and q.answer in LETTERS[:len(q.choices)]
            check(q, boxes)
            kinds[q.kind] += 1
    assert set(kinds) == {"count", "relation", "extreme", "largest"}, kinds


def test_plurals_read_naturally():
    assert [grounded.plural(x) for x in ("cup", "bench", "person", "skis", "wine glass", "box")] == \
        ["cups", "benches", "people", "skis", "wine glasses", "boxes"]


def test_composed_questions_stay_verifiable():
    rng = random.Random(0)
    boxes = grounded.boxes_from(coco_record()["objects"], labels=LABELS)
    count = grounded.ask_count(rng, boxes, 640, 480)
    other = grounded.ask_count(random.Random(5), [b for b in boxes if b.label != count.question.split()[2][:-1]],
                               640, 480)
    total = grounded.compose(rng, count, other)
    assert total.kind == "count_sum" and int(total.correct) == int(count.correct) + int(other.correct)
    relation = grounded.ask_relation(rng, boxes, 640, 480)
    both = grounded.compose(rng, count, relation)
    assert both.correct == f"{count.correct}; {relation.correct}" and len(set(both.choices)) == 4
    assert "1. How many" in both.question and both.facts == count.facts + relation.facts


def test_adapter_on_a_coco_record_gives_choice_rows_with_their_grounding():
    rows = adapt(coco_record(), {**SPEC, "labels": LABELS}, 0)
    assert len(rows) == 6  # 4 simple + 2 composed (the defaults)
    assert [r["original_id"] for r in rows] == [f"7#{k}" for k in range(6)]
    for r in rows:
        meta = json.loads(r["metadata"])
        assert r["answer_type"] == "choice" and r["answer"] == meta["answer"] and len(r["images"]) == 1
        assert r["question"].endswith(f"({LETTERS[len(r['choices']) - 1]}) {r['choices'][-1]}")
        assert meta["objects"]["category"] == [0, 0, 0, 2, 16, 56] and meta["facts"]
    assert {json.loads(r["metadata"])["lgt_kind"] for r in rows[4:]} <= {"count_sum"} | {
        f"{a}+{b}" for a in grounded.ASK for b in grounded.ASK}
    # same record, same questions: the options are shuffled with a seed from the source and image
    assert adapt(coco_record(), {**SPEC, "labels": LABELS}, 0) == rows
    assert adapt(coco_record(), {**SPEC, "labels": LABELS, "questions_per_image": 2, "composed_per_image": 0}, 0) \
        == rows[:2]


def test_adapter_errors_name_the_source_and_what_is_missing():
    with pytest.raises(AdapterError, match=r"'coco', record 0: objects: .*give the source's `labels`"):
        adapt(coco_record(), SPEC, 0)
    record = coco_record()
    del record["objects"]
    with pytest.raises(AdapterError, match="objects"):
        adapt(record, SPEC, 0)


def test_a_wrong_box_format_is_caught_on_the_first_record():
    with pytest.raises(AdapterError, match="bbox_format 'xyxy'"):
        adapt(coco_record(), {**SPEC, "labels": LABELS, "bbox_format": "xyxy"}, 0)


def test_the_demo_detection_source_goes_through_the_real_download_and_adapter(tmp_path):
    """kind synthetic_detection is stored as detection-datasets/coco is, and read by grounded_mcq."""
    import pyarrow.parquet as pq

    from mmfr.sources import download, raw_rows

    spec = {"name": "synth_grounded", "kind": "synthetic_detection", "n": 5, "domain": "general"}
    assert download(spec, str(tmp_path / "data.parquet"), str(tmp_path / "manifest.json"), str(tmp_path / "img"), 1) == 5
    assert {"image_id", "image", "width", "height", "objects"} <= set(pq.read_schema(tmp_path / "data.parquet").names)
    rows = list(raw_rows(str(tmp_path / "data.parquet"), spec))
    assert 20 <= len(rows) <= 30 and {r["answer_type"] for r in rows} == {"choice"}
    assert {r["original_id"].split("#")[0] for r in rows} == {f"detection-train-{i:06d}" for i in range(5)}
