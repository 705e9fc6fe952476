"""Reading a source's own fields: options written into a question or a choices column, the short
final answer a worked solution marks, the answer type, and the option letter an answer names."""

from __future__ import annotations

import ast
import json
import re

from mmfr.answers.extract import extract_answer
from mmfr.answers.match import normalize_text, plain_text, to_number

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LONG_ANSWER_WORDS = 20  # a source "answer" longer than this (or on several lines) is a worked solution


_OPTION_LINE = re.compile(r"^[ \t]*(?:\(([A-Z])\)|([A-Z])[.:：)．、])", re.M)  # "A. x", "A: x", "(A) x" lines
_OPTION_PAREN = re.compile(r"\(([A-Z])\)")                                   # "(A) x (B) y" inline
_OPTION_KEYWORD = re.compile(r"(?i:\b(?:options?|choices?|optoins)\b)\s*[:：]?")
_OPTION_INLINE = re.compile(r"(?:^|(?<=[\s,;:：，；]))([A-Z])[ \t]*[.:：)]")  # "options: A.x, B.y" after a keyword


def option_run(text: str, markers: list[tuple[str, int, int]]) -> list[str]:
    """Option texts of the last run of markers lettered A, B, C... (at least two), else []."""
    runs, run = [], []
    for m in markers:
        if m[0] == "A":
            run = [m]
            runs.append(run)
        elif run and ord(m[0]) == ord(run[-1][0]) + 1:
            run.append(m)
    for run in reversed(runs):
        if len(run) < 2:
            continue
        texts = []
        for i, (_, _, end) in enumerate(run):
            newline = text.find("\n", end)
            stop = run[i + 1][1] if i + 1 < len(run) else (newline if newline >= 0 else len(text))
            texts.append(re.sub(r"\s+", " ", text[end:stop]).strip().rstrip(",;，；").strip())
        if all(texts):
            return texts
    return []


def split_choices(question: str) -> tuple[str, list[str]]:
    """Options written into a question: ``(question, choices)``, the question itself unchanged.

    Recognised: one option per line ("A. x", "A: x", "(A) x", "A) x"), parenthesised letters inline
    ("(A) x (B) y"), and letters after an "Options:"/"Choices:" keyword ("Options: A.x, B.y"). Only a
    run of at least two consecutive letters starting at A counts, so "A. Smith said..." is text.
    """
    if not isinstance(question, str):
        return question, []
    line = [(m[1] or m[2], m.start(), m.end()) for m in _OPTION_LINE.finditer(question)]
    paren = [(m[1], m.start(), m.end()) for m in _OPTION_PAREN.finditer(question)]
    inline = []
    if keywords := list(_OPTION_KEYWORD.finditer(question)):
        start = keywords[-1].end()
        inline = [(m[1], start + m.start(), start + m.end()) for m in _OPTION_INLINE.finditer(question[start:])]
    for markers in (line, paren, inline):
        if choices := option_run(question, markers):
            return question, choices
    return question, []


def as_choices(value) -> list[str]:
    """A choices column as a list of option texts: a list, a {letter: text} dict, or either of them
    serialised as JSON or a Python literal; "A. x" labels running A, B, C... are removed."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith(("[", "{")):
            return []
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return []
    if isinstance(value, dict):
        value = [value[k] for k in sorted(value)] if all(k in LETTERS for k in value) else list(value.values())
    if not isinstance(value, (list, tuple)):
        return []
    options = ["" if v is None else str(v).strip() for v in value]
    return unlabelled(options) or options


_LABEL = re.compile(r"^\(?([A-Z])\)?\s*[.:：)]\s*(.*)$", re.S)


def unlabelled(options: list[str]) -> list[str] | None:
    """The option texts without their labels when every option is labelled A, B, C... in order."""
    found = [_LABEL.match(o) for o in options]
    if options and all(found) and "".join(m[1] for m in found) == LETTERS[:len(found)]:
        return [m[2].strip() for m in found]
    return None


# --------------------------------------------------------------------------- answers

_CONCLUSION = re.compile(r"<CONCLUSION>(.*?)</CONCLUSION>", re.S | re.I)
_ANSWER_PHRASE = re.compile(
    r"(?:(?i:\b(?:final\s+|correct\s+|right\s+)?(?:answer|option|choice)\s*(?:is\s*[:：]?|[:：]))"
    r"|(?:答案|故选|应选)\s*(?:为|是)?\s*[:：]?)\s*(?P<answer>.+?)[\s.。]*$")


def final_answer(text) -> str | None:
    """The short final answer a worked solution marks, else None (no guessing from a last number).

    Looks for, in order: ``<answer>…</answer>`` (its ``\\boxed{}`` if it holds one), the last
    ``\\boxed{…}``, the last LLaVA-CoT ``<CONCLUSION>…</CONCLUSION>``, and an "Answer: X" / "the
    answer is X" / "答案：X" phrase on the last non-empty line.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    found, method = extract_answer(text, "text", [])
    if method in ("answer_tag", "boxed"):
        return found
    if conclusions := _CONCLUSION.findall(text):
        inner = conclusions[-1].strip()
        return answer_phrase(inner) or inner or None
    return answer_phrase(text.strip().splitlines()[-1])


