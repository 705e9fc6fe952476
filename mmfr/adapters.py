"""Source adapters: one record of a public dataset → rows of the RAW layout (``mmfr.schema.RAW``).

A record arrives as ``datasets`` yields it with Image columns left undecoded: an image is a
``{"bytes", "path"}`` dict, a list of them, or a plain path (JSON datasets, resolved against
``spec["image_root"]``). Each source family has a small adapter that knows its column names and its
quirks; where a name is not confirmed it lists candidates and the first one present wins, and a
source's ``fields`` (canonical name → column) overrides any of them. The shared helpers do the rest:
images to bytes, options parsed out of the question text, the short final answer of a worked
solution, the answer type and the option letter of an answer.

A record that lacks a column its adapter needs raises ``AdapterError`` (so the first record of a
wrongly mapped source fails the job); a record with a bad value (no image file, empty question) is
passed on for the standardiser to quarantine.
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmfr import grounded
from mmfr.answers import answer_and_solution, as_choices, detect_answer_type, split_choices, to_letter, unlabelled
from mmfr.config import COMPOSED_PER_IMAGE, QUESTIONS_PER_IMAGE
from mmfr.schema import RAW

RAW_KEYS = tuple(RAW.names)


class AdapterError(ValueError):
    """A source's records do not have the columns its adapter needs."""


class RecordError(AdapterError):
    """One record cannot be read (no gold answer, a gold naming no option): it is set aside with
    this reason, and the rest of the source goes on."""


def adapt(rec: dict, spec: dict, index: int) -> list[dict]:
    """RAW rows of one record (several for a multi-turn FineVision row), by ``spec["adapter"]``."""
    name = spec.get("adapter", "generic")
    if name not in ADAPTERS:
        raise AdapterError(f"source {spec.get('name', '?')!r}: unknown adapter {name!r} "
                           f"(one of {', '.join(sorted(ADAPTERS))})")
    return ADAPTERS[name](rec, spec, index)


# --------------------------------------------------------------------------- images

def image_bytes(value, image_root: str | None = None) -> bytes:
    """The encoded bytes of one image value: a ``{"bytes", "path"}`` dict, raw bytes, a path (relative
    paths resolve against ``image_root``) or a decoded PIL image. b"" when there is nothing to read,
    so the standardiser quarantines the row as image_missing."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        data = value.get("bytes")
        if isinstance(data, str):  # some exports keep the bytes base64-encoded
            try:
                return base64.b64decode(data, validate=True)
            except ValueError:
                return b""
        if data:
            return bytes(data)
        return image_bytes(value.get("path"), image_root) if value.get("path") else b""
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and image_root:
            path = Path(image_root) / path
        try:
            return path.read_bytes()
        except OSError:
            return b""
    if hasattr(value, "save"):  # a decoded PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    return b""


def _images(value, image_root: str | None) -> list[bytes]:
    """Every image of a column value: a list keeps its length (a bad entry becomes b"")."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [image_bytes(v, image_root) for v in value]
    return [image_bytes(value, image_root)]


# --------------------------------------------------------------------------- options

# --------------------------------------------------------------------------- rows

_IMAGE_MARKER = re.compile(r"<image>\s*|[ \t]*<image_start>\s*\[[^\]]*\]\s*<image_end>")


def clean_question(question):
    """The question without image placeholders (``<image>``, Zebra-CoT's ``<image_start>[…]<image_end>``)."""
    return _IMAGE_MARKER.sub("", question).strip() if isinstance(question, str) else question


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):  # bytes (images), odd types
        return False
    return True


