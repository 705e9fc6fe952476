"""The demo teacher: writes captions and four-phase traces from a synthetic sample's scene
program, with a seeded rate of mistakes and malformed outputs so verification has real work.
It also stands in for the text LLMs of the sources stage: a rule-based question cleaner, an
answer extractor that reads the solution text only (it can fail, and then says NONE), and a question
writer that reads a dense caption only (Long Grounded Thoughts, adapter caption_mcq)."""

from __future__ import annotations

import json
import random
import re
import time
from typing import Iterator

from mmfr.answers import answers_match, extract_answer, Tolerance
from mmfr import grounded
from mmfr.demo import synth
from mmfr.options import number_options
from mmfr.generate.core import Request, Response
from mmfr.generate.role import as_role, ModelRole

DEFAULT_MISTAKES = {"wrong_answer": 0.0, "no_answer_tag": 0.0, "unclosed_think": 0.0,
                    "repetition": 0.0, "too_short": 0.0,
                    # the question writer's (task "questions"): a reply cut off mid-JSON, a question whose
                    # evidence is no quote of the caption, a question with an option twice
                    "malformed_json": 0.0, "ungrounded": 0.0, "bad_options": 0.0}


class ScriptedBackend:
    name = "scripted"

    def __init__(self, role: ModelRole | dict):
        role = as_role(role, self.name)
        # seconds spent on each request before its response is ready, to simulate a model's
        # per-request time (resume and kill tests, demos of progress); 0 answers at once
        self.latency_s = float(role.option("latency_s") or 0)
        if self.latency_s < 0:
            raise ValueError(f"scripted backend: latency_s must be >= 0, got {self.latency_s}")
        self.mistakes = {**DEFAULT_MISTAKES, **(role.option("mistakes") or {})}
        unknown = set(self.mistakes) - set(DEFAULT_MISTAKES)
        if unknown:
            raise ValueError(f"scripted backend: unknown mistakes {sorted(unknown)} (known: {sorted(DEFAULT_MISTAKES)})")

    def generate(self, requests: list[Request], keys: list[str]) -> Iterator[Response]:
        for req, key in zip(requests, keys):
            if self.latency_s:
                time.sleep(self.latency_s)
            task = req.context.get("task")
            try:
                if task == "caption":
                    text = caption(req.context["metadata"])
                elif task == "trace":
                    text = trace(req.context, random.Random(req.seed), self.mistakes)
                elif task == "clean":
                    text = clean(req.context["question"])
                elif task == "extract":
                    text = extract(req.context)
                elif task == "expand":
                    text = expand(req.context, random.Random(req.seed), self.mistakes)
                elif task == "questions":
                    text = questions(req.context["caption"], req.context["n"], random.Random(req.seed),
                                     self.mistakes)
                else:
                    raise ValueError(f"scripted backend cannot do task {task!r}")
            except Exception as e:  # a record without a scene program, say
                yield Response(key, req.sample_id, req.sample_index, "", "error", 0, f"{type(e).__name__}: {e}")
                continue
            yield Response(key, req.sample_id, req.sample_index, text, "stop", len(text.split()))


def caption(metadata: dict) -> str:
    d = synth.describe(metadata)
    parts = [f"Category: {d['category']}", f"Summary: {d['summary']}"]
    for title, key in (("Components", "components"), ("Interactions", "interactions"),
                       ("Implicit properties", "implicit"), ("Ambiguities", "ambiguities")):
        items = d[key] or ["none"]
        parts.append(f"{title}:\n" + "\n".join(f"- {x}" for x in items))
    return "\n".join(parts)


def wrong_answer(answer: str, answer_type: str, choices: list[str], rng: random.Random) -> str:
    if answer_type == "choice" and choices:
        others = [chr(65 + i) for i in range(len(choices)) if chr(65 + i) != answer]
        return rng.choice(others) if others else answer
    try:
        value = float(answer)
        delta = rng.choice([-2, -1, 1, 2, 3])
        return str(int(value) + delta) if value.is_integer() else f"{value + delta:g}"
    except ValueError:
        return f"2{answer}" if answer else "0"


