"""Multiple-choice options and exact-number formatting shared by the families."""

from __future__ import annotations

import random
from typing import Iterable

LETTERS = "ABCD"


def lettered(rng: random.Random, correct: str, distractors: Iterable[str]) -> list[str]:
    """Four shuffled options: ``correct`` and the first three distinct distractors."""
    options = [correct]
    for d in distractors:
        if d not in options:
            options.append(d)
        if len(options) == len(LETTERS):
            break
    if len(options) < len(LETTERS):
        raise ValueError(f"not enough distinct distractors for {correct!r}")
    rng.shuffle(options)
    return options


def letter_of(options: list[str], correct: str) -> str:
    """The letter of ``correct`` among ``options``."""
    return LETTERS[options.index(correct)]


def _number_distractors(
    rng: random.Random, value: int, plausible: Iterable[int], step: int = 1, minimum: int = 0
) -> list[int]:
    """Plausible wrong numbers (shuffled, typical mistakes first), then ``value`` ± k·step."""
    plausible = [p for p in dict.fromkeys(plausible) if p != value and p >= minimum]
    rng.shuffle(plausible)
    near = [value + s * k * step for k in range(1, 6) for s in (1, -1)]
    return plausible + [p for p in near if p >= minimum and p not in plausible]


def number_options(
    rng: random.Random, value: int, plausible: Iterable[int], step: int = 1, minimum: int = 0, fmt: str = "{}"
) -> list[str]:
    """Four shuffled numeric options formatted with ``fmt``: the value and three distractors."""
    wrong = _number_distractors(rng, value, plausible, step, minimum)
    return lettered(rng, fmt.format(value), (fmt.format(w) for w in wrong))


def radical(n: int) -> tuple[int, int]:
    """√n as k·√m with m square-free: returns (k, m); m == 1 when n is a perfect square."""
    k, m = 1, n
    f = 2
    while f * f <= m:
        while m % (f * f) == 0:
            k, m = k * f, m // (f * f)
        f += 1
    return k, m


def radical_latex(n: int) -> str:
    """√n in simplest LaTeX: ``13``, ``\\sqrt{2}``, ``5\\sqrt{2}``."""
    k, m = radical(n)
    if m == 1:
        return str(k)
    return (str(k) if k > 1 else "") + f"\\sqrt{{{m}}}"


def radical_text(n: int) -> str:
    """√n in simplest plain text: ``13``, ``√2``, ``5√2``."""
    k, m = radical(n)
    if m == 1:
        return str(k)
    return (str(k) if k > 1 else "") + f"√{m}"


def plural(n: int, word: str) -> str:
    """``1 circle``, ``3 circles``."""
    return f"{n} {word}" + ("" if n == 1 else "s")