def make_row(rec: dict, spec: dict, index: int, *, used, question, answer=None, solution=None,
             choices: list[str] | None = None, images=(), original_id=None, origin=None, extra=None) -> dict:
    """One RAW row. ``choices=None`` parses them from the question; the answer type is the source's
    ``answer_type`` or detected, and a choice answer given as option text becomes its letter. The
    record's other JSON-able, non-null columns (not in ``used``) go to ``metadata``."""
    question = clean_question(question)
    answer, solution = answer_and_solution(answer, solution)
    if choices is None:
        choices = split_choices(question)[1]
    choices = [str(c) for c in choices]
    kind = spec.get("answer_type") or detect_answer_type(answer, choices)
    if kind == "choice" and isinstance(answer, str):
        answer = to_letter(answer, choices) or answer
    meta = {k: v for k, v in rec.items() if k not in used and v is not None and _jsonable(v)}
    meta.update(extra or {})
    return {
        "original_id": str(index if original_id is None else original_id),
        "question": question,
        "answer": answer,
        "solution": solution,
        "answer_type": kind,
        "choices": choices,
        "images": list(images),
        "metadata": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str),
        "domain": spec.get("domain"),
        "origin": None if origin in (None, "") else str(origin),
    }


def _missing(rec: dict, spec: dict, fields: dict[str, tuple]) -> AdapterError:
    wanted = "; ".join(f"{k} (looked for {', '.join(map(repr, v))})" for k, v in fields.items())
    return AdapterError(
        f"source {spec.get('name', '?')!r}, adapter {spec.get('adapter', 'generic')!r}: the records have no "
        f"column for {wanted}; columns found: {', '.join(sorted(map(str, rec))) or 'none'}. "
        f"Map the columns with the source's `fields`.")


def _pick(rec: dict, spec: dict, key: str, candidates: tuple) -> tuple[str | None, tuple]:
    """(column, names tried): the ``fields`` override, else the first candidate holding a value, else
    the first candidate present (null)."""
    override = (spec.get("fields") or {}).get(key)
    names = (override,) if override else tuple(candidates)
    present = [n for n in names if n in rec]
    return next((n for n in present if rec[n] is not None), present[0] if present else None), names


def _chat(turns) -> tuple[str | None, str | None]:
    """(first user text, the assistant reply after it) of a [{from, value}] or [{role, content}] list."""
    question = reply = None
    for turn in turns or []:
        if not isinstance(turn, dict):
            continue
        role = str(turn.get("from") or turn.get("role") or "").lower()
        text = turn.get("value", turn.get("content"))
        if isinstance(text, list):  # content parts: [{"type": "text", "text": ...}, {"type": "image"}]
            text = "\n".join(p.get("text") or "" for p in text if isinstance(p, dict) and p.get("type") == "text")
        if role in ("human", "user") and question is None:
            question = text
        elif role in ("gpt", "assistant", "model") and question is not None:
            reply = text
            break
    return question, reply


@dataclass(frozen=True)
class Layout:
    """Candidate column names per canonical field of a flat (one question per row) source."""
    question: tuple = ("question",)
    answer: tuple = ("answer",)
    solution: tuple = ()
    image: tuple = ("image", "images")
    choices: tuple = ()
    id: tuple = ("id",)
    origin: tuple = ()
    chat: tuple = ()  # a conversation column, read when the record has no question column


def flat(rec: dict, spec: dict, index: int, layout: Layout) -> list[dict]:
    """The row of a flat record: question (or a conversation), answer and/or solution, images."""
    cols, tried = {}, {}
    for key in ("question", "answer", "solution", "image", "choices", "id", "origin", "chat"):
        cols[key], tried[key] = _pick(rec, spec, key, getattr(layout, key))
    if cols["solution"] == cols["answer"]:
        cols["solution"] = None
    need = {}
    if not (cols["question"] or cols["chat"]):
        need["question"] = tried["question"] + tried["chat"]
    if not (cols["answer"] or cols["solution"] or cols["chat"]):
        need["answer"] = tried["answer"] + tried["solution"] + tried["chat"]
    if not cols["image"]:
        need["image"] = tried["image"]
    if need:
        raise _missing(rec, spec, need)
    value = {k: rec[c] if c else None for k, c in cols.items()}
    question, reply = value["question"], None
    if isinstance(question, list):  # a chat prompt (verl layout)
        question, reply = _chat(question)
    elif question is None and cols["chat"]:
        question, reply = _chat(value["chat"])
    answer, solution = value["answer"], value["solution"]
    if answer is None and solution is None:
        answer = reply
    elif solution is None:
        solution = reply
    choices = as_choices(value["choices"]) or None
    return [make_row(rec, spec, index, used=set(cols.values()), question=question, answer=answer,
                     solution=solution, choices=choices, images=_images(value["image"], spec.get("image_root")),
                     original_id=value["id"], origin=value["origin"])]


