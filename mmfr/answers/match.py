"""Whether two answers are the same: option letters and texts, numbers within a tolerance,
tuples, intervals, sets and lists element by element, math-verify for expressions, normalised text.

The answer is True, False, or None where nothing could decide (math-verify ran out of time): an
undecided comparison is never reported as a mismatch."""

from __future__ import annotations

import contextlib
import functools
import math
import re
import signal
import threading
import time
from dataclasses import dataclass

from mmfr.answers.extract import FINAL_PREFIX

ANSWER_TYPES = ("choice", "number", "expression", "text")
MATH_VERIFY_TIMEOUT_S = 2  # one comparison's math-verify work, all its calls together; main thread only (SIGALRM)
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


_NAME = re.compile(r"\s*(?:\\(?:angle|overline|widehat|triangle|measuredangle)\s*)?\{?[A-Za-z\u0370-\u03ff][\w'{}]*\}?"
                   r"(?:\s*\([^()]*\))?\s*")


def assigned_value(s: str) -> str:
    """The right side of "x = 5", "AB = 5", "f(2) = 5" or "≈ 5"; an equation of expressions on both
    sides ("a + 3z = 0") is left whole."""
    left, eq, right = s.replace("≈", "=").rpartition("=")
    return right if eq and (not left.strip() or _NAME.fullmatch(left.rpartition("=")[2])) else s


def to_number(s: str) -> tuple[float, bool] | None:
    """(value, is_percent) of a plain numeric answer: commas, %, units, \\frac and a/b allowed."""
    s = assigned_value(plain_text(s))
    if "=" in s:
        return None
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


class Undecided(Exception):
    """math-verify ran out of time: the comparison decided nothing."""


class OutOfTime(BaseException):
    """A comparison's clock ran out (raised by its timer wherever the main thread was). Not an
    Exception, so that math-verify's and sympy's ``except Exception`` let it through."""


@dataclass
class _Clock:
    seconds: float
    deadline: float | None = None  # set by the first math-verify call
    replaced: tuple = ()  # the SIGALRM handler and timer this clock's timer displaced


_clock: list[_Clock] = []  # the comparison running on the main thread, if any


def _out_of_time(signum, frame):
    raise OutOfTime


@contextlib.contextmanager
def time_bound(seconds: float | None = None):
    """Bound the math-verify work inside to ``seconds`` (``MATH_VERIFY_TIMEOUT_S``) in all, however
    many parse and verify calls it takes: the first call starts one SIGALRM timer (after math-verify
    is imported, so a first import costs nothing), and when it fires, whatever the main thread is
    running raises ``OutOfTime``; a call after that is ``Undecided`` at once. The timer and handler it
    displaced are restored on leaving. Nested bounds join the outermost; off the main thread
    (signals reach only that one) nothing is bounded."""
    if _clock or threading.current_thread() is not threading.main_thread():
        yield
        return
    clock = _Clock(MATH_VERIFY_TIMEOUT_S if seconds is None else seconds)
    _clock.append(clock)
    try:
        yield
    finally:
        try:
            if clock.replaced:
                signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # runs even when the timer fires just before it is stopped
            _clock.clear()
            if clock.replaced:
                handler, (left, interval), started = clock.replaced
                signal.signal(signal.SIGALRM, signal.SIG_DFL if handler is None else handler)  # None: set from C
                if left:
                    signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - started), 1e-3), interval)


def _start_clock() -> None:
    """Start the running comparison's timer at its first math-verify call; Undecided once it has run out."""
    if not _clock or threading.current_thread() is not threading.main_thread():
        return
    clock = _clock[0]
    if clock.deadline is None:
        clock.deadline = time.monotonic() + clock.seconds
        handler = signal.signal(signal.SIGALRM, _out_of_time)
        clock.replaced = (handler, signal.setitimer(signal.ITIMER_REAL, clock.seconds), time.monotonic())
    elif time.monotonic() >= clock.deadline:
        raise Undecided(f"math-verify ran out of time ({clock.seconds} s for the comparison)")


