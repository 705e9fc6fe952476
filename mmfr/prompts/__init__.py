"""Prompt files: our own text, versioned by content hash, which enters every request key."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from mmfr.answers import split_choices

HERE = Path(__file__).parent


@lru_cache(maxsize=None)
def load(name: str) -> tuple[str, str]:
    """Return (text, sha256[:12]) of ``prompts/<name>.txt``."""
    path = HERE / f"{name}.txt"
    if not path.exists():
        raise FileNotFoundError(f"no prompt file {path} (config names prompt {name!r})")
    text = path.read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode()).hexdigest()[:12]


def render(name: str, **fields: str) -> str:
    text, _ = load(name)
    return text.format(**fields).strip()


def question_text(question: str, choices: list[str] | None) -> str:
    """The question as shown to a model: choices, if any, as lettered lines (unless the question
    text already lists its options, as many real sources do)."""
    if not choices or split_choices(question)[1]:
        return question
    lines = [f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(choices)]
    return question + "\n" + "\n".join(lines)


def student_messages(question: str, choices: list[str] | None) -> list[dict]:
    """The user turn given to students and the proxy: image first, then question and instruction."""
    text = render("student", question=question_text(question, choices))
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