# --------------------------------------------------------------------------- adapters

def raw(rec: dict, spec: dict, index: int) -> list[dict]:
    """Rows already in the RAW layout (generated sources). Missing keys become None, except the id
    (the row index) and the domain (the source's); other keys are folded into metadata."""
    row = {k: rec.get(k) for k in RAW_KEYS}
    row["original_id"] = str(index if row["original_id"] is None else row["original_id"])
    row["domain"] = row["domain"] or spec.get("domain")
    extra = {k: v for k, v in rec.items() if k not in RAW_KEYS and v is not None and _jsonable(v)}
    meta = row["metadata"]
    if extra or isinstance(meta, dict):
        meta = json.loads(meta) if isinstance(meta, str) and meta else meta or {}
        row["metadata"] = json.dumps({**extra, **meta}, sort_keys=True, ensure_ascii=False, default=str)
    return [row]


def generic(rec: dict, spec: dict, index: int) -> list[dict]:
    """Any flat source: question, answer, solution, image (or images), choices, id, origin columns,
    renamed with the source's ``fields``."""
    return flat(rec, spec, index, Layout(solution=("solution",), choices=("choices",)))


def finevision(rec: dict, spec: dict, index: int) -> list[dict]:
    """HuggingFaceM4/FineVision subsets. Confirmed (dataset card, loaders): ``images`` (list),
    ``texts`` (list of {user, assistant} turns), ``source``, and per-turn quality ratings (kept in
    metadata). One row per turn, ids "<row>#<turn>" when a row has several; later turns without a
    question are dropped. The images belong to every turn. Answers range from letters and
    "Answer: B" (ai2d_merged, tqa, scienceqa, raven) to long solutions (visualwebinstruct).
    """
    cols, tried = {}, {}
    for key, names in (("texts", ("texts",)), ("image", ("images", "image")), ("id", ("id",)),
                       ("origin", ("source",))):
        cols[key], tried[key] = _pick(rec, spec, key, names)
    if not (cols["texts"] and cols["image"]):
        raise _missing(rec, spec, {k: tried[k] for k in ("texts", "image") if not cols[k]})
    turns = [t if isinstance(t, dict) else {} for t in rec[cols["texts"]] or []] or [{}]
    images = _images(rec[cols["image"]], spec.get("image_root"))
    row_id = index if not cols["id"] or rec[cols["id"]] is None else rec[cols["id"]]
    origin = rec[cols["origin"]] if cols["origin"] else None
    rows, several = [], len(turns) > 1
    for turn, text in enumerate(turns):
        user = text.get("user")
        if turn and not (user.strip() if isinstance(user, str) else user):
            continue
        rows.append(make_row(rec, spec, index, used=set(cols.values()), question=user,
                             answer=text.get("assistant"), images=images, origin=origin,
                             original_id=f"{row_id}#{turn}" if several else row_id,
                             extra={"turn": turn} if several else None))
    return rows


def mmr1(rec: dict, spec: dict, index: int) -> list[dict]:
    """MMR1/MMR1-SFT (long-CoT trajectories with a verified short answer). Nothing confirmed: the
    question, short answer, response, image, id and upstream-source columns are taken from common
    names, and a messages/conversations layout is read too; the source column is the origin."""
    return flat(rec, spec, index, Layout(
        question=("question", "problem", "prompt", "query"),
        answer=("answer", "short_answer", "final_answer", "gt_answer", "ground_truth"),
        solution=("response", "solution", "cot", "reasoning"),
        image=("images", "image", "image_path", "image_paths"), id=("id", "idx", "uid", "qid"),
        origin=("source", "data_source", "dataset", "origin"), chat=("messages", "conversations")))


