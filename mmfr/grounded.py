"""Long Grounded Thoughts, stages "scale" and "complexity": questions whose answers follow from an
image's object boxes, so every one is verifiable without a model.

"scale": from the labelled boxes of a detection record (COCO layout: ``objects: {bbox, category}``),
simple four-option questions: how many objects of a class, which object is furthest to one side,
where one object lies relative to another, which object covers the most area. A question is asked
only when the boxes decide it clearly (no ties within ``MARGIN`` of the image, no crowding).

"scale" also has a text LLM write questions from an image's dense caption (``caption_questions``):
those are checked here (JSON, options, an answer that names one option, evidence quoted from the
caption), and what fails is set aside with its reason.

"complexity": two simple questions on the same image merged into one harder question that stays
verifiable: the sum of two counts, or both answers at once (the option that pairs them correctly).

Each question carries the facts it was derived from (``facts``), for audit and for the trace
teacher's reference; the options are shuffled with a seed from the record, so a rerun is identical.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

from mmfr.options import LETTERS, letter_of, lettered, number_options

MARGIN = 0.05  # fraction of the image: positions closer than this are a tie
MAX_COUNT = 12  # counting questions only up to this many objects
SIDES = {"left": ("cx", 1, "furthest to the left"), "right": ("cx", -1, "furthest to the right"),
         "top": ("cy", 1, "closest to the top"), "bottom": ("cy", -1, "closest to the bottom")}


@dataclass(frozen=True)
class Box:
    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


@dataclass
class Question:
    kind: str
    question: str  # without the options
    choices: list[str]
    answer: str  # the correct option's letter
    facts: list[str] = field(default_factory=list)

    @property
    def correct(self) -> str:
        return self.choices[LETTERS.index(self.answer)]

    def text(self) -> str:
        return self.question + "\n" + "\n".join(f"({letter}) {c}" for letter, c in zip(LETTERS, self.choices))


def boxes_from(objects: dict | list, bbox_format: str = "xywh", labels: list[str] | None = None) -> list[Box]:
    """Boxes from a detection record's objects: ``{"bbox": [...], "category": [...]}`` (columns) or
    ``[{"bbox": ..., "category"|"label": ...}]`` (rows). A numeric category is looked up in ``labels``."""
    if isinstance(objects, dict):
        rows = [{"bbox": b, "category": c} for b, c in zip(objects.get("bbox") or [], objects.get("category") or [])]
    else:
        rows = [{"bbox": o.get("bbox"), "category": o.get("category", o.get("label"))} for o in objects or []]
    boxes = []
    for row in rows:
        category, (a, b, c, d) = row["category"], (float(v) for v in row["bbox"])
        if not isinstance(category, str):
            if not labels:
                raise ValueError(f"category {category!r} is a number: give the source's `labels` (class names)")
            category = labels[int(category)]
        x1, y1 = (a + c, b + d) if bbox_format == "xywh" else (c, d)
        boxes.append(Box(category.replace("_", " "), a, b, x1, y1))
    return boxes


def _unique(boxes: list[Box]) -> list[Box]:
    counts: dict[str, int] = {}
    for b in boxes:
        counts[b.label] = counts.get(b.label, 0) + 1
    return [b for b in boxes if counts[b.label] == 1]


def _labels(boxes: list[Box]) -> list[str]:
    return list(dict.fromkeys(b.label for b in boxes))


IRREGULAR = {"person": "people", "mouse": "mice", "knife": "knives", "bus": "buses", "wine glass": "wine glasses",
             "child": "children", "man": "men", "woman": "women", "sheep": "sheep", "fish": "fish"}


def plural(label: str) -> str:
    """'cups', 'benches', 'people'; a label that already ends in s ('skis', 'scissors') stays."""
    if label in IRREGULAR:
        return IRREGULAR[label]
    if label.endswith(("ch", "sh", "x")):
        return label + "es"
    return label if label.endswith("s") else label + "s"


def ask_count(rng: random.Random, boxes: list[Box], width: float, height: float) -> Question | None:
    label = rng.choice(_labels(boxes))
    n = sum(b.label == label for b in boxes)
    if n > MAX_COUNT:
        return None
    choices = number_options(rng, n, [n - 1, n + 1, n + 2], minimum=1)
    return Question("count", f"How many {plural(label)} are there in the image?", choices,
                    letter_of(choices, str(n)), [f"{n} boxes are labelled {label}"])


def ask_extreme(rng: random.Random, boxes: list[Box], width: float, height: float) -> Question | None:
    side = rng.choice(list(SIDES))
    attr, sign, wording = SIDES[side]
    unique = _unique(boxes)
    if len(unique) < 4:
        return None
    ordered = sorted(unique, key=lambda b: sign * getattr(b, attr))
    extent = width if attr == "cx" else height
    first = ordered[0]
    # the winner must beat every other object of the image by the margin, not only the unique ones
    if any(sign * (getattr(b, attr) - getattr(first, attr)) < MARGIN * extent for b in boxes if b is not first):
        return None
    choices = lettered(rng, first.label, [b.label for b in rng.sample(ordered[1:], len(ordered) - 1)])
    return Question("extreme", f"Which of these objects is {wording} of the image?", choices,
                    letter_of(choices, first.label),
                    [f"{b.label}: centre ({b.cx:.0f}, {b.cy:.0f})" for b in ordered])


def ask_relation(rng: random.Random, boxes: list[Box], width: float, height: float) -> Question | None:
    unique = _unique(boxes)
    pairs = [(a, b) for a in unique for b in unique if a is not b]
    rng.shuffle(pairs)
    for a, b in pairs:
        for attr, extent, (less, more), ask in (("cx", width, ("left", "right"), "to the left or to the right of"),
                                                 ("cy", height, ("above", "below"), "above or below")):
            gap = getattr(a, attr) - getattr(b, attr)
            if abs(gap) >= 2 * MARGIN * extent:
                correct = less if gap < 0 else more
                choices = [less, more]
                rng.shuffle(choices)
                return Question("relation", f"Is the {a.label} {ask} the {b.label}? Compare the centres of the "
                                "two objects.", choices, letter_of(choices, correct),
                                [f"{a.label}: centre ({a.cx:.0f}, {a.cy:.0f})", f"{b.label}: centre ({b.cx:.0f}, {b.cy:.0f})"])
    return None


def ask_largest(rng: random.Random, boxes: list[Box], width: float, height: float) -> Question | None:
    unique = _unique(boxes)
    if len(unique) < 4:
        return None
    ordered = sorted(unique, key=lambda b: -b.area)
    if ordered[0].area < 1.5 * ordered[1].area or any(b.area >= ordered[0].area for b in boxes if b is not ordered[0]):
        return None
    shown = [ordered[0], *rng.sample(ordered[1:], 3)]
    choices = lettered(rng, shown[0].label, [b.label for b in shown[1:]])
    return Question("largest", "Which of these objects covers the largest area of the image?", choices,
                    letter_of(choices, shown[0].label), [f"{b.label}: {b.area:.0f} px²" for b in shown])


ASK = {"count": ask_count, "extreme": ask_extreme, "relation": ask_relation, "largest": ask_largest}


def simple_questions(rng: random.Random, boxes: list[Box], width: float, height: float, n: int) -> list[Question]:
    """Up to ``n`` distinct questions the boxes decide, kinds taken in turn from a shuffled order."""
    if not boxes:
        return []
    kinds, out, seen = list(ASK), [], set()
    rng.shuffle(kinds)
    for attempt in range(4 * n * len(kinds)):
        if len(out) == n:
            break
        q = ASK[kinds[attempt % len(kinds)]](rng, boxes, width, height)
        if q is not None and q.question not in seen:
            seen.add(q.question)
            out.append(q)
    return out


def compose(rng: random.Random, first: Question, second: Question) -> Question:
    """One harder question from two on the same image: the sum of two counts, or both answers."""
    if first.kind == second.kind == "count":
        a, b = int(first.correct), int(second.correct)
        total = a + b
        choices = number_options(rng, total, [a, b, total - 1, total + 1], minimum=1)
        ask = (first.question.removeprefix("How many ").removesuffix(" are there in the image?"),
               second.question.removeprefix("How many ").removesuffix(" are there in the image?"))
        return Question("count_sum", f"How many {ask[0]} and {ask[1]} are there in the image altogether?",
                        choices, letter_of(choices, str(total)), [*first.facts, *second.facts])
    correct = f"{first.correct}; {second.correct}"
    wrong = [f"{x}; {y}" for x in first.choices for y in second.choices if (x, y) != (first.correct, second.correct)]
    rng.shuffle(wrong)
    choices = lettered(rng, correct, wrong)
    return Question(f"{first.kind}+{second.kind}", "Answer both questions about the image.\n"
                    f"1. {first.question} (options: {', '.join(first.choices)})\n"
                    f"2. {second.question} (options: {', '.join(second.choices)})\n"
                    "Which option gives the answer to 1, then the answer to 2?", choices,
                    letter_of(choices, correct), [*first.facts, *second.facts])


def questions_for(seed: str, boxes: list[Box], width: float, height: float, n_simple: int,
                  n_composed: int) -> list[Question]:
    """An image's simple questions, then up to ``n_composed`` compositions of pairs of them."""
    rng = random.Random(seed)
    simple = simple_questions(rng, boxes, width, height, n_simple)
    pairs = [(a, b) for i, a in enumerate(simple) for b in simple[i + 1:]]
    rng.shuffle(pairs)
    return simple + [compose(rng, a, b) for a, b in pairs[:n_composed]]