def answer_phrase(line: str) -> str | None:
    if not (m := _ANSWER_PHRASE.search(line)):
        return None
    answer = re.sub(r"^(?i:option|choice)\s+", "", m["answer"].strip().strip("*").strip())
    return answer if answer and len(answer.split()) <= LONG_ANSWER_WORDS else None


def is_long(text) -> bool:
    """Whether a source's answer text is a worked solution rather than a short answer."""
    return isinstance(text, str) and (len(text.split()) > LONG_ANSWER_WORDS or "\n" in text.strip())


def answer_and_solution(answer, solution=None) -> tuple:
    """(short answer, worked solution) from a source's answer and solution texts.

    A long answer text is a solution, and its marked final answer (or None) the answer; a short
    solution with no answer is the answer. Markers are peeled off short answers ("Answer: B" → "B",
    "\\boxed{5}" → "5"). Numbers become text; bytes pass through untouched.
    """
    answer, solution = (v if v is None or isinstance(v, (str, bytes)) else str(v) for v in (answer, solution))
    if isinstance(answer, str):
        if not answer.strip():
            answer = None
        elif is_long(answer):
            solution, answer = solution or answer, final_answer(answer)
        else:
            answer = final_answer(answer) or answer.strip()
    if isinstance(solution, str) and not solution.strip():
        solution = None
    if answer is None and isinstance(solution, str):
        if is_long(solution):
            answer = final_answer(solution)
        else:
            answer, solution = final_answer(solution) or solution.strip(), None
    return answer, solution


_LETTER_ANSWER = re.compile(r"(?:(?i:option|choice|answer)\s*[:：]?\s*)?\(?([A-Z])\)?(?:\s*[.:：)]\s*(.*))?", re.S)


def to_letter(answer, choices: list[str]) -> str | None:
    """The option letter an answer names: a letter ("B", "(B)", "B. text", "Option B") within the
    choices, or an option's text (exact, then normalised); None when it names none."""
    if not isinstance(answer, str) or not answer.strip():
        return None
    answer = answer.strip()
    options = [str(c).strip() for c in choices or []]
    if answer in options:
        return LETTERS[options.index(answer)]
    if (m := _LETTER_ANSWER.fullmatch(answer)) and (not options or LETTERS.index(m[1]) < len(options)):
        return m[1]
    norm = normalize_text(answer)
    texts = [normalize_text(c) for c in options]
    if norm and norm in texts:
        return LETTERS[texts.index(norm)]
    return None


_MATH_SIGN = re.compile(r"\\[A-Za-z]+|[\^_=<>≤≥≠±√π∞∠⊥∥∪∩∈∉⊂⊆]|\bsqrt\b|\bpi\b")
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "lg", "exp", "arcsin", "arccos", "arctan",
               "sqrt", "pi", "lim", "max", "min"}
_TUPLE = re.compile(r"[(\[]\s*[-+]?[\d.]+(?:\s*,\s*[-+]?[\d.]+)+\s*[)\]]")


def is_number(text: str) -> bool:
    """An integer, decimal, fraction or percentage, with at most a short unit after it."""
    plain = plain_text(text)
    if re.search(r"[=<>≤≥]", plain) or to_number(plain) is None:
        return False
    tail = re.sub(r"^\s*[-+]?[\d.,\s]*(?:/\s*[\d.]+)?\s*%?", "", plain)
    return len(tail.split()) <= 2 and not re.search(r"(?<![\^\w{])\d", tail)


def is_expression(text: str) -> bool:
    """A formula: LaTeX or math signs, or variables and functions joined by operators, or a tuple."""
    plain = plain_text(text)
    if len(plain.split()) > 12:
        return False
    if _MATH_SIGN.search(plain):
        return True
    if any(w.lower() not in _MATH_WORDS for w in re.findall(r"[A-Za-z]{2,}", plain)):
        return False
    return bool(re.search(r"[A-Za-z]", plain) and re.search(r"[-+*/()]", plain)) or bool(_TUPLE.fullmatch(plain))


def detect_answer_type(answer, choices: list[str] | None = None) -> str | None:
    """choice, number, expression or text, from the answer (and the options, if any).

    choice: a letter within the options, or an option's text (a bare letter counts when the options
    are not given, e.g. drawn in the image); number: int, decimal, fraction, percentage, optionally
    with a unit; expression: LaTeX or symbolic; text otherwise. With no answer (a solution-only
    record) the type is choice when there are options, else None: it is detected after extraction.
    """
    if isinstance(answer, bytes):
        answer = answer.decode("utf-8", errors="replace")
    if answer is None or not str(answer).strip():
        return "choice" if choices else None
    answer = str(answer).strip()
    if choices and to_letter(answer, choices):
        return "choice"
    if not choices and re.fullmatch(r"\(?[A-Z]\)?", answer):
        return "choice"
    if is_number(answer):
        return "number"
    if is_expression(answer):
        return "expression"
    return "text"