def math_verify(pred: str, gold: str) -> bool | None:
    """math-verify equivalence of two LaTeX answers, or None where either side does not parse;
    raises ``Undecided`` (or ``OutOfTime``) when the comparison's ``time_bound`` runs out.

    Time is bounded by signals, which work on the main thread only; elsewhere math-verify runs
    without a bound, so long or explosive inputs (power towers, huge factorials) are refused."""
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main and (len(pred) + len(gold) > UNGUARDED_MAX_CHARS or _RISKY.search(pred + gold)):
        return None
    _prepare_math_verify()
    from math_verify import parse, verify

    with time_bound():
        _start_clock()
        try:  # no timeouts of math-verify's own: each would be a new alarm per call, displacing ours
            gold_parsed = parse(f"${gold}$", parsing_timeout=None, raise_on_error=True)
            pred_parsed = parse(f"${pred}$", parsing_timeout=None, raise_on_error=True)
            if not gold_parsed or not pred_parsed:
                return None
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None, raise_on_error=True))
        except OutOfTime as e:
            raise Undecided(f"math-verify ran out of time ({MATH_VERIFY_TIMEOUT_S} s for the comparison)") from e
        except Exception:  # a parser bug on odd input must not stop the chain
            return None


@functools.cache
def _prepare_math_verify() -> None:
    """Once per process, outside any comparison's time: import math-verify, tell it not to warn that
    its calls run without its own timeout (ours bounds them), and warm its parser up (its first
    parse builds the grammar, about 0.2 s)."""
    import math_verify.grader
    import math_verify.parser

    math_verify.grader.TIMEOUT_WARNING_SHOWN = math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    gold, pred = (math_verify.parse(f"${s}$", parsing_timeout=None) for s in ("x+1", "1+x"))
    math_verify.verify(gold, pred, timeout_seconds=None)


# --------------------------------------------------------------------------- lists

_PAIRS = {"(": ")", "[": "]", "\\{": "\\}", "{": "}"}
_LIST_SEP = re.compile(r"\s*(?:[,;]|\band\b)\s*")