def walton_coldstart(rec: dict, spec: dict, index: int) -> list[dict]:
    """WaltonFuture/Multimodal-Cold-Start. Confirmed by two loaders: ``problem``, ``answer`` (a
    distilled reasoning response ending in ``\\boxed{}``: it becomes the solution, the boxed content
    the answer), ``images`` (list)."""
    return flat(rec, spec, index, Layout(question=("problem", "question"), image=("images", "image")))


def virl39k(rec: dict, spec: dict, index: int) -> list[dict]:
    """TIGER-Lab/ViRL39K. Two layouts: the mirror's ``problem``/``answer``/``images``/``qid``/``id``
    (seen) and the release's ``question``/``answer`` (``\\boxed{}``)/``image`` (list of paths)/
    ``qid``/``source`` (from loaders, unconfirmed). ``source`` is the origin."""
    return flat(rec, spec, index, Layout(question=("problem", "question"), image=("images", "image"),
                                         id=("qid", "id"), origin=("source",)))


def euclid30k(rec: dict, spec: dict, index: int) -> list[dict]:
    """LiamLian0727/Euclid30K (verl-style parquet). ``problem``/``answer``/``images`` are seen in a
    script that reads Euclid30K_train.parquet; the verl layout (``prompt`` chat list,
    ``reward_model.ground_truth``) is accepted too. Part of the questions are Chinese."""
    reward = rec.get("reward_model")
    if isinstance(reward, dict) and "ground_truth" not in rec:
        rec = {**rec, "ground_truth": reward.get("ground_truth")}
    return flat(rec, spec, index, Layout(question=("problem", "question", "prompt"),
                                         answer=("answer", "ground_truth"), image=("images", "image")))


def mmk12(rec: dict, spec: dict, index: int) -> list[dict]:
    """FanqingM/MMK12. ``question``/``answer``/``image`` are remembered, not verified; the MM-EUREKA
    K12 layout (``id``, ``question``, ``answer``, ``image_path``) is real. Some answers are worked
    solutions."""
    return flat(rec, spec, index, Layout(question=("question", "problem"),
                                         image=("image", "images", "image_path")))


def mm_openr1(rec: dict, spec: dict, index: int) -> list[dict]:
    """lmms-lab/multimodal-open-r1-8k-verified: ``problem``, ``solution`` (final answer in
    ``<answer>`` tags), ``image``; the names are remembered, not verified."""
    return flat(rec, spec, index, Layout(question=("problem", "question"), solution=("solution",),
                                         image=("image", "images")))


def wemath(rec: dict, spec: dict, index: int) -> list[dict]:
    """We-Math/We-Math2.0 Standard, Pro and SFT. ``question``/``answer``/``image`` are seen in one
    loader for Standard (split "standard"); the rest is guessed: an id among id/pid/ID, a solution
    column, and the SFT conversation layout (conversations or messages, with image paths)."""
    return flat(rec, spec, index, Layout(
        question=("question", "problem", "query"), solution=("solution", "analysis"),
        image=("image", "images", "image_path"), id=("id", "pid", "ID", "idx"), chat=("conversations", "messages")))


def bmmr(rec: dict, spec: dict, index: int) -> list[dict]:
    """guanyu615/BMMR (bilingual zh/en). The train viewer is reported to show ``id``, a {from, value}
    conversation list and a list of image paths (column names unconfirmed); the evaluation layout
    (``question``, ``options``, ``answer``, ``image``, ``cot``) is accepted too."""
    return flat(rec, spec, index, Layout(
        solution=("cot", "solution"), choices=("options", "choices"), image=("images", "image", "image_path"),
        id=("id", "index"), chat=("conversations", "messages", "conversation")))


