"""Long Grounded Thoughts' question synthesis from labelled boxes (mmfr.grounded, adapter grounded_mcq)."""

import io
import json
import random
import re
from collections import Counter
from pathlib import Path

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


# ------------------------------------------------------------------ questions from dense captions

DENSE = Path(__file__).parent / "fixtures" / "dense_captions"


def real_replies() -> list[dict]:
    """gpt-4o's questions from DOCCI captions, as LongPerceptualThoughts published them."""
    return json.loads((DENSE / "mcq_outputs.json").read_text())["records"]


def docci_caption(image_id: str) -> str:
    return next(r["caption"] for r in json.loads((DENSE / "captions.json").read_text())["records"]
                if image_id in r["origin"])


def test_real_tagged_replies_parse_to_the_questions_their_authors_parsed():
    """The four published replies (one question per line, options on their own lines with trailing
    spaces, answers as "B) text", a chatty preamble) all parse whole, and train_00004's ten questions
    and answers are those the LongPerceptualThoughts repository parsed itself."""
    for i, r in enumerate(real_replies()):
        kept, rejected = grounded.caption_questions(r["output"], r["caption_or_context"], 10, f"docci/{i}",
                                                    require_evidence=False)
        assert len(kept) in (7, 10) and not rejected, (i, rejected)
    theirs = json.loads((DENSE / "mcq_outputs.json").read_text())["repo_parsed_train_00004"]
    kept, _ = grounded.caption_questions(real_replies()[2]["output"], "", 10, "docci/2", require_evidence=False)
    assert [(q.question, q.correct) for q in kept] == [(t["mcq_question"], t["mcq_answer"]) for t in theirs]


def test_the_answer_letter_is_no_cue_after_the_shuffle():
    """In the 34 published questions gpt-4o put the answer at B 19 times and never at D; shuffled
    (seeded by the record), every letter holds the answer at least 5 times."""
    written, ours = Counter(), Counter()
    for i, r in enumerate(real_replies()):
        for item in grounded.tagged_items(r["output"]):
            answer = re.sub(r"^[A-D]\) ", "", item["answer"]).casefold()
            written[LETTERS[[o.casefold() for o in item["options"]].index(answer)]] += 1
        kept, _ = grounded.caption_questions(r["output"], "", 10, f"docci/{i}", require_evidence=False)
        ours.update(q.answer for q in kept)
    assert written["B"] == 19 and written["D"] == 0 and sum(written.values()) == 34
    assert sum(ours.values()) == 34 and min(ours[letter] for letter in LETTERS) >= 5


def _reply(*questions, fenced=True) -> str:
    body = json.dumps({"questions": list(questions)})
    return f"<think>I should quote the caption.</think>\n```json\n{body}\n```" if fenced else body


FLAGS = {"question": "How many flags does the concrete pot hold?", "options": ["Two", "Three", "Four", "Five"],
         "answer": "B", "evidence": "a cylindrical concrete pot that holds three flags"}


@pytest.mark.parametrize("change,reason", [
    ({"evidence": "The pot clearly holds three flags."}, "ungrounded"),  # a paraphrase, not a quote
    ({"evidence": ""}, "ungrounded"),
    ({"options": ["Two", "Three", "three", "Five"]}, "bad_options"),
    ({"options": ["Three"]}, "bad_options"),
    ({"options": ["A", "B", "C", "D", "E"]}, "bad_options"),
    ({"answer": "E"}, "bad_answer"),
    ({"answer": "Six"}, "bad_answer"),
    ({"question": "Flags?"}, "short_question"),
])
def test_each_failed_check_sets_the_question_aside_with_its_reason(change, reason):
    caption = docci_caption("train_00004")
    other = {**FLAGS, "question": "What is partially visible to the right?", "answer": "An ATM",
             "options": ["A bicycle", "An ATM", "A lamp post", "A bench"], "evidence": "an ATM is partially visible"}
    kept, rejected = grounded.caption_questions(_reply({**FLAGS, **change}, other), caption, 4, "docci/train_00004")
    assert [q.correct for q in kept] == ["An ATM"]
    assert [(r.index, r.reason) for r in rejected] == [(0, reason)]


