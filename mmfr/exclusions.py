"""The recipe's exclusions (MMFineReason leaves out multi-image samples, CLEVR, geo170k(align),
PathVQA and EXAMS-V). Light on imports: the config check uses it at parse time."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Exclusions:
    """The recipe's exclusions: multi-image samples, and upstream datasets matched by name against a
    record's ``origin`` and its source's config (case and punctuation ignored: 'EXAMS-V' = 'exams_v')."""
    multi_image: bool = True
    origins: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, exclude: dict) -> "Exclusions":
        return cls(exclude.get("multi_image", True), tuple(exclude.get("origins") or ()))

    def origin_match(self, *names) -> str | None:
        keys = [_key(n) for n in names if n]
        return next((o for o in self.origins if any(_key(o) in k for k in keys)), None)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())