def zebra_cot(rec: dict, spec: dict, index: int) -> list[dict]:
    """multimodal-reasoning-lab/Zebra-CoT (confirmed in a Hub commit diff and loaders): ``Question``
    (with ``<image_start>[problem_image_1]<image_end>`` markers, removed), ``Final Answer``, ``Text
    Reasoning Trace`` (the solution), ``problem_image_1..N`` (all inputs) and ``reasoning_image_*``
    (part of the trace, never inputs)."""
    cols, tried = {}, {}
    for key, names in (("question", ("Question",)), ("answer", ("Final Answer",)),
                       ("solution", ("Text Reasoning Trace",)), ("id", ("id",))):
        cols[key], tried[key] = _pick(rec, spec, key, names)
    override = (spec.get("fields") or {}).get("image")
    image_cols = [override] if override and override in rec else sorted(
        (k for k in rec if re.fullmatch(r"problem_image_\d+", k)), key=lambda k: int(k.rsplit("_", 1)[1]))
    need = {k: tried[k] for k in ("question", "answer") if not cols[k]}
    if not image_cols:
        need["image"] = (override or "problem_image_1",)
    if need:
        raise _missing(rec, spec, need)
    root = spec.get("image_root")
    images = [image_bytes(rec[k], root) for k in image_cols if rec[k] is not None]
    used = {*cols.values(), *image_cols, *(k for k in rec if k.startswith("reasoning_image_"))}
    return [make_row(rec, spec, index, used=used, question=rec[cols["question"]], answer=rec[cols["answer"]],
                     solution=rec[cols["solution"]] if cols["solution"] else None, images=images,
                     original_id=rec[cols["id"]] if cols["id"] else None)]


_GAME = re.compile(r"^(.*?)(?:[-_](?:train|test|val))?[-_]\d")


def gameqa(rec: dict, spec: dict, index: int) -> list[dict]:
    """Gabriel166/GameQA-140K (Code2Logic schema, seen in the generator's example data): ``data_id``,
    ``question``, ``answer`` (int or str), ``analysis`` (the solution), ``image`` (a path relative to
    the unpacked image archive), ``options`` (or ``Options`` in tetris; absent for open questions),
    and qa_type/plot_level/qa_level/state/... kept in metadata. Options labelled "A.x" are the
    choices; unlabelled options are numbered in the question ("1: I") and the answer is the option
    number, kept as a number. The origin is the game, from the data_id prefix."""
    cols, tried = {}, {}
    for key, names in (("question", ("question",)), ("answer", ("answer",)), ("image", ("image", "images")),
                       ("solution", ("analysis",)), ("id", ("data_id", "id")), ("choices", ("options", "Options")),
                       ("origin", ("game", "source"))):
        cols[key], tried[key] = _pick(rec, spec, key, names)
    if need := {k: tried[k] for k in ("question", "answer", "image") if not cols[k]}:
        raise _missing(rec, spec, need)
    options = [str(o) for o in rec[cols["choices"]]] if cols["choices"] and rec[cols["choices"]] else []
    choices = unlabelled(options) if options else None
    if options and choices is None:
        choices = []  # numbered options: the answer is the option's number
    data_id = rec[cols["id"]] if cols["id"] else None
    game = _GAME.match(str(data_id)) if data_id is not None else None
    origin = (rec[cols["origin"]] if cols["origin"] else None) or (game[1] if game else None)
    used = {cols["question"], cols["answer"], cols["image"], cols["solution"], cols["id"], cols["origin"]}
    if choices:
        used.add(cols["choices"])
    return [make_row(rec, spec, index, used=used, question=rec[cols["question"]], answer=rec[cols["answer"]],
                     solution=rec[cols["solution"]] if cols["solution"] else None, choices=choices,
                     images=_images(rec[cols["image"]], spec.get("image_root")), original_id=data_id,
                     origin=origin)]


def puzzlevqa(rec: dict, spec: dict, index: int) -> list[dict]:
    """declare-lab/PuzzleVQA. The authors' JSON (seen) has ``image`` (path), ``question``, ``options``
    (numbers or words, not in the question), ``answer`` (the option's text: mapped to its letter),
    ``caption``, ``explanation`` (the solution) and ``deduction``; the Hub parquet is assumed to keep
    these names with an Image column."""
    return flat(rec, spec, index, Layout(solution=("explanation",), choices=("options", "choices")))


