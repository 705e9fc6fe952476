"""One protocol per benchmark: how its published records read, what the model is asked, how its
answer is scored, and how items add up to the benchmark's score.

Each ``read_*`` turns one record of the benchmark's published layout (its Hugging Face release;
several also read the layout of the authors' GitHub files) into rows of the RAW layout, with what
scoring needs in ``metadata``. Each ``score_*`` takes a prepared item and a response and returns
the answer it read, the verdict and the rule that decided it. The rules apply to the final part of a
response (``final_part``): a reasoning model's ``<answer>`` or boxed answer, else the response after
its thinking, which is what the official scorers read from the models they were written for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from mmfr import images
from mmfr.adapters import AdapterError, image_bytes, RecordError
from mmfr.answers import (LETTERS, Tolerance, answers_match, as_choices, detect_answer_type, extract_answer,
                          normalize_text, split_choices, split_response, to_letter, unlabelled)
from mmfr.answers.match import as_list
from mmfr.answers.extract import answer_is, choice_letter, final_boxed
from mmfr.benchmarks import rules

TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Protocol:
    """A benchmark's evaluation, end to end. ``version`` changes whenever the scoring does, and is
    recorded beside every score."""

    name: str
    version: str
    read: Callable[[dict, dict, int], list[dict]]
    prompt: Callable[[dict], str]
    score: Callable[[dict, str], dict]
    group_by: str | None = None  # metadata key of ITEMS.group: a group counts only if all its items are right
    doc: str = ""
    metric: Callable[[list[dict]], tuple[int, float]] | None = None  # (units, score * units) of ITEMS rows


def scored(extracted, correct: bool | None, decided_by: str, method: str = "rules") -> dict:
    """A verdict: correct, wrong, or undecided (``correct`` None: nothing could decide)."""
    verdict = "undecided" if correct is None else "correct" if correct else "wrong"
    return {"extracted": None if extracted is None else str(extracted), "verdict": verdict,
            "decided_by": decided_by, "extract_method": method}


def final_part(response: str) -> tuple[str, str]:
    """(text, how): the ``<answer>`` content, else the side-by-side boxed answers, else the response
    after its thinking."""
    _, tagged = split_response(response)
    if tagged is not None:
        return final_boxed(tagged) or tagged, "answer_tag"
    tail = response.rpartition("</think>")[2] if "</think>" in response else response
    if boxed := final_boxed(tail):
        return boxed, "boxed"
    return tail.strip(), "response"


# --------------------------------------------------------------------------- reading records

def _meta(item: dict) -> dict:
    meta = item.get("metadata") or {}
    return json.loads(meta) if isinstance(meta, str) else meta


def _col(rec: dict, spec: dict, key: str, *names: str):
    """A record's value for canonical ``key``: the spec's ``fields`` override, else the first of
    ``names`` present with a value."""
    override = (spec.get("fields") or {}).get(key)
    for name in ((override,) if override else names):
        if name in rec and rec[name] is not None:
            return rec[name]
    return None


def _need(rec: dict, spec: dict, key: str, *names: str):
    """The value of ``key``; a layout without the column is an ``AdapterError`` (the config maps the
    benchmark wrongly), an empty value a ``RecordError`` (this item is set aside)."""
    value = _col(rec, spec, key, *names)
    if value is None or (isinstance(value, str) and not value.strip()):
        wanted = (spec.get("fields") or {}).get(key) or " or ".join(names)
        present = (spec.get("fields") or {}).get(key, None) in rec or any(n in rec for n in names)
        raise (RecordError if present else AdapterError)(
            f"benchmark {spec.get('name', '?')!r}: the record has no {key} ({wanted}); "
            f"columns: {', '.join(sorted(rec))}")
    return value


def _image(rec: dict, spec: dict, *names: str) -> list[bytes]:
    """The item's image: the first image column with a value; several (MMMU's image_1..7) are
    stacked into one."""
    root = spec.get("image_root")
    override = (spec.get("fields") or {}).get("image")
    cols = [override] if override else list(names)
    blobs = []
    for col in cols:
        value = rec.get(col)
        if value is None or value == "":
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        blobs += [image_bytes(v, root) for v in values]
        if not col.startswith("image_"):
            break
    blobs = [b for b in blobs if b]
    return [images.stack(blobs)] if blobs else []


def row(spec: dict, rec_id, question: str, answer, answer_type: str, choices: list[str], image: list[bytes],
        **meta) -> dict:
    """One RAW row of a benchmark item. The gold answer is taken as given (a long option text is
    an answer, not a worked solution)."""
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        raise RecordError(f"benchmark {spec.get('name', '?')!r}, item {rec_id}: no gold answer")
    return {"original_id": str(rec_id), "question": str(question).strip(), "answer": str(answer).strip(),
            "solution": None, "answer_type": answer_type, "choices": [str(c) for c in choices],
            "images": image, "metadata": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str),
            "domain": "benchmark", "origin": None}


def _letter_gold(spec: dict, rec_id, answer, choices: list[str]) -> str:
    """The gold option letter: a letter, a 0-based index (int or digit string) or the option's text.
    A single letter within the options is a letter even where an option's text is that letter
    (MMMU's music questions have options "C", "A", "E")."""
    if isinstance(answer, str) and re.fullmatch(r"\(?[A-Z]\)?", answer.strip()) \
            and LETTERS.index(answer.strip("() ")) < max(1, len(choices)):
        return answer.strip("() ")
    if isinstance(answer, int) or (isinstance(answer, str) and answer.strip().isdigit() and choices
                                   and not to_letter(answer, choices)):
        index = int(answer)
        if 0 <= index < len(choices):
            return LETTERS[index]
    letter = to_letter(str(answer), choices)
    if letter is None:
        raise RecordError(f"benchmark {spec.get('name', '?')!r}, item {rec_id}: gold {answer!r} names none "
                           f"of the {len(choices)} options")
    return letter


def lettered(question: str, choices: list[str], bracket: bool = False) -> str:
    if not choices or split_choices(question)[1]:
        return question
    fmt = "({}) {}" if bracket else "{}. {}"
    return question + "\n" + "\n".join(fmt.format(LETTERS[i], c) for i, c in enumerate(choices))


# --------------------------------------------------------------------------- shared scoring

def score_generic(item: dict, response: str, tol: Tolerance = TOLERANCE) -> dict:
    """The shared chain: extract the final answer, then the answers module's equivalence (option
    letters and texts, numbers, lists, math-verify, normalised text)."""
    extracted, method = extract_answer(response, item["answer_type"], list(item.get("choices") or []))
    if extracted is None:
        return scored(None, False, "extract", method)
    equal, how = answers_match(extracted, item["answer"], item["answer_type"], list(item.get("choices") or []), tol)
    return scored(extracted, equal, how, method)


def ask_letter(item: dict) -> str:
    return lettered(item["question"], item["choices"]) + "\nAnswer with the letter of the correct option."


def ask_open(item: dict) -> str:
    hint = {"number": "Answer with a number.", "expression": "Answer with an expression or a number."}
    return item["question"] + "\n" + hint.get(item["answer_type"], "Answer with a single word or phrase.")


def ask_any(item: dict) -> str:
    return ask_letter(item) if item["answer_type"] == "choice" else ask_open(item)


# --------------------------------------------------------------------------- generic (our own sets)

def read_generic(rec: dict, spec: dict, index: int) -> list[dict]:
    """A benchmark already in our layout (question, answer, answer_type, choices, image)."""
    from mmfr.adapters import adapt

    default = "raw" if spec.get("kind") == "synthetic_benchmark" else "generic"
    return adapt(rec, {**spec, "adapter": spec.get("adapter") or default}, index)


def prompt_generic(item: dict) -> str:
    return item["question"]


# --------------------------------------------------------------------------- MMMU and MMMU-Pro

def read_mmmu(rec: dict, spec: dict, index: int) -> list[dict]:
    """MMMU/MMMU (one config per subject) and MMMU/MMMU_Pro "standard": ``id``, ``question`` (with
    ``<image k>`` markers), ``options`` (the text of a Python list), ``answer`` (a letter, or the
    text of an open answer, sometimes a list of accepted answers), ``question_type``
    (multiple-choice/open), ``image_1..7``."""
    rec_id = _col(rec, spec, "id", "id") or index
    options = as_choices(_col(rec, spec, "choices", "options"))
    answer = _need(rec, spec, "answer", "answer")
    kind = str(_col(rec, spec, "question_type", "question_type") or ("multiple-choice" if options else "open"))
    image = _image(rec, spec, *[f"image_{k}" for k in range(1, 8)], "image")
    meta = {k: rec[k] for k in ("subfield", "topic_difficulty", "img_type", "subject") if rec.get(k) is not None}
    if kind == "multiple-choice":
        return [row(spec, rec_id, _need(rec, spec, "question", "question"), _letter_gold(spec, rec_id, answer, options),
                    "choice", options, image, question_type=kind, **meta)]
    golds = as_choices(answer) if str(answer).strip().startswith("[") else [str(answer)]
    return [row(spec, rec_id, _need(rec, spec, "question", "question"), golds[0] if golds else answer, "text", [],
                image, question_type=kind, golds=golds or [str(answer)], **meta)]


def read_mmmu_vision(rec: dict, spec: dict, index: int) -> list[dict]:
    """MMMU/MMMU_Pro "vision": ``id``, ``image`` (a screenshot holding the question and its
    options), ``options``, ``answer`` (a letter), ``subject``."""
    rec_id = _col(rec, spec, "id", "id") or index
    options = as_choices(_col(rec, spec, "choices", "options"))
    answer = _need(rec, spec, "answer", "answer")
    return [row(spec, rec_id, "The question and its options are shown in the image.",
                _letter_gold(spec, rec_id, answer, options), "choice", options, _image(rec, spec, "image"),
                question_type="multiple-choice", subject=rec.get("subject"))]


def prompt_mmmu(item: dict) -> str:
    if item["answer_type"] == "choice":
        return lettered(item["question"], item["choices"], bracket=True) + \
            "\nAnswer with the letter of the correct option."
    return item["question"] + "\nAnswer with a single word, number or phrase."


def prompt_mmmu_vision(item: dict) -> str:
    return "Answer the question in the image with the letter of the correct option."


def score_mmmu(item: dict, response: str, pro: bool = False) -> dict:
    """MMMU's parsers on the final part of the response: the option a response names (a bracketed
    letter, a letter standing as a word, or, in a longer response, an option's text; the last one
    wins), and for open questions the official candidate answers against every accepted gold."""
    part, how = final_part(response)
    if item["answer_type"] == "choice":
        letter = (rules.mmmu_pro_choice if pro else rules.mmmu_choice)(part, item["choices"])
        if letter is None:
            return scored(None, False, "extract", how)
        return scored(letter, letter == item["answer"], "mmmu_choice", how)
    candidates = rules.mmmu_open_candidates(part)
    golds = _meta(item).get("golds") or [item["answer"]]
    return scored(part[-200:], rules.mmmu_open_correct(candidates, golds), "mmmu_open", how)


def score_mmmu_pro(item: dict, response: str) -> dict:
    return score_mmmu(item, response, pro=True)


# --------------------------------------------------------------------------- MathVista

def read_mathvista(rec: dict, spec: dict, index: int) -> list[dict]:
    """AI4Math/MathVista (and the authors' testmini.json): ``pid``, ``question``, ``query`` (the
    question with the benchmark's own hint), ``choices`` (or null), ``answer`` (the option's text
    for multiple choice), ``question_type`` (multi_choice/free_form), ``answer_type``
    (integer/float/text/list), ``precision``, ``unit``, ``decoded_image`` or ``image``."""
    pid = _col(rec, spec, "id", "pid") or index
    choices = [str(c) for c in (_col(rec, spec, "choices", "choices") or [])]
    answer = _need(rec, spec, "answer", "answer")
    qtype = str(_col(rec, spec, "question_type", "question_type") or ("multi_choice" if choices else "free_form"))
    atype = str(_col(rec, spec, "answer_type", "answer_type") or "text")
    meta = {"question_type": qtype, "mathvista_answer_type": atype, "precision": rec.get("precision"),
            "unit": rec.get("unit"), "query": rec.get("query")}
    if isinstance(rec.get("metadata"), dict):
        meta["category"] = rec["metadata"].get("category")
    image = _image(rec, spec, "decoded_image", "image")
    if qtype == "multi_choice":
        if str(answer) not in choices:
            raise RecordError(f"benchmark {spec.get('name', '?')!r}, item {pid}: gold {answer!r} is not one of "
                               f"its choices {choices!r}")
        return [row(spec, pid, _need(rec, spec, "question", "question"), LETTERS[choices.index(str(answer))],
                    "choice", choices, image, **meta)]
    kind = "number" if atype in ("integer", "float") else "text"
    return [row(spec, pid, _need(rec, spec, "question", "question"), answer, kind, [], image, **meta)]


def prompt_mathvista(item: dict) -> str:
    meta = _meta(item)
    if meta.get("query"):
        return meta["query"]
    if item["answer_type"] == "choice":
        return ask_letter(item)
    need = {"integer": "an integer", "list": "a Python list"}.get(meta.get("mathvista_answer_type"))
    if meta.get("mathvista_answer_type") == "float":
        need = f"a number with {meta.get('precision') or 1} decimal place(s)"
    return item["question"] + f"\nAnswer with {need or 'a single word or phrase'}."


def score_mathvista(item: dict, response: str) -> dict:
    """MathVista's normalisation of the extracted answer (option letter → option text, else the
    nearest option; integers, floats at the item's precision, lists) and its exact comparison."""
    meta = _meta(item)
    part, how = final_part(response)
    choices = list(item["choices"] or [])
    qtype = meta.get("question_type", "free_form")
    if qtype == "multi_choice":
        found = part if part in choices else (choice_letter(part, choices) or answer_is(part) or part)
        gold = choices[LETTERS.index(item["answer"])]
    else:
        found = part
        if how == "response":
            found, how = extract_answer(part, "number" if item["answer_type"] == "number" else "text", [])
        gold = item["answer"]
    normal = rules.mathvista_normal(found, choices, qtype, meta.get("mathvista_answer_type", "text"),
                                    meta.get("precision"))
    if normal is None:
        return scored(found, False, "extract", how)
    return scored(normal, normal == gold, "mathvista", how)


# --------------------------------------------------------------------------- MathVision, MathVerse, WeMath

def read_mathvision(rec: dict, spec: dict, index: int) -> list[dict]:
    """MathLLMs/MathVision (and mathllm/MATH-V's jsonl): ``id``, ``question`` (``<image1>``
    markers), ``options`` (a list, empty for open questions), ``answer`` (a letter or a value),
    ``level``, ``subject``, ``decoded_image`` or ``image``."""
    rec_id = _col(rec, spec, "id", "id") or index
    options = as_choices(_col(rec, spec, "choices", "options") or [])
    answer = _need(rec, spec, "answer", "answer")
    question = re.sub(r"\n?<image\d*>", "", str(_need(rec, spec, "question", "question"))).strip()
    meta = {"level": rec.get("level"), "subject": rec.get("subject")}
    image = _image(rec, spec, "decoded_image", "image")
    if options:
        return [row(spec, rec_id, question, _letter_gold(spec, rec_id, answer, options), "choice", options, image,
                    **meta)]
    return [row(spec, rec_id, question, answer, detect_answer_type(str(answer)) or "text", [], image, **meta)]


def score_mathvision(item: dict, response: str) -> dict:
    """MATH-V compares numbers rounded to two decimals: a tolerance of 0.005."""
    return score_generic(item, response, Tolerance(rel_tol=0.0, abs_tol=0.005))


MATHVERSE_VERSIONS = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only")


def read_mathverse(rec: dict, spec: dict, index: int) -> list[dict]:
    """AI4Math/MathVerse testmini: ``sample_index``, ``problem_index``, ``problem_version``,
    ``question`` (options written in for multi-choice), ``query_cot`` (the benchmark's own
    prompt), ``answer`` (a letter, or a value), ``question_type`` (multi-choice/free-form),
    ``image``; a Vision Only question is only in the image. ``problem_versions`` in the benchmark's
    config keeps only those versions."""
    version = rec.get("problem_version")
    wanted = spec.get("problem_versions")
    if wanted and version not in wanted:
        return []
    rec_id = _col(rec, spec, "id", "sample_index") or index
    question = str(_col(rec, spec, "question", "question") or "").strip() or "The question is shown in the image."
    answer = _need(rec, spec, "answer", "answer")
    qtype = str(rec.get("question_type") or "free-form")
    choices = split_choices(question)[1]
    meta = {"problem_index": rec.get("problem_index"), "problem_version": version, "question_type": qtype,
            "query": rec.get("query_cot")}
    image = _image(rec, spec, "image")
    if qtype == "multi-choice":
        letter = str(answer).strip().strip("()")
        return [row(spec, rec_id, question, letter, "choice", choices, image, **meta)]
    return [row(spec, rec_id, question, answer, detect_answer_type(str(answer)) or "text", [], image, **meta)]


def prompt_with_query(item: dict) -> str:
    return _meta(item).get("query") or ask_any(item)


def read_wemath(rec: dict, spec: dict, index: int) -> list[dict]:
    """We-Math/We-Math testmini: ``ID``, ``question``, ``option`` ("A. x;B. y;..."), ``answer`` (a
    letter), ``key`` (2steps_1, 2steps_multi, ...: the problem's step), ``knowledge concept``,
    ``image_path`` or ``image``."""
    rec_id = _col(rec, spec, "id", "ID", "id") or index
    raw = str(_need(rec, spec, "choices", "option"))
    options = unlabelled([o.strip() for o in raw.split(";") if o.strip()]) or split_choices(raw)[1]
    answer = _need(rec, spec, "answer", "answer")
    return [row(spec, f"{rec_id}@{rec.get('key', '')}", _need(rec, spec, "question", "question"),
                _letter_gold(spec, rec_id, answer, options), "choice", options,
                _image(rec, spec, "image", "image_path"), step=f"{rec_id}|{rec.get('key', '')}",
                concept=rec.get("knowledge concept"))]


def wemath_score(rows: list[dict]) -> tuple[int, float]:
    """We-Math's Score (Strict) over its composite problems (ITEMS ``group`` = "ID|key"): a problem
    whose one-step parts are all right and whose composite is right is mastered; IK (a part wrong,
    the composite wrong), IG (parts right, composite wrong) and RM (a part wrong, composite right)
    cost 1, 0.5 and 1: score = (N - 0.5 IG - RM - IK) / N."""
    problems: dict[str, dict] = {}
    for r in rows:
        problem, _, key = str(r["group"]).rpartition("|")
        part = problems.setdefault(problem, {"parts": [], "multi": None})
        if key.endswith("multi"):
            part["multi"] = bool(r["correct"])
        else:
            part["parts"].append(bool(r["correct"]))
    cost = 0.0
    done = [p for p in problems.values() if p["multi"] is not None and p["parts"]]
    for p in done:
        parts_right = all(p["parts"])
        cost += (0.5 if parts_right else 1.0) if not p["multi"] else (0.0 if parts_right else 1.0)
    return len(done), len(done) - cost


# --------------------------------------------------------------------------- DynaMath

def read_dynamath(rec: dict, spec: dict, index: int) -> list[dict]:
    """DynaMath/DynaMath_Sample (one split per variant, sample_variant1..10; ``_split`` names it
    when several are downloaded together) and the authors' dataset.json: ``id``, ``question``,
    ``ground_truth`` or ``answer``, ``answer_type`` (multiple choice, float, integer, text...),
    ``subject``, ``knowledge_level`` or ``level``, ``decoded_image`` or ``image``."""
    qid = _col(rec, spec, "id", "id", "qid") or index
    variant = rec.get("_split") or spec.get("split") or "variant"
    variant = variant if isinstance(variant, str) else "variant"
    question = str(_need(rec, spec, "question", "question"))
    answer = _need(rec, spec, "answer", "ground_truth", "answer")
    atype = str(rec.get("answer_type") or "")
    meta = {"qid": str(qid), "variant": variant, "dynamath_answer_type": atype, "subject": rec.get("subject")}
    image = _image(rec, spec, "decoded_image", "image")
    if "choice" in atype:
        choices = split_choices(question)[1]
        letter = str(answer).strip().strip("()")
        return [row(spec, f"{qid}#{variant}", question, letter, "choice", choices, image, **meta)]
    kind = "number" if atype in ("float", "integer") else detect_answer_type(str(answer)) or "text"
    return [row(spec, f"{qid}#{variant}", question, answer, kind, [], image, **meta)]


def score_dynamath(item: dict, response: str) -> dict:
    """DynaMath: letters for multiple choice; a float within 0.001 of the gold; a text answer is right
    when it contains the gold (after normalisation), as DynaMath's own script checks."""
    result = score_generic(item, response, Tolerance(rel_tol=0.0, abs_tol=1e-3))
    if item["answer_type"] == "text" and result["verdict"] == "wrong" and result["extracted"]:
        gold = normalize_text(item["answer"])
        if gold and f" {gold} " in f" {normalize_text(result['extracted'])} ":
            return scored(result["extracted"], True, "contains", result["extract_method"])
    return result


# --------------------------------------------------------------------------- LogicVista

def read_logicvista(rec: dict, spec: dict, index: int) -> list[dict]:
    """LogicVista (the authors' dataset.json, keyed by id; the Hub copy keeps the fields):
    ``question``, ``answer`` (one or several letters: "B, D"), ``imagename`` or ``image``,
    ``skill``; the options are drawn in the image."""
    rec_id = _col(rec, spec, "id", "id", "imagename") or index
    answer = str(_need(rec, spec, "answer", "answer"))
    letters = rules.letter_set(answer)
    question, image = _need(rec, spec, "question", "question"), _image(rec, spec, "image", "imagename")
    if not letters:  # a few golds are values ("3"): scored as such
        return [row(spec, rec_id, question, answer, detect_answer_type(answer) or "text", [], image,
                    skill=rec.get("skill"))]
    return [row(spec, rec_id, question, ", ".join(sorted(letters)), "choice", [], image, skill=rec.get("skill"))]


def prompt_logicvista(item: dict) -> str:
    return item["question"] + "\nAnswer with the letter of the correct option; if several are correct, give " \
                              "all their letters, separated by commas."


def score_logicvista(item: dict, response: str) -> dict:
    """The set of letters named must equal the gold's set (LogicVista scores "B, D" as one answer)."""
    if item["answer_type"] != "choice":
        return score_generic(item, response)
    part, how = final_part(response)
    if how == "response":
        part = answer_is(part) or choice_letter(part, []) or (part if len(part.split()) <= 6 else "")
    found = rules.letter_set(part)
    if not found:
        return scored(None, False, "extract", how)
    return scored(", ".join(sorted(found)), found == rules.letter_set(item["answer"]), "letter_set", how)


# --------------------------------------------------------------------------- multiple-choice sets

def read_scienceqa(rec: dict, spec: dict, index: int) -> list[dict]:
    """lmms-lab/ScienceQA (ScienceQA-IMG) and lupantech/ScienceQA problems.json: ``question``,
    ``choices``, ``answer`` (a 0-based index), ``hint`` (the context), ``image``, subject/topic."""
    rec_id = _col(rec, spec, "id", "id", "pid") or index
    choices = as_choices(_need(rec, spec, "choices", "choices"))
    gold = _letter_gold(spec, rec_id, _need(rec, spec, "answer", "answer"), choices)
    return [row(spec, rec_id, _need(rec, spec, "question", "question"), gold, "choice", choices,
                _image(rec, spec, "image"), hint=rec.get("hint") or "", subject=rec.get("subject"))]


def prompt_context(item: dict) -> str:
    hint = _meta(item).get("hint")
    text = ask_letter(item)
    return f"Context: {hint}\n{text}" if hint else text


def read_mmbench(rec: dict, spec: dict, index: int) -> list[dict]:
    """lmms-lab/MMBench (en, dev): ``index``, ``question``, ``hint``, options in columns ``A``..``E``
    (empty ones absent), ``answer`` (a letter), ``category``, ``l2-category``, ``image``. The dev
    split holds each question's option rotations as rows of their own (index + k * 1,000,000):
    circular evaluation counts a question right only when every rotation is."""
    rec_id = _col(rec, spec, "id", "index") if _col(rec, spec, "id", "index") is not None else index
    choices = []
    for letter in "ABCDE":
        value = rec.get(letter)
        if value is None or (isinstance(value, float) and value != value) or str(value).strip() in ("", "nan"):
            break
        choices.append(str(value).strip())
    gold = _letter_gold(spec, rec_id, _need(rec, spec, "answer", "answer"), choices)
    hint = rec.get("hint")
    hint = "" if hint is None or str(hint).strip() in ("", "nan") else str(hint)
    circular = int(rec_id) % 1_000_000 if str(rec_id).isdigit() else rec_id  # the question a rotation repeats
    return [row(spec, rec_id, _need(rec, spec, "question", "question"), gold, "choice", choices,
                _image(rec, spec, "image"), hint=hint, category=rec.get("category"), circular=str(circular))]


def read_inline_choice(rec: dict, spec: dict, index: int) -> list[dict]:
    """A multiple-choice set whose options are written into the question (MMStar: ``index``,
    ``question`` with "Options: A: ..., B: ...", ``answer``, ``category``, ``image``; VisuLogic:
    ``id``, ``question``, ``label``, ``tag``, ``image``; RealWorldQA: ``question`` with its
    options and instruction, ``answer``, ``image`` — a few RealWorldQA answers are words or numbers,
    scored as such)."""
    rec_id = _col(rec, spec, "id", "id", "index")
    rec_id = index if rec_id is None else rec_id
    question = str(_need(rec, spec, "question", "question"))
    answer = str(_need(rec, spec, "answer", "answer", "label")).strip()
    choices = split_choices(question)[1]
    meta = {k: rec[k] for k in ("category", "l2_category", "tag") if rec.get(k) is not None}
    image = _image(rec, spec, "image")
    if re.fullmatch(r"\(?[A-J]\)?\.?", answer):
        return [row(spec, rec_id, question, answer.strip("(). "), "choice", choices, image, **meta)]
    return [row(spec, rec_id, question, answer, detect_answer_type(answer) or "text", [], image, **meta)]


def read_ai2d(rec: dict, spec: dict, index: int) -> list[dict]:
    """lmms-lab/ai2d: ``question``, ``options`` (a list), ``answer`` (the option's 0-based index as
    text), ``image``; the MMMU-Pro tool's copy (letter answers) reads the same."""
    rec_id = _col(rec, spec, "id", "id", "index")
    rec_id = index if rec_id is None else rec_id
    choices = as_choices(_need(rec, spec, "choices", "options", "choices"))
    gold = _letter_gold(spec, rec_id, _need(rec, spec, "answer", "answer"), choices)
    question = re.sub(r"^<image \d+>\s*", "", str(_need(rec, spec, "question", "question")))
    return [row(spec, rec_id, question, gold, "choice", choices, _image(rec, spec, "image", "image_1"))]


# --------------------------------------------------------------------------- CharXiv

def read_charxiv_reasoning(rec: dict, spec: dict, index: int) -> list[dict]:
    """princeton-nlp/CharXiv reasoning questions: the Hub's ``reasoning_q``/``reasoning_a``/
    ``reasoning_q_source``/``reasoning_a_type`` beside ``image``, or the authors' reasoning_val.json
    (``figure_id``, ``query``, ``answer``, ``inst_category`` 1-4: text in chart, text in general,
    number in chart, number in general)."""
    rec_id = _col(rec, spec, "id", "figure_id", "original_id")
    rec_id = index if rec_id is None else rec_id
    question = _need(rec, spec, "question", "reasoning_q", "query")
    answer = str(_need(rec, spec, "answer", "reasoning_a", "answer"))
    category = rec.get("inst_category") or rec.get("reasoning_a_type")
    kind = "number" if category in (3, 4) else detect_answer_type(answer) or "text"
    if kind == "choice":
        kind = "text"
    return [row(spec, rec_id, question, answer, kind, [], _image(rec, spec, "image"), inst_category=category)]


# The descriptive questions by template number (CharXiv's descriptive_val.json names them by qid;
# the Hub release writes the question out). Our paraphrase of what each asks.
CHARXIV_DESCRIPTIVE = {
    1: "What is the title of the plot?", 2: "What is the label of the x-axis?",
    3: "What is the label of the y-axis?", 4: "What is the leftmost labelled tick on the x-axis?",
    5: "What is the rightmost labelled tick on the x-axis?", 6: "What is the lowest labelled tick on the y-axis?",
    7: "What is the highest labelled tick on the y-axis?",
    8: "What is the difference between consecutive numerical tick values on the x-axis?",
    9: "What is the difference between consecutive numerical tick values on the y-axis?",
    10: "How many lines are there in the plot?", 11: "Do any lines intersect?",
    12: "How many discrete labels are there in the legend?", 13: "What are the names of the labels in the legend?",
    14: "What is the difference between the maximum and minimum values of the tick labels on the continuous legend "
        "(colour bar)?",
    15: "What is the maximum value of the tick labels on the continuous legend (colour bar)?",
    16: "What is the general trend of the data from left to right?", 17: "What is the total number of explicitly "
    "labelled ticks across all axes?", 18: "What is the layout of the subplots?", 19: "What is the number of subplots?",
}


def read_charxiv_descriptive(rec: dict, spec: dict, index: int) -> list[dict]:
    """Four descriptive questions per chart: the Hub's ``descriptive_q1..4`` (template ids 1-19) and
    ``descriptive_a1..4``, or the authors' descriptive_val.json (``figure_id``, ``qids``,
    ``answers``); the question is the template, for the plot or the subplot ``subplot_loc`` names.
    Answers that do not apply read "Not Applicable"."""
    fig = _col(rec, spec, "id", "figure_id", "original_id")
    fig = index if fig is None else fig
    image = _image(rec, spec, "image")
    qids, answers = rec.get("qids"), rec.get("answers")
    if qids is None:  # the Hub's columns: template ids in descriptive_q1..4
        qids = [rec.get(f"descriptive_q{k}") for k in range(1, 5)]
        answers = [rec.get(f"descriptive_a{k}") for k in range(1, 5)]
    pairs = [(int(q), a) for q, a in zip(qids or [], answers or []) if q is not None and a is not None]
    if not pairs:
        raise RecordError(f"benchmark {spec.get('name', '?')!r}, chart {fig}: no descriptive questions "
                          f"(qids/answers or descriptive_q1..4); columns: {', '.join(sorted(rec))}")
    loc = rec.get("subplot_loc")
    if isinstance(loc, str) and loc.strip():
        where = f"For {loc.strip()}, "
    elif isinstance(loc, (list, tuple)) and len(loc) == 2 and loc[0]:
        where = f"For the subplot at row {loc[0]} and column {loc[1]}, "
    else:
        where = "For the current plot, "
    out = []
    for k, (qid, answer) in enumerate(pairs):
        template = CHARXIV_DESCRIPTIVE.get(qid, f"descriptive question {qid}")
        question = template if qid in (18, 19) else where + template[0].lower() + template[1:]
        answer = str(answer)
        kind = detect_answer_type(answer) or "text"
        out.append(row(spec, f"{fig}#{k + 1}", question, answer, "text" if kind == "choice" else kind,
                       [], image, qid=qid, figure=fig))
    return out


def score_charxiv_descriptive(item: dict, response: str) -> dict:
    """The shared chain, except that the legend's labels (template 13) must come in the chart's order."""
    result = score_generic(item, response)
    if _meta(item).get("qid") == 13 and result["verdict"] == "correct" and result["decided_by"] == "list":
        pred, gold = as_list(result["extracted"]), as_list(item["answer"])
        in_order = [normalize_text(x) for x in pred[2]] == [normalize_text(x) for x in gold[2]]
        return scored(result["extracted"], in_order, "list_in_order", result["extract_method"])
    return result


# --------------------------------------------------------------------------- the table

def _p(name, version, read, prompt, score, doc, group_by=None, metric=None) -> Protocol:
    return Protocol(name, version, read, prompt, score, group_by, doc, metric)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    _p("generic", "1", read_generic, prompt_generic, score_generic,
       "Our own layout (the demo's synthetic benchmark): the shared extraction and equivalence chain."),
    _p("mmmu", "1", read_mmmu, prompt_mmmu, score_mmmu,
       "MMMU val, 30 subject configs; MMMU's own option and open-answer parsers."),
    _p("mmmu_pro", "1", read_mmmu, prompt_mmmu, score_mmmu_pro,
       "MMMU-Pro standard (10 options); its parser first reads the letter after the last 'Answer:'."),
    _p("mmmu_pro_vision", "1", read_mmmu_vision, prompt_mmmu_vision, score_mmmu_pro,
       "MMMU-Pro vision: question and options only in the screenshot."),
    _p("mathvista", "1", read_mathvista, prompt_mathvista, score_mathvista,
       "MathVista testmini: its own query prompt; answers normalised by type and precision, compared exactly."),
    _p("mathvision", "1", read_mathvision, ask_any, score_mathvision,
       "MATH-Vision test: letters for options, else values (two-decimal rounding) and expressions."),
    _p("mathverse", "1", read_mathverse, prompt_with_query, score_generic,
       "MathVerse testmini: the benchmark's CoT query; letters for multi-choice, values and expressions else."),
    _p("dynamath", "1", read_dynamath, ask_any, score_dynamath,
       "DynaMath over its 10 variants per seed question; the score is worst-case (every variant right).",
       group_by="qid"),
    _p("logicvista", "1", read_logicvista, prompt_logicvista, score_logicvista,
       "LogicVista: the set of option letters named must equal the gold set."),
    _p("letter", "1", read_inline_choice, ask_any, score_generic,
       "A multiple-choice set with its options in the question (MMStar, VisuLogic, RealWorldQA)."),
    _p("scienceqa", "1", read_scienceqa, prompt_context, score_generic,
       "ScienceQA-IMG test: gold index to letter; the hint is given as context."),
    _p("mmbench", "1", read_mmbench, prompt_context, score_generic,
       "MMBench-EN dev: options from the A-E columns, hint as context; circular: a question counts when "
       "all its rotations are right.", group_by="circular"),
    _p("ai2d", "1", read_ai2d, ask_letter, score_generic, "AI2D test: gold index to letter."),
    _p("wemath", "1", read_wemath, ask_letter, score_generic,
       "We-Math testmini: options from the 'A. x;B. y' string; Score (Strict) over composite problems.",
       group_by="step", metric=wemath_score),
    _p("charxiv_reasoning", "1", read_charxiv_reasoning, ask_open, score_generic,
       "CharXiv reasoning: rules in place of the GPT grader: text exact after normalisation, numbers within "
       "tolerance, lists item by item."),
    _p("charxiv_descriptive", "1", read_charxiv_descriptive, ask_open, score_charxiv_descriptive,
       "CharXiv descriptive: four template questions per chart, rules in place of the GPT grader."),
)}