def solve(metadata: dict) -> dict:
    """The scripted teacher's write-up of a grounded question (as ``mmfr.demo.synth.solution`` gives for
    a scene program): the facts the boxes give, and the option they decide."""
    return {"facts": [f"From the image: {f}." for f in metadata["facts"]],
            "setup": "I compare these observations with each option.",
            "steps": [f"Only option {metadata['answer']} agrees with what I observed."],
            "check": "Re-reading the positions and counts, the same option holds.", "answer": metadata["answer"]}


def describe(metadata: dict) -> dict:
    """A structured caption from the image's labelled boxes, for the scripted captioner."""
    boxes = boxes_from(metadata["objects"], metadata.get("bbox_format", "xywh"))
    labels = _labels(boxes)
    return {"category": "scene with objects", "summary": f"An image with {len(boxes)} labelled objects.",
            "components": [f"{sum(b.label == label for b in boxes)} x {label}" for label in labels],
            "interactions": [], "implicit": [], "ambiguities": []}


# --------------------------------------------------------------------------- from dense captions
# Long Grounded Thoughts' "scale" stage also has a text LLM write multiple-choice questions from an
# image's dense caption (models.question_writer, mmfr/prompts/questions.txt). Its reply is JSON; each
# question it holds is checked here, and one that fails a check is set aside with its reason, never
# repaired. The options are shuffled with a seed from the record: models put the right answer first
# far more often than chance, and the answer letter must not be a cue.