def visualsphinx(rec: dict, spec: dict, index: int) -> list[dict]:
    """VisualSphinx/VisualSphinx-V1-RL-20K. Seen in a pinned loader: ``problem`` (with ``<image>``),
    ``choice`` (a JSON object letter → option), ``answer`` (the letter), ``id``, ``explanation`` (the
    solution), readability/reasonableness/has_duplicate; the image column name (``images``) is a guess."""
    return flat(rec, spec, index, Layout(question=("problem", "question"), solution=("explanation",),
                                         choices=("choice", "choices", "options"), image=("images", "image")))


def llava_cot(rec: dict, spec: dict, index: int) -> list[dict]:
    """Xkev/LLaVA-CoT-100k (train.jsonl): ``id``, ``image`` (relative path), ``conversations``
    [{from: human|gpt, value}] (reported by loaders, unconfirmed). The question is the first human turn
    without ``<image>``; the gpt turn, staged <SUMMARY>/<CAPTION>/<REASONING>/<CONCLUSION>, is the
    solution and its CONCLUSION the answer. SRPO's flattened copy (``query``, ``image``, ``answer``,
    ``content``; seen) is read too."""
    return flat(rec, spec, index, Layout(question=("query",), solution=("content",), image=("image", "images"),
                                         chat=("conversations",)))


def grounded_mcq(rec: dict, spec: dict, index: int) -> list[dict]:
    """Long Grounded Thoughts' "scale" and "complexity" stages on a detection dataset, COCO layout
    (e.g. detection-datasets/coco): ``image``, ``objects`` {``bbox``, ``category``} (``bbox_format``
    xywh as in COCO, or xyxy; a numeric category is named by the source's ``labels``), ``width`` and
    ``height`` (else the image's own size), ``image_id`` or ``id``. Each image gives
    ``questions_per_image`` simple questions and ``composed_per_image`` compositions of two of them
    (mmfr.grounded), all four-option (or two-option) choice questions that the boxes decide."""
    from PIL import Image

    cols, tried = {}, {}
    for key, names in (("image", ("image", "images")), ("objects", ("objects", "annotations")),
                       ("id", ("image_id", "id")), ("width", ("width",)), ("height", ("height",))):
        cols[key], tried[key] = _pick(rec, spec, key, names)
    if need := {k: tried[k] for k in ("image", "objects") if not cols[k]}:
        raise _missing(rec, spec, need)
    image = _images(rec[cols["image"]], spec.get("image_root"))
    try:
        boxes = grounded.boxes_from(rec[cols["objects"]], spec.get("bbox_format", "xywh"), spec.get("labels"))
    except (ValueError, TypeError, IndexError, KeyError) as e:
        raise AdapterError(f"source {spec.get('name', '?')!r}, record {index}: objects: {e}") from e
    if cols["width"] and cols["height"]:
        width, height = float(rec[cols["width"]]), float(rec[cols["height"]])
    else:
        with Image.open(io.BytesIO(image[0])) as im:  # the header only
            width, height = im.size
    if any(b.x1 < b.x0 or b.y1 < b.y0 or b.x1 > 1.02 * width or b.y1 > 1.02 * height for b in boxes):
        raise AdapterError(f"source {spec.get('name', '?')!r}, record {index}: boxes fall outside the "
                           f"{width:.0f}x{height:.0f} image as bbox_format {spec.get('bbox_format', 'xywh')!r}: "
                           "is the source's `bbox_format` right (xywh or xyxy)?")
    image_id = rec[cols["id"]] if cols["id"] else index
    questions = grounded.questions_for(f"{spec.get('name')}/{image_id}", boxes, width, height,
                                       int(spec.get("questions_per_image", QUESTIONS_PER_IMAGE)),
                                       int(spec.get("composed_per_image", COMPOSED_PER_IMAGE)))
    used = {cols["image"], cols["id"]}  # the boxes stay in metadata: the image's grounding
    return [make_row(rec, spec, index, used=used, question=q.text(), answer=q.answer, choices=q.choices, images=image,
                     original_id=f"{image_id}#{k}", extra={"lgt_kind": q.kind, "facts": q.facts, "answer": q.answer})
            for k, q in enumerate(questions)]


