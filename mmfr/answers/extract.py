"""Reading the final answer out of a model's response: the ``<answer>`` tag, ``\\boxed{}``, an
option letter, a last number."""

from __future__ import annotations

import re


def last_answer_tag(text: str) -> str | None:
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    if start < 0:
        return None
    return text[start + len("<answer>"):end].strip() or None


def split_response(text: str) -> tuple[str | None, str | None]:
    """Split a response into (think content, answer-tag content).

    The think part is present only when the response opens with ``<think>`` and holds exactly one
    ``<think>`` and one ``</think>``. The answer is the last non-empty ``<answer>…</answer>`` after
    the last ``</think>`` (anywhere when there is none), so answers inside the CoT never count.
    """
    body = text.lstrip()
    think = None
    if body.startswith("<think>") and body.count("<think>") == 1 and body.count("</think>") == 1:
        think = body[len("<think>"):body.index("</think>")].strip()
    return think, last_answer_tag(text.rpartition("</think>")[2])


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) whose braces balance."""
    for start in reversed([m.end() for m in _BOXED.finditer(text)]):
        depth = 1
        for j in range(start, len(text)):
            depth += (text[j] == "{") - (text[j] == "}")
            if depth == 0:
                return text[start:j].strip()
    return None


FINAL_PREFIX = re.compile(r"^\s*(?:\*\*)?\s*the final answer is\s*:?\s*(?:\*\*)?\s*", re.I)
_LETTER = r"\**\s*\(?([A-J])\)?\**"
_CHOICE_EXPLICIT = re.compile(
    rf"(?i:\banswer|\bcorrect (?:option|choice))(?:\s+is)?\**\s*[:：]?\s*{_LETTER}(?![\w(])")
_CHOICE_STANDALONE = re.compile(rf"\(([A-J])\)|^[ \t]*{_LETTER}[ \t]*(?:[.:)]|$)", re.M)
_NUMBER = re.compile(r"(?:(?<![\w.)])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")


def choice_letter(text: str, choices: list[str]) -> str | None:
    allowed = {chr(ord("A") + i) for i in range(len(choices))} if choices else None
    for pattern in (_CHOICE_EXPLICIT, _CHOICE_STANDALONE):
        letters = [next(g for g in m.groups() if g) for m in pattern.finditer(text)]
        letters = [x for x in letters if allowed is None or x in allowed]
        if letters:
            return letters[-1]
    return None


def extract_answer(text: str, answer_type: str, choices: list[str]) -> tuple[str | None, str]:
    """Extract the final answer from a response.

    Order: content of the last <answer>…</answer> (if it holds a \\boxed{}, take the boxed content;
    strip a leading 'The final answer is:'), else the last \\boxed{…} (balanced braces, nested ok),
    else for answer_type 'choice' a standalone option letter (e.g. 'Answer: B', '(C)', 'B.'), else the
    last number in the text. Returns (answer or None, method) with method in
    {'answer_tag','boxed','choice_letter','last_number','none'}.
    """
    _, tagged = split_response(text)
    if tagged is not None:
        tagged = last_boxed(tagged) or FINAL_PREFIX.sub("", tagged)
        if tagged:
            return tagged, "answer_tag"
    if boxed := last_boxed(text):
        return boxed, "boxed"
    if answer_type == "choice" and (letter := choice_letter(text, choices)):
        return letter, "choice_letter"
    if numbers := _NUMBER.findall(text):
        return numbers[-1], "last_number"
    return None, "none"