_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_OPTION_LABEL = re.compile(r"^\s*\(?([A-Da-d])[).:]\s+")
_ANSWER_LETTER = re.compile(r"^\s*(?:option\s+)?\(?([A-Da-d])\)?[.:]?\s*$", re.I)
_SPACE = re.compile(r"\s+")
MIN_QUESTION_WORDS = 3


@dataclass(frozen=True)
class Rejected:
    """A question of a reply that did not pass, or the whole reply (``index`` -1)."""

    index: int
    reason: str
    detail: str = ""


def _normal(text: str) -> str:
    return _SPACE.sub(" ", str(text)).strip().strip(".").casefold()


def reply_json(reply: str):
    """The JSON value of a question writer's reply: after a reasoning model's ``</think>``, the
    first fenced block if there is one, else from the first bracket to the last. Raises ValueError."""
    body = reply.rsplit("</think>", 1)[-1]
    if fenced := _FENCED.search(body):
        body = fenced.group(1)
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if not starts:
        raise ValueError("no JSON object or list in the reply")
    start = min(starts)
    end = max(body.rfind("}"), body.rfind("]"))
    if end < start:
        raise ValueError("the JSON is not closed")
    try:
        return json.loads(body[start:end + 1])
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e}") from None


_TAGGED = re.compile(r"<question>(.*?)</question>\s*<choices>(.*?)</choices>\s*<answer>(.*?)</answer>"
                     r"(?:.*?<evidence>(.*?)</evidence>)?", re.S)
_INLINE_LABEL = re.compile(r"\(([A-D])\)\s*")


def tagged_items(reply: str) -> list:
    """The questions of a reply in the tagged layout (LongPerceptualThoughts' released MCQs:
    ``<question>..</question> <choices> (A) .. (B) .. </choices> <answer>..</answer>``, optionally
    ``<evidence>``), as the JSON layout's objects; a block that does not parse is ``None``."""
    items = []
    for block in reply.split("<question>")[1:]:
        m = _TAGGED.match("<question>" + block)
        if not m:
            items.append(None)
            continue
        parts = _INLINE_LABEL.split(m.group(2))  # ['', 'A', 'x ', 'B', 'y ', ...]
        options = [text.strip() for text in parts[2::2]]
        items.append({"question": m.group(1).strip(), "options": options if len(parts) > 1 else m.group(2).strip(),
                      "answer": m.group(3).strip(), "evidence": (m.group(4) or "").strip()})
    return items