# Columns that hold an image's dense caption: a text (DOCCI's description, a detection set's caption)
# or a conversation whose reply is the caption (FineVision's densefusion_1m texts, ShareGPT4V's)
CAPTION_COLUMNS = ("caption", "dense_caption", "description", "texts", "conversations")
ID_COLUMNS = ("image_id", "id", "example_id")
REPLY = "__question_writer__"  # the column standardise adds for caption_mcq: the writer's reply


def dense_caption(value) -> str | None:
    """The caption text of a caption column's value: a text, or the reply of its first turn."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list) and value and isinstance(value[0], dict):
        if "assistant" in value[0]:  # FineVision turns
            reply = value[0].get("assistant")
        else:
            reply = _chat(value)[1]
        return reply.strip() if isinstance(reply, str) and reply.strip() else None
    return None


def caption_mcq(rec: dict, spec: dict, index: int) -> list[dict]:
    """Long Grounded Thoughts' "scale" stage from dense captions: the questions a text LLM wrote from
    the record's caption (``mmfr.questions``; its reply arrives in column ``REPLY``), each checked by
    ``mmfr.grounded.caption_questions``, then ``composed_per_image`` compositions of two of them
    ("complexity"). A question that fails a check, or a reply that did not finish, comes back as a
    row to drop with its reason. The image (``image``/``images``) is the record's; ids
    "<image id>#<k>"; the caption stays in metadata (``dense_caption``), the question's evidence in
    ``facts``."""
    cols, tried = {}, {}
    for key, names in (("image", ("image", "images")), ("caption", CAPTION_COLUMNS), ("id", ID_COLUMNS)):
        cols[key], tried[key] = _pick(rec, spec, key, names)
    if not cols["image"]:
        raise _missing(rec, spec, {"image": tried["image"]})
    reply = rec.get(REPLY)
    if reply is None:
        raise AdapterError(f"source {spec.get('name', '?')!r}, record {index}: no reply of the question writer "
                           "(adapter caption_mcq reads the replies of rule write_questions)")
    image_id = rec[cols["id"]] if cols["id"] and rec[cols["id"]] is not None else index
    if reply["finish_reason"] != "stop":
        return [{"original_id": f"{image_id}#reply", "reject": (f"writer_{reply['finish_reason']}", reply["error"])}]
    seed = f"{spec.get('name')}/{image_id}"
    simple, rejected = grounded.caption_questions(reply["response"], reply["caption"],
                                                  int(spec.get("questions_per_image", QUESTIONS_PER_IMAGE)), seed,
                                                  spec.get("require_evidence", True))
    questions = simple + grounded.composed(f"{seed}/composed", simple,
                                           int(spec.get("composed_per_image", COMPOSED_PER_IMAGE)))
    images = _images(rec[cols["image"]], spec.get("image_root"))
    used = {cols["image"], cols["caption"], cols["id"], REPLY}
    rows = [make_row(rec, spec, index, used=used, question=q.text(), answer=q.answer, choices=q.choices, images=images,
                     original_id=f"{image_id}#{k}",
                     extra={"lgt_kind": q.kind, "facts": q.facts, "answer": q.answer, "dense_caption": reply["caption"]})
            for k, q in enumerate(questions)]
    where = {-1: "reply"}
    return rows + [{"original_id": f"{image_id}#{where.get(r.index, f'q{r.index}')}", "reject": (r.reason, r.detail)}
                   for r in rejected]


ADAPTERS: dict[str, Callable[[dict, dict, int], list[dict]]] = {
    "raw": raw,
    "generic": generic,
    "finevision": finevision,
    "mmr1": mmr1,
    "walton_coldstart": walton_coldstart,
    "virl39k": virl39k,
    "euclid30k": euclid30k,
    "mmk12": mmk12,
    "mm_openr1": mm_openr1,
    "wemath": wemath,
    "bmmr": bmmr,
    "zebra_cot": zebra_cot,
    "gameqa": gameqa,
    "puzzlevqa": puzzlevqa,
    "visualsphinx": visualsphinx,
    "grounded_mcq": grounded_mcq,
    "caption_mcq": caption_mcq,
    "llava_cot": llava_cot,
}
