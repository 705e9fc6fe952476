"""Whether two answers are the same: option letters and texts, numbers within a tolerance,
math-verify for expressions, normalised text."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass

from mmfr.answers.extract import FINAL_PREFIX

ANSWER_TYPES = ("choice", "number", "expression", "text")
MATH_VERIFY_TIMEOUT_S = 2  # per parse / per comparison, main thread only (signal.alarm)
UNGUARDED_MAX_CHARS = 300  # off the main thread (no alarm): longer expressions skip math-verify


@dataclass(frozen=True)
class Tolerance:
    """How close two numbers must be to be the same answer."""

    rel_tol: float = 1e-4
    abs_tol: float = 1e-6


_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_MATH_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def strip_math(s: str) -> str:
    """Answer text without a 'The final answer is:' prefix, math delimiters or a final period."""
    s = FINAL_PREFIX.sub("", s.strip()).rstrip(". ")
    for left, right in _MATH_DELIMS:
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            return s[len(left):-len(right)].strip()
    return s


def plain_text(s: str) -> str:
    return _LATEX_WRAPPER.sub(r"\1", strip_math(s)).strip()


def normalize_text(s: str) -> str:
    s = re.sub(r"[^\w\s]", " ", plain_text(s).lower())
    return " ".join(w for w in s.split() if w not in ("a", "an", "the"))


_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(_NUM)
_FRACTION = re.compile(rf"([-+]?)\\[dt]?frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}|({_NUM})\s*/\s*({_NUM})")
_UNIT_TAIL = re.compile(r"(?!(?:pi|sqrt|e|i)\b)[A-Za-zµΩ°][\w°²³/^{}·.\s-]*")
_NUMERIC_NOISE = re.compile(r"\\[,!;:]|\{,\}|\^\s*\{?\\circ\}?|\\circ|\\degree|°|\\?%")


def to_number(s: str) -> tuple[float, bool] | None:
    """(value, is_percent) of a plain numeric answer: commas, %, units, \\frac and a/b allowed."""
    s = plain_text(s).replace("≈", "=").rpartition("=")[2]
    percent = "%" in s
    s = _NUMERIC_NOISE.sub("", s.replace("\\ ", " ")).strip()
    if m := _FRACTION.fullmatch(s):
        sign, num, den = (m[1], m[2], m[3]) if m[2] else ("", m[4], m[5])
        den_value = float(den.replace(",", ""))
        if den_value == 0:
            return None
        return (-1 if sign == "-" else 1) * float(num.replace(",", "")) / den_value, percent
    m = _NUM_RE.match(s)
    if not m or (tail := s[m.end():].strip()) and not _UNIT_TAIL.fullmatch(tail):
        return None
    return float(m.group().replace(",", "")), percent


def numbers_close(p: tuple[float, bool], g: tuple[float, bool], tol: Tolerance) -> bool:
    """Equal within tolerance; a percentage also matches its fraction (50% ~ 50 ~ 0.5)."""
    def forms(value, percent):
        return (value, value / 100) if percent else (value,)
    return any(math.isclose(a, b, rel_tol=tol.rel_tol, abs_tol=tol.abs_tol)
               for a in forms(*p) for b in forms(*g))


_RISKY = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{?\s*\d{4,}|\d{3,}\s*!")


def math_verify(pred: str, gold: str) -> bool | None:
    """math-verify equivalence of two LaTeX answers, or None where either side does not parse.

    math-verify times out with signal.alarm, which works on the main thread only; elsewhere it runs
    without a timeout, so long or explosive inputs (power towers, huge factorials) are refused."""
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main and (len(pred) + len(gold) > UNGUARDED_MAX_CHARS or _RISKY.search(pred + gold)):
        return None
    from math_verify import parse, verify

    timeout = MATH_VERIFY_TIMEOUT_S if on_main else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # a parser bug on odd input must not stop the chain
        return None


def choice_index(s: str, choices: list[str], tol: Tolerance) -> int | None:
    """The option an answer names: a letter ('B', '(b)', 'Option B', 'B. text') or an option's text."""
    plain = plain_text(s)
    letter = re.fullmatch(r"(?:(?i:option|choice|answer)\s*:?\s*)?\(?([A-Za-z])\)?", plain)
    if not letter and choices:
        norm = normalize_text(plain)
        texts = [normalize_text(c) for c in choices]
        if norm in texts:
            return texts.index(norm)
    letter = letter or re.match(r"\(?([A-Z])(?:\)|[.:]\s)", plain)
    if letter:
        index = ord(letter[1].upper()) - ord("A")
        return index if not choices or index < len(choices) else None
    if (value := to_number(plain)) is not None:
        hits = [i for i, c in enumerate(choices) if (v := to_number(c)) and numbers_close(value, v, tol)]
        if len(hits) == 1:
            return hits[0]
    return None


def answers_match(pred: str, gold: str, answer_type: str, choices: list[str],
                  tol: Tolerance) -> tuple[bool, str]:
    """Rule checks. Returns (equal, method), method in {'choice','numeric','math_verify','text'}.

    choice: pred may be a letter, '(B)', 'B. text', or the option's text itself → compare to the gold
    letter (a gold naming no option raises ValueError: it is a data error);
    number: parse numbers (commas, %, units, LaTeX \\frac, simple fractions) → tolerance; fall back
    to math-verify; expression: math-verify (both wrapped in $…$, verify(gold, pred)) with timeouts,
    after cheap exact and numeric checks; text: normalised exact match (case, whitespace,
    punctuation, articles). An expression or number that math-verify cannot parse falls back to text.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")
    if answer_type == "choice":
        gold_index = choice_index(gold, choices, tol)
        if gold_index is None:
            raise ValueError(f"gold answer {gold!r} names none of the options {choices!r}")
        return choice_index(pred, choices, tol) == gold_index, "choice"
    if answer_type in ("number", "expression"):
        p, g = strip_math(pred), strip_math(gold)
        if answer_type == "expression" and re.sub(r"\s+", "", p) == re.sub(r"\s+", "", g):
            return True, "text"
        p_num, g_num = to_number(p), to_number(g)
        if p_num is not None and g_num is not None:
            return numbers_close(p_num, g_num, tol), "numeric"
        if (equal := math_verify(p, g)) is not None:
            return equal, "math_verify"
    return normalize_text(pred) == normalize_text(gold), "text"