def _options(item: dict) -> list[str]:
    raw = item.get("options", item.get("choices"))
    if isinstance(raw, dict):  # {"A": "...", "B": "..."}
        raw = [raw[k] for k in sorted(raw)]
    if not isinstance(raw, list) or not all(isinstance(o, (str, int, float)) and not isinstance(o, bool) for o in raw):
        raise ValueError("options must be a list of texts")
    options = [_OPTION_LABEL.sub("", str(o)).strip() for o in raw]
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"{len(options)} options (2 to {len(LETTERS)} are asked for)")
    if any(not o for o in options):
        raise ValueError("an option is empty")
    if len({_normal(o) for o in options}) < len(options):
        raise ValueError(f"options repeat: {options}")
    return options


def _answer_index(answer, options: list[str]) -> int:
    text = str(answer if answer is not None else "").strip()
    if m := _ANSWER_LETTER.match(text):
        index = "ABCD".index(m.group(1).upper())
        if index < len(options):
            return index
        raise ValueError(f"answer {text!r} names no option ({len(options)} options)")
    body = _OPTION_LABEL.sub("", text)
    matches = [i for i, o in enumerate(options) if _normal(o) == _normal(body)]
    if len(matches) != 1:
        raise ValueError(f"answer {text!r} is neither an option's letter nor one option's text")
    return matches[0]


def caption_question(item, caption: str, rng: random.Random, require_evidence: bool = True) -> Question:
    """One question of a writer's reply as a ``Question`` (kind ``caption``; its facts, the caption
    sentence it rests on), options shuffled. Raises ValueError with the reason's name first:
    ``malformed_question``, ``short_question``, ``bad_options``, ``bad_answer``, ``ungrounded``."""
    if not isinstance(item, dict):
        raise ValueError(f"malformed_question: {type(item).__name__}, not an object")
    question = item.get("question")
    if not isinstance(question, str) or len(question.split()) < MIN_QUESTION_WORDS:
        raise ValueError(f"short_question: {question!r}")
    try:
        options = _options(item)
    except ValueError as e:
        raise ValueError(f"bad_options: {e}") from None
    try:
        correct = options[_answer_index(item.get("answer"), options)]
    except ValueError as e:
        raise ValueError(f"bad_answer: {e}") from None
    evidence = item.get("evidence")
    evidence = evidence.strip() if isinstance(evidence, str) else ""
    if require_evidence and not evidence:
        raise ValueError("ungrounded: no evidence quoted")
    if require_evidence and _normal(evidence) not in _normal(caption):
        raise ValueError(f"ungrounded: the evidence {evidence!r} is not a quote of the caption")
    rng.shuffle(options)
    return Question("caption", _SPACE.sub(" ", question).strip(), options, LETTERS[options.index(correct)],
                    [evidence] if evidence else [])


def caption_questions(reply: str, caption: str, n: int, seed: str,
                      require_evidence: bool = True) -> tuple[list[Question], list[Rejected]]:
    """Up to ``n`` questions a writer's reply holds about one caption, and what was set aside:
    the reply is JSON (``{"questions": [...]}`` or a list, as prompt ``questions`` asks) or tagged
    (``tagged_items``). Set aside are the whole reply (``unparsable_reply``, ``no_questions``), or
    one question (the reasons of ``caption_question``, ``repeated_question``, ``over_limit``: past
    the ``n`` asked for)."""
    body = reply.rsplit("</think>", 1)[-1]
    if "<question>" in body:
        items = tagged_items(body)
    else:
        try:
            value = reply_json(body)
        except ValueError as e:
            return [], [Rejected(-1, "unparsable_reply", str(e))]
        items = value.get("questions") if isinstance(value, dict) else value
        if not isinstance(items, list) or not items:
            return [], [Rejected(-1, "no_questions", f"expected a list of questions, got {str(value)[:200]}")]
    rng = random.Random(seed)
    kept, rejected, seen = [], [], set()
    for k, item in enumerate(items):
        try:
            q = caption_question(item, caption, rng, require_evidence)
        except ValueError as e:
            reason, _, detail = str(e).partition(": ")
            rejected.append(Rejected(k, reason, detail))
            continue
        if _normal(q.question) in seen:
            rejected.append(Rejected(k, "repeated_question", q.question))
        elif len(kept) == n:
            rejected.append(Rejected(k, "over_limit", f"{n} questions asked for"))
        else:
            seen.add(_normal(q.question))
            kept.append(q)
    return kept, rejected


def composed(seed: str, simple: list[Question], n: int) -> list[Question]:
    """Up to ``n`` compositions of pairs of an image's questions ("complexity"), seeded."""
    rng = random.Random(seed)
    pairs = [(a, b) for i, a in enumerate(simple) for b in simple[i + 1:]]
    rng.shuffle(pairs)
    return [compose(rng, a, b) for a, b in pairs[:n]]