def test_a_reply_is_read_after_the_reasoning_and_whole_reply_failures_are_one_reason():
    caption = docci_caption("train_00004")
    kept, rejected = grounded.caption_questions(_reply(FLAGS), caption, 4, "s")
    assert [q.correct for q in kept] == ["Three"] and not rejected and kept[0].facts == [FLAGS["evidence"]]
    assert kept[0].kind == "caption"
    cut = _reply(FLAGS, fenced=False)[:60]
    assert grounded.caption_questions(cut, caption, 4, "s")[1][0].reason == "unparsable_reply"
    assert grounded.caption_questions("I cannot help with that.", caption, 4, "s")[1][0].reason == "unparsable_reply"
    assert grounded.caption_questions('{"questions": []}', caption, 4, "s")[1][0].reason == "no_questions"
    again = grounded.caption_questions(_reply(FLAGS, FLAGS, {**FLAGS, "question": "How many flags stand in the pot?"}),
                                       caption, 1, "s")[1]
    assert [(r.index, r.reason) for r in again] == [(1, "repeated_question"), (2, "over_limit")]


def test_dense_caption_reads_a_text_or_a_conversation_reply():
    from mmfr.adapters import dense_caption

    caption = docci_caption("train_00000")
    assert dense_caption(caption + "  ") == caption
    assert dense_caption([{"user": "Describe the image in detail.", "assistant": caption}]) == caption  # FineVision
    assert dense_caption([{"from": "human", "value": "<image>\nDescribe"}, {"from": "gpt", "value": caption}]) == caption
    assert dense_caption("") is None and dense_caption(None) is None


def test_questions_are_written_per_part_journaled_and_standardised_the_same_on_any_workers(tmp_path, monkeypatch):
    """The demo's captioned scenes through the real download, the question writer (scripted: it reads
    only the caption) in 3 parts, and standardise with 1 and 2 workers: every download row gets one
    reply, a rerun asks the model nothing, the shards are the same bytes, and raw = kept + dropped with
    the writer's faults counted by reason."""
    import pyarrow.parquet as pq

    from mmfr import generate
    from mmfr.questions import part_rows, write_questions
    from mmfr.sources import ImagePolicy, download, standardise

    spec = {"name": "capt", "kind": "synthetic_detection", "adapter": "caption_mcq", "dense_captions": True, "n": 24,
            "domain": "general", "questions_per_image": 3, "composed_per_image": 1}
    raw = str(tmp_path / "data.parquet")
    download(spec, raw, str(tmp_path / "manifest.json"), str(tmp_path / "img"), 3)
    assert sorted(i for p in range(3) for i in part_rows(24, p, 3)) == list(range(24))
    writer = {"backend": "scripted", "model": "mmfr-scripted-question-writer", "revision": "v1",
              "mistakes": {"malformed_json": 0.15, "ungrounded": 0.15, "bad_options": 0.15}}
    parts = [str(tmp_path / f"q{p}.parquet") for p in range(3)]
    for p, path in enumerate(parts):
        write_questions(raw, spec, p, 3, path, writer, 5, str(tmp_path / f"q{p}.jsonl"))
    assert [r["index"] for path in parts for r in pq.read_table(path).to_pylist()] == list(range(24))
    calls = []
    real = generate.make_backend
    monkeypatch.setattr("mmfr.questions.make_backend", lambda role: calls.append(role) or real(role))
    write_questions(raw, spec, 1, 3, str(tmp_path / "again.parquet"), writer, 5, str(tmp_path / "q1.jsonl"))
    assert not calls and (tmp_path / "again.parquet").read_bytes() == (tmp_path / "q1.parquet").read_bytes()
    counts = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        counts.append(standardise(raw, spec, [str(out / "0.parquet"), str(out / "1.parquet")], str(out / "dropped.parquet"),
                                  None, ImagePolicy(), images_dir=str(tmp_path / "img"), threads=workers, replies=parts))
    assert counts[0] == counts[1]
    for name in ("0.parquet", "1.parquet", "dropped.parquet"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    c = counts[0]
    assert c["raw"] == c["kept"] + sum(n for by in c["dropped"].values() for n in by.values())
    assert {"unparsable_reply", "ungrounded", "bad_options"} <= set(c["dropped"]["quarantined"]), c
    kept = [r for name in ("0.parquet", "1.parquet") for r in pq.read_table(tmp_path / "w1" / name).to_pylist()]
    assert {json.loads(r["metadata"])["lgt_kind"] for r in kept} == {"caption", "caption+caption"}
    assert all(f in json.loads(r["metadata"])["dense_caption"] for r in kept for f in json.loads(r["metadata"])["facts"]
               if json.loads(r["metadata"])["lgt_kind"] == "caption")
    with pytest.raises(ValueError, match="caption_mcq"):
        standardise(raw, spec, [str(tmp_path / "x.parquet")], str(tmp_path / "xd.parquet"), None, ImagePolicy())
