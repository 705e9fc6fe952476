"""What a request to a model is, what comes back, and the content key that identifies a request."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from mmfr.generate.role import ModelRole


@dataclass(frozen=True)
class Request:
    """A chat request: ``messages`` in the OpenAI/HF chat layout, where an image part is
    ``{"type": "image"}`` and the n-th such part refers to ``images[n]`` (encoded bytes)."""

    sample_id: str
    messages: tuple  # tuple of message dicts (kept hashable-free: use json for keys)
    images: tuple[bytes, ...] = ()
    sample_index: int = 0
    seed: int = 0
    context: dict = field(default_factory=dict, compare=False)  # for the scripted backend only


@dataclass
class Response:
    key: str
    sample_id: str
    sample_index: int
    text: str
    finish_reason: str  # "stop", "length" (hit max tokens), "empty" or "error"
    n_tokens: int = 0
    error: str = ""

    def to_json(self) -> str:
        """The journal line: the response and a sha256 over it, so an edited line is found (the
        journal drops it on load and the audit names it)."""
        return json.dumps({**self.__dict__, "sha256": content_sha256(self.__dict__)}, sort_keys=True,
                          ensure_ascii=False)


def content_sha256(fields: dict) -> str:
    """The seal of a journal line: sha256 of its fields (all but ``sha256``) as canonical JSON."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def image_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_key(role: ModelRole, request: Request, prompt_version: str = "") -> str:
    """The content key: the role's model, revision and sampling (as the config gives it), rendered
    messages, image hashes, sample index (and the prompt file's hash). Nothing else, so the backend,
    batch size, unrelated config changes, added sources or resharding never invalidate a finished
    response."""
    payload = {
        "model": role.model,
        "revision": role.revision,
        "sampling": role.sampling,
        "messages": request.messages,
        "images": [image_sha256(b) for b in request.images],
        "sample_index": request.sample_index,
        "seed": request.seed,
        "prompt_version": prompt_version,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class Backend(Protocol):
    name: str

    def generate(self, requests: list[Request], keys: list[str]) -> Iterator[Response]:
        """Yield one response per request, in any order, as soon as each is finished."""


def restore_think(text: str) -> str:
    """Qwen3 thinking chat templates open ``<think>`` in the prompt, so the generated text starts
    mid-thought and only closes it: put the opening tag back, so a trace is whole on disk."""
    if text and "</think>" in text and "<think>" not in text:
        return "<think>\n" + text
    return text