def _top_level(s: str) -> list[tuple[int, int]]:
    """(start, end) of the separators of ``s`` outside any bracket."""
    depth, seps = 0, []
    i = 0
    while i < len(s):
        if s.startswith(("\\{", "\\}"), i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        c = s[i]
        depth += (c in "([{") - (c in ")]}")
        if depth == 0 and (m := _LIST_SEP.match(s, i)) and m.end() > i and (s[i] in ",;" or s[i].isspace()):
            seps.append((i, m.end()))
            i = m.end()
            continue
        i += 1
    return seps


def as_list(s: str) -> tuple[str, str, list[str]] | None:
    """(open, close, items) of an answer holding several: "(1, 2)", "[0, 3)", "\\{1, 2\\}", "6 and 8",
    "6, 8"; None for one answer (a number with thousands commas is one answer)."""
    s = re.sub(r"\\(?:left|right)\s*(?=[(\[\]).]|\\[{}])", "", strip_math(s)).strip()
    opener = next((o for o in ("\\{", "(", "[", "{") if s.startswith(o)), "")
    close = s[-2:] if s.endswith("\\}") else s[-1:] if s[-1:] in ")]}" else ""
    body = s
    if opener and close and _encloses(s, len(opener), len(s) - len(close)):
        body = s[len(opener):len(s) - len(close)]
    else:
        opener = close = ""
        body = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # thousands commas: one number
    seps = _top_level(body)
    if not seps:
        return None
    bounds = [0, *[x for sep in seps for x in sep], len(body)]
    items = [body[bounds[k]:bounds[k + 1]].strip() for k in range(0, len(bounds), 2)]
    return (opener, close, items) if all(items) else None


def _encloses(s: str, start: int, end: int) -> bool:
    """Whether the brackets around s[start:end] belong together (depth stays above 0 inside)."""
    depth = 0
    for c in s[start:end]:
        depth += (c in "([{") - (c in ")]}")
        if depth < 0:
            return False
    return depth == 0


def _same_item(p: str, g: str, tol: Tolerance) -> bool | None:
    p_num, g_num = to_number(p), to_number(g)
    if p_num is not None and g_num is not None:
        return numbers_close(p_num, g_num, tol)
    if re.sub(r"\s+", "", strip_math(p)) == re.sub(r"\s+", "", strip_math(g)):
        return True
    equal = math_verify(strip_math(p), strip_math(g))
    return normalize_text(p) == normalize_text(g) if equal is None else equal


def lists_match(pred: tuple, gold: tuple, tol: Tolerance) -> bool:
    """Element-wise equality: in order for tuples and intervals (their brackets must agree when both
    sides have them), in any order for sets and bare lists."""
    p_open, p_close, p_items = pred
    g_open, g_close, g_items = gold
    if len(p_items) != len(g_items):
        return False
    if p_open and g_open and (p_open, p_close) != (g_open, g_close):
        return False
    if g_open in ("(", "[") or p_open in ("(", "["):
        return all(_same_item(p, g, tol) for p, g in zip(p_items, g_items))
    left = list(p_items)
    for g in g_items:
        hit = next((k for k, p in enumerate(left) if _same_item(p, g, tol)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def choice_index(s: str, choices: list[str], tol: Tolerance) -> int | None:
    """The option an answer names: a letter ('B', '(b)', 'Option B', 'B. text') or an option's text
    (None: none); raises ``Undecided`` where comparing it with the options' values ran out of time."""
    plain = plain_text(s)
    letter = re.fullmatch(r"(?:(?i:option|choice|answer|image|figure|graph)\s*:?\s*)?\(?([A-Za-z])\)?", plain)
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
    if choices and len(plain) <= UNGUARDED_MAX_CHARS and re.search(r"\\|[\d^_]", plain):
        # an option's value written another way: "\\dfrac{\\sqrt{5}-1}{2}" for "$\\frac{\\sqrt5-1}{2}$";
        # out of time (Undecided) is not "names no option": answers_match makes it a timeout
        hits = [i for i, c in enumerate(choices) if re.search(r"\\|[\d^_]", c) and math_verify(plain, strip_math(c))]
        if len(hits) == 1:
            return hits[0]
    return None


def answers_match(pred: str, gold: str, answer_type: str, choices: list[str],
                  tol: Tolerance) -> tuple[bool | None, str]:
    """Rule checks. Returns (equal, method), method in {'choice', 'numeric', 'list', 'math_verify',
    'text'}, or (None, 'timeout') where math-verify ran out of time: one comparison's math-verify
    work, all of it, is bounded by ``MATH_VERIFY_TIMEOUT_S`` (``time_bound``).

    choice: pred may be a letter, '(B)', 'B. text', or the option's text itself → compare to the gold
    letter (a gold naming no option raises ValueError: it is a data error);
    number: parse numbers (commas, %, units, LaTeX \\frac, simple fractions) → tolerance; fall back
    to math-verify; expression: math-verify (both wrapped in $…$, verify(gold, pred)) with timeouts,
    after cheap exact and numeric checks; text: normalised exact match (case, whitespace,
    punctuation, articles). An expression or number that math-verify cannot parse falls back to text.
    Where both answers hold several items (tuples, intervals, sets, "6 and 8") they are compared item
    by item, whatever the type.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")
    try:  # outside the bound: its timer may fire as it is being stopped
        with time_bound():
            if answer_type != "choice":
                return _match_value(pred, gold, answer_type, tol)
            gold_index = choice_index(gold, choices, tol)
            if gold_index is None:
                raise ValueError(f"gold answer {gold!r} names none of the options {choices!r}")
            return choice_index(pred, choices, tol) == gold_index, "choice"
    except (Undecided, OutOfTime):
        return None, "timeout"


def _match_value(pred: str, gold: str, answer_type: str, tol: Tolerance) -> tuple[bool, str]:
    if (g_list := as_list(gold)) and (p_list := as_list(pred)):
        return lists_match(p_list, g_list, tol), "list"
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