def trace(context: dict, rng: random.Random, mistakes: dict) -> str:
    """A four-phase reasoning trace for one record; ``mistakes`` are per-trace probabilities."""

    sol = synth.solution(context["metadata"])
    answer = sol["answer"]
    kind = None
    roll, acc = rng.random(), 0.0
    for name, p in mistakes.items():
        acc += p
        if roll < acc:
            kind = name
            break
    steps = list(sol["steps"])
    if kind == "wrong_answer":
        answer = wrong_answer(answer, context["answer_type"], context.get("choices") or [], rng)
        steps.append(f"So the result is {answer}.")
    phases = [
        "Phase 1: information extraction. I read the image carefully before anything else. "
        + " ".join(sol["facts"]),
        "Phase 2: problem setup. " + sol["setup"],
        "Phase 3: solution execution. " + " ".join(steps),
        "Phase 4: validation. " + (sol["check"] if kind != "wrong_answer" else
                                   f"Checking again, I keep the value {answer}."),
    ]
    if kind == "too_short":
        phases = [f"The answer is {answer}."]
    if kind == "repetition":
        loop = phases[2] + " Let me redo this computation to be sure."
        times = max(4, -(-200 // len(loop.split())))  # a degenerate loop of at least 200 words
        phases[2] = " ".join([loop] * times)
    think = "\n\n".join(phases) + f"\n\nThe final answer is: {answer}"
    closing = "" if kind == "unclosed_think" else "\n</think>"
    tail = "" if kind == "no_answer_tag" else f"\n<answer>{answer}</answer>"
    return f"<think>\n{think}{closing}{tail}"


_NUMBERING = re.compile(r"^\s*(?:question|problem|q)\s*\d+\s*[:.)]\s*", re.I)
_MARKUP = re.compile(r"<\s*/?\s*(?:br|p|div|span|b|i)\s*/?\s*>|&nbsp;", re.I)
_DIRECT = re.compile(r"(?:please\s+)?(?:answer|respond|reply)\s+(?:directly|briefly|only)[^.?!]*[.?!]?"
                     r"|(?:output|give)\s+only\s+the\s+(?:letter|answer|number)[^.?!]*[.?!]?", re.I)
_MISSING_CONTEXT = re.compile(r"previous (?:page|problem|question)|the passage above", re.I)


def clean(question: str) -> str:
    """Strip numbering and markup, turn answer-directly instructions into an invitation to reason,
    and flag questions that point at context which is not there."""
    if _MISSING_CONTEXT.search(question):
        return f"STATUS: UNANSWERABLE\nQUESTION:\n{question}"
    text = _MARKUP.sub(" ", _NUMBERING.sub("", question))
    if _DIRECT.search(text):
        text = _DIRECT.sub("", text).rstrip() + " Work it out step by step, then state the final answer."
    text = re.sub(r"[ \t]+", " ", text).strip()
    return f"STATUS: OK\nQUESTION:\n{text}"


def extract(context: dict) -> str:
    """The final answer of a worked solution by the same rules the verifier uses on traces."""

    answer, method = extract_answer(context["solution"] or "", context.get("answer_type") or "text",
                                    context.get("choices") or [])
    return f"The solution ends with its result ({method}).\nANSWER: {answer if answer else 'NONE'}"


_RECHECK = ("Redoing this step: {}", "Checking it again: {}", "Going through it once more: {}")
_HOLDS = ("That agrees with what the image shows.", "Yes, this step holds.", "No problem with this one.")
EXPAND_FIXES = 0.8  # share of wrong short answers the scripted reasoner catches and corrects


def expand(context: dict, rng: random.Random, mistakes: dict) -> str:
    """Long Grounded Thoughts expansion as a scripted reasoning model: continue a short trace after
    the cue, re-derive every step from the scene program and compare with the short answer. A wrong
    short answer is caught and fixed with probability ``EXPAND_FIXES``, else kept (a self-check that
    fails, as a real model's can). Like a thinking model's output, the text starts mid-thought and
    closes ``</think>``; ``mistakes`` apply as in ``trace``."""

    sol = synth.solution(context["metadata"])
    correct, short = sol["answer"], context.get("short_answer")
    kind, roll, acc = None, rng.random(), 0.0
    for name, p in mistakes.items():
        acc += p
        if roll < acc:
            kind = name
            break
    try:
        agrees = short is not None and answers_match(short, correct, context["answer_type"],
                                                     context.get("choices") or [], Tolerance())[0]
    except ValueError:  # a short answer naming no option
        agrees = False
    lines = [f"{context.get('cue') or 'Wait,'} before I commit to this, let me go back over it from the start."]
    lines.append("What the first attempt read off the image: " + " ".join(sol["facts"]))
    lines.append("What is asked: " + sol["setup"])
    for step in sol["steps"]:
        lines.append(rng.choice(_RECHECK).format(step) + " " + rng.choice(_HOLDS))
    if short is None:
        final = correct
        lines.append(f"The first attempt did not state an answer; the derivation gives {correct}. {sol['check']}")
    elif agrees:
        final = short
        lines.append(f"This gives {correct} again, the same as the first attempt. {sol['check']}")
    elif rng.random() < EXPAND_FIXES:
        final = correct
        lines.append(f"Hmm, this gives {correct}, but the first attempt concluded {short}. The two cannot both be "
                     f"right, so I go back to where they part: the first attempt slipped in its last step. "
                     f"Redoing it carefully gives {correct}. {sol['check']}")
    else:
        final = short
        lines.append(f"Hmm, this gives {correct}, while the first attempt concluded {short}. Looking at the first "
                     f"attempt once more, I still find its reading convincing, so I keep {short}.")
    if kind == "wrong_answer":
        final = wrong_answer(correct, context["answer_type"], context.get("choices") or [], rng)
        lines.append(f"On reflection I change my mind once more and settle on {final}.")
    if kind == "too_short":
        lines = [f"{context.get('cue') or 'Wait,'} the answer is {final}."]
    if kind == "repetition":
        loop = " ".join(lines[2:]) + " Let me check all of this again."
        lines = lines[:2] + [loop] * max(4, -(-200 // len(loop.split())))
    think = "\n\n".join(lines) + f"\n\nThe final answer is: {final}"
    closing = "" if kind == "unclosed_think" else "\n</think>"
    tail = "" if kind == "no_answer_tag" else f"\n<answer>{final}</answer>"
    return f"{think}{closing}{tail}"


_COUNT = re.compile(r"There (?:is|are) (\d+) ([a-z ]+)\.")
_EXTREME = re.compile(r"The ([a-z ]+) is the shape furthest to the (left|right)\.")
_RELATION = re.compile(r"The ([a-z ]+) is to the (left|right) of the ([a-z ]+)\.")


def questions(caption: str, n: int, rng: random.Random, mistakes: dict) -> str:
    """A question writer that reads only the caption: a question for each sentence of it that
    settles one (counts, the shape furthest to a side, left-right relations), at most ``n`` in a
    seeded order, as the JSON prompt ``questions`` asks for. ``mistakes`` (a probability each):
    ``malformed_json``, ``ungrounded``, ``bad_options``."""
    sentences = [m.group(0) for m in re.finditer(r"[^.]+\.", caption)]
    shapes = list(dict.fromkeys(m.group(1) for m in _EXTREME.finditer(caption)) or [])
    shapes += [m.group(g) for m in _RELATION.finditer(caption) for g in (1, 3)]
    shapes = list(dict.fromkeys(shapes))
    written = []
    for sentence in sentences:
        sentence = sentence.strip()
        if m := _COUNT.fullmatch(sentence):
            count, things = int(m.group(1)), grounded.plural(m.group(2)) if m.group(1) == "1" else m.group(2)
            options = number_options(rng, count, [count - 1, count + 1, count + 2], minimum=1)
            written.append({"question": f"How many {things} are there in the picture?", "options": options,
                            "answer": "ABCD"[options.index(str(count))], "evidence": sentence})
        elif (m := _EXTREME.fullmatch(sentence)) and len(shapes) >= 4:
            others = rng.sample([s for s in shapes if s != m.group(1)], 3)
            written.append({"question": f"Which shape is furthest to the {m.group(2)} in the picture?",
                            "options": [m.group(1), *others], "answer": "A", "evidence": sentence})
        elif m := _RELATION.fullmatch(sentence):
            written.append({"question": f"Is the {m.group(1)} to the left or to the right of the {m.group(3)}?",
                            "options": ["to the left", "to the right"],
                            "answer": "A" if m.group(2) == "left" else "B", "evidence": sentence})
    rng.shuffle(written)
    written = written[:n]
    roll = rng.random()
    if written and roll < mistakes["ungrounded"]:
        written[0]["evidence"] = "This is clear from the picture."
    elif written and roll < mistakes["ungrounded"] + mistakes["bad_options"]:
        written[0]["options"] = [written[0]["options"][0]] * 2
    text = json.dumps({"questions": written}, indent=1)
    if rng.random() < mistakes["malformed_json"]:
        text = text[: len(text) // 2]
    return text
