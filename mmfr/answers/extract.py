"""Reading the final answer out of a model's response: the ``<answer>`` tag, ``\\boxed{}`` (several
boxed answers side by side make a list), an "answer is X" phrase, an option letter, a bare answer."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np


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
_BETWEEN_BOXES = re.compile(r"[\s$,;:.]*(?:(?:and|or|&|,)[\s$]*)?(?:\\(?:quad|qquad|,|;)\s*)*[\s$,;]*")


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every ``\\boxed{…}`` (or ``\\fbox{…}``) whose braces balance."""
    spans = []
    for m in _BOXED.finditer(text):
        depth = 1
        for j in range(m.end(), len(text)):
            depth += (text[j] == "{") - (text[j] == "}")
            if depth == 0:
                spans.append((m.start(), j + 1, text[m.end():j].strip()))
                break
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` whose braces balance."""
    spans = boxed_spans(text)
    return spans[-1][2] if spans else None


def final_boxed(text: str) -> str | None:
    """The last boxed answer, or the list of the last boxes standing side by side ("\\boxed{6} and
    \\boxed{8}" → "6, 8"): boxes joined only by "and", commas or spacing belong together."""
    spans = boxed_spans(text)
    if not spans:
        return None
    group = [spans[-1]]
    for prev in reversed(spans[:-1]):
        if not _BETWEEN_BOXES.fullmatch(text[prev[1]:group[0][0]]):
            break
        group.insert(0, prev)
    return ", ".join(s[2] for s in group if s[2]) or None


FINAL_PREFIX = re.compile(r"^\s*(?:\*\*)?\s*the final answer is\s*:?\s*(?:\*\*)?\s*", re.I)
_PICK = r"(?:(?i:option|choice|image|figure|graph|picture|diagram|shape|statement|answer)\s*)?"
_LETTER = rf"\**\s*{_PICK}\(?([A-J])\)?\**"
_CHOICE_EXPLICIT = re.compile(
    rf"(?i:\banswer|\bcorrect (?:option|choice|image|figure|one)|\bi (?:choose|pick|select))"
    rf"(?:\s+(?:is|would be|should be))?\**\s*[:：]?\s*{_LETTER}(?![\w(])")
_CHOICE_STANDALONE = re.compile(rf"\(([A-J])\)|^[ \t]*{_LETTER}[ \t]*(?:[.:)]|$)", re.M)
_ANSWER_IS = re.compile(
    r"(?i:(?<![</\w])(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|would be|should be|=)?\s*[:：]?)[ \t]*\**[ \t]*"
    r"(?P<answer>[^\n]+?)[ \t]*\**[ \t]*\.?[ \t]*$", re.M)
_LATEX_FRAC = r"-?\\[dt]?frac\s*\{\s*-?\d+(?:\.\d+)?\s*\}\s*\{\s*-?\d+(?:\.\d+)?\s*\}"
_NUMBER = re.compile(
    rf"{_LATEX_FRAC}|(?:(?<![\w.)])-)?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")
BARE_MAX_WORDS = 6  # a response this short, with no marker, is its own answer


def choice_letter(text: str, choices: list[str]) -> str | None:
    allowed = {chr(ord("A") + i) for i in range(len(choices))} if choices else None
    for pattern in (_CHOICE_EXPLICIT, _CHOICE_STANDALONE):
        letters = [next(g for g in m.groups() if g) for m in pattern.finditer(text)]
        letters = [x for x in letters if allowed is None or x in allowed]
        if letters:
            return letters[-1]
    return None


def answer_is(text: str) -> str | None:
    """X of the last "the answer is X" / "Answer: X" line, stripped of math delimiters' padding."""
    found = [m["answer"].strip() for m in _ANSWER_IS.finditer(text)]
    return found[-1].strip("*").strip() if found and found[-1].strip("*").strip() else None


def final_number(text: str) -> str | None:
    """The number of a last line of at most 25 words that holds exactly one ("So the total is 1,000
    dollars.", "$-\\frac{10}{9}$"); None when the line is long or holds several numbers. A closing
    question to the reader ("Anything else?") is not the last line."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    while len(lines) > 1 and lines[-1].strip().endswith("?"):
        lines.pop()
    if not lines or len(lines[-1].split()) > 25:
        return None
    numbers = _NUMBER.findall(lines[-1])
    return numbers[0] if len(numbers) == 1 else None


def extract_answer(text: str, answer_type: str, choices: list[str]) -> tuple[str | None, str]:
    """Extract the final answer from a response.

    Order: content of the last <answer>…</answer> (its boxed answers if it holds any; a leading
    'The final answer is:' stripped), else the last \\boxed{…} (side-by-side boxes make a list),
    else for answer_type 'choice' an option letter ('Answer: B', 'the correct answer is Image C',
    '(C)', 'B.'), else the X of a last "the answer is X", else a bare short response, else the one
    number of a short last line. Only the text after the last </think> is read when there is one; a
    short answer after an ``<answer>`` left unclosed (a response cut off) counts. Returns (answer or
    None, method), method in {'answer_tag', 'answer_tag_open', 'boxed', 'choice_letter',
    'answer_phrase', 'bare', 'last_number', 'none'}.
    """
    _, tagged = split_response(text)
    if tagged is not None:
        tagged = final_boxed(tagged) or FINAL_PREFIX.sub("", tagged)
        if tagged:
            return tagged, "answer_tag"
    tail = text.rpartition("</think>")[2] if "</think>" in text else text
    if boxed := final_boxed(tail):
        return boxed, "boxed"
    opened = tail.rpartition("<answer>")[2] if "<answer>" in tail else ""
    if opened.strip() and "</answer>" not in opened and is_bare(opened):  # cut off before its closing tag
        return opened.strip().rstrip("."), "answer_tag_open"
    if answer_type == "choice" and (letter := choice_letter(tail, choices)):
        return letter, "choice_letter"
    if phrase := answer_is(tail):
        return phrase, "answer_phrase"
    if is_bare(tail):
        return tail.strip().rstrip("."), "bare"
    if number := final_number(tail):
        return number, "last_number"
    return None, "none"


_WORD = re.compile(r"(?<![\\A-Za-z])(?!and\b)[A-Za-z]{2,}")


def is_bare(text: str) -> bool:
    """A response that is only an answer: one line of at most two words, or a short formula with
    no word of prose in it."""
    text = text.strip()
    if not text or "\n" in text or "answer>" in text:  # an empty or broken answer tag is no answer
        return False
    words = text.split()
    return len(words) <= 2 or (len(words) <= BARE_MAX_WORDS and not _WORD.search(re.sub(r"\\[A-Za-z]+", "", text)))


# ------------------------------------------------------------- a looping response

_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)
SMALL_WORDS = 80  # below this many words a plain count of the windows beats numpy's overhead


def _powers(base: int, count: int) -> np.ndarray:
    """base**0 .. base**(count-1) modulo 2**64."""
    out = np.full(count, base, dtype=np.uint64)
    out[:1] = 1
    return np.cumprod(out, out=out)


def window_hashes(words: list[str], n: int) -> np.ndarray:
    """A polynomial hash modulo 2**64 of every n-word window (``len(words) >= n``), from the words'
    own hashes: prefix sums of id * B**i, each window's difference scaled back by B**-i. Equal
    windows hash equal; unequal ones may collide, so a caller confirms what it finds."""
    size, count = len(words), len(words) - n + 1
    ids = np.fromiter(map(hash, words), dtype=np.int64, count=size).view(np.uint64)
    prefix = np.zeros(size + 1, dtype=np.uint64)
    np.cumsum(ids * _powers(_BASE, size), out=prefix[1:])  # wraps modulo 2**64, as meant
    return (prefix[n:] - prefix[:count]) * _powers(_BASE_INV, count)


def has_repeated_ngram(words: list[str], n: int, max_repeats: int) -> bool:
    """Whether some n-gram of ``words`` occurs at least ``max_repeats`` times (overlaps count).

    Linear time but for one sort: hash every window (``window_hashes``), sort the hashes, and look
    for a run of ``max_repeats`` equal ones; a run found is confirmed on the words themselves, so a
    hash collision never flags a clean text. Short inputs count their windows directly."""
    size = len(words)
    if n <= 0 or size < n + max(max_repeats, 1) - 1:
        return False
    if max_repeats <= 1:
        return True  # every window occurs once
    if size < SMALL_WORDS:
        return max(Counter(tuple(words[i:i + n]) for i in range(size - n + 1)).values()) >= max_repeats
    hashes = window_hashes(words, n)
    ranked = np.sort(hashes)
    runs = ranked[max_repeats - 1:] == ranked[:len(ranked) - max_repeats + 1]
    for value in dict.fromkeys(ranked[:len(runs)][runs].tolist()):  # each candidate hash once
        same = Counter(tuple(words[i:i + n]) for i in np.flatnonzero(hashes == value).tolist())
        if max(same.values()) >= max_repeats:
            return True
    return False


def has_repetition(text: str, n: int, max_repeats: int) -> bool:
    """Whether some n-gram of whitespace-separated words occurs >= max_repeats times (overlaps count)."""
    return has_repeated_ngram(text.split(), n, max_repeats)
