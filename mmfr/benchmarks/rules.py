"""The benchmarks' own scoring rules, re-implemented from their published evaluation code (each
function names the file it follows). They read a response that has already been cut down to its
final part (``mmfr.answers.extract_answer``), so a long chain of thought cannot feed them stray
letters or numbers."""

from __future__ import annotations

import re

from mmfr.answers import LETTERS

# --------------------------------------------------------------------------- MMMU / MMMU-Pro
# MMMU-Benchmark/MMMU, mmmu/utils/eval_utils.py: parse_multi_choice_response, parse_open_response,
# eval_open. One departure: where no option is named the official code picks one at random; here the
# item is wrong (the expected score of the random pick is 1/n, its outcome is not reproducible).


def mmmu_choice(response: str, options: list[str]) -> str | None:
    """The option letter a response names: "(B)" first, then " B " as a word, then (for a response
    of more than five words) an option's text; the last one mentioned wins."""
    letters = list(LETTERS[:len(options)])
    text = " " + response.strip(",.!?;:'") + " "
    found = [c for c in letters if f"({c})" in text]
    how = "bracket"
    if not found:
        found, how = [c for c in letters if f" {c} " in text], "word"
    if not found and len(text.split()) > 5:
        found = [c for c, o in zip(letters, options) if o and o.lower() in text.lower()]
        how = "text"
    if len(found) <= 1:
        return found[0] if found else None
    if how == "bracket":
        return max(found, key=lambda c: text.rfind(f"({c})"))
    if how == "word":
        return max(found, key=lambda c: text.rfind(f" {c} "))
    return max(found, key=lambda c: text.lower().rfind(options[letters.index(c)].lower()))


def mmmu_pro_choice(response: str, options: list[str]) -> str | None:
    """MMMU-Pro's variant (mmmu-pro/evaluate.py): a single option letter after the last "Answer:"
    wins; else "(B)", then "B " (no space needed before it, as the official code does), then "B.",
    then an option's text; the last one mentioned wins."""
    letters = list(LETTERS[:len(options)])
    if "Answer:" in response:
        after = response.rpartition("Answer:")[2]
        named = set(re.findall(r"\b([A-J])\b", after)) & set(letters)
        if len(named) == 1:
            return named.pop()
    text = " " + response.strip(",.!?;:'") + " "
    for form in ("({})", "{} ", "{}."):
        found = [c for c in letters if form.format(c) in text]
        if found:
            return max(found, key=lambda c: text.rfind(form.format(c)))
    if len(text.split()) > 5:
        found = [c for c, o in zip(letters, options) if o and o.lower() in text.lower()]
        if found:
            return max(found, key=lambda c: text.lower().rfind(options[letters.index(c)].lower()))
    return None


_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_NUMBERS = (re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b"), re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+"),
            re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+)(?![eE][+-]?\d+)(?![,\d])"))


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def mmmu_normal(text: str) -> list:
    """A number rounded to 2 places, else the lower-cased text (one letter padded with a space on
    either side, as the official code does so that it only matches as a word)."""
    text = text.strip()
    if (value := _number(text)) is not None:
        return [round(value, 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def mmmu_open_candidates(response: str) -> list:
    """The official open-answer candidates: per line, the shortest tail after an indicator word
    ("so", "is", "therefore", "answer"...; also "=" on the last line), else the whole response;
    plus every number in them; all normalised."""
    response = response.strip().strip(".").lower()
    lines = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for k, line in enumerate(lines):
        indicators = _INDICATORS + (("=",) if k == len(lines) - 1 else ())
        tails = [line.split(i)[-1].strip() for i in indicators if i in line]
        if tails and (best := min(tails, key=len)) not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(best)
    keys = keys or [response]
    found = list(keys)
    for key in keys:
        for pattern in _NUMBERS:
            found += pattern.findall(key)
    out = []
    for item in found:
        for norm in mmmu_normal(item):
            if norm not in out:
                out.append(norm)
    return out


def mmmu_open_correct(candidates: list, golds: list[str]) -> bool:
    """A normalised gold text inside a candidate text, or a gold number equal to a candidate number."""
    norms = [n for g in golds for n in mmmu_normal(str(g))]
    for cand in candidates:
        if isinstance(cand, str):
            if any(isinstance(n, str) and n in cand for n in norms):
                return True
        elif cand in norms:
            return True
    return False


# --------------------------------------------------------------------------- MathVista
# lupantech/MathVista, evaluation/calculate_score.py: normalize_extracted_answer, safe_equal


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def mathvista_normal(extraction: str | None, choices: list[str], question_type: str, answer_type: str,
                     precision) -> str | None:
    """The extraction in the gold's form: a multiple-choice letter (or the nearest option text by
    edit distance) becomes the option's text; an integer is int(float(x)); a float is rounded to the
    item's precision; a list is written "[a, b]"."""
    text = "" if extraction is None else str(extraction).strip()
    if question_type == "multi_choice":
        if letter := re.findall(r"\(([a-zA-Z])\)", text):
            text = letter[0].upper()
        letters = list(LETTERS[:len(choices)])
        if text in letters:
            return choices[letters.index(text)]
        return min(choices, key=lambda c: levenshtein(text, c)) if choices else None
    try:
        if answer_type == "integer":
            return str(int(float(text.replace(",", ""))))
        if answer_type == "float":
            return str(round(float(text.replace(",", "")), int(precision or 0)))
    except ValueError:
        return None
    if answer_type == "list":
        inner = text.strip("[]() ")
        return "[" + ", ".join(p.strip() for p in inner.split(",")) + "]" if inner else None
    return text


# --------------------------------------------------------------------------- letters

_LETTER_SET = re.compile(r"(?<![A-Za-z])([A-J])(?![A-Za-z])")


def letter_set(text: str | None, allowed: str = LETTERS[:10]) -> frozenset[str]:
    """The option letters an answer names ("B, D", "(A) and (C)", "AC"): LogicVista's multi-letter
    answers compare as sets."""
    if not text:
        return frozenset()
    text = text.strip()
    if re.fullmatch(r"[A-J]{2,}", text):
        return frozenset(text)
    return frozenset(m for m in _LETTER_SET.findall(text) if m in allowed)
