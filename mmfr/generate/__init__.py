"""One generation interface for every stage that asks a model something.

Captioning, distillation, judging, pass rates and evaluation all build ``Request`` objects and
hand them to ``generate``. Each request has a content key; finished responses are appended to a
journal as they complete, so a killed job resumes where it stopped and nothing is generated twice.

Backends (``make_backend``): ``scripted`` (the demo teacher), ``transformers`` (local model, CPU or
GPU) and ``vllm`` (offline batched engine on GPUs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Iterator, Protocol

log = logging.getLogger(__name__)


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
        return json.dumps(self.__dict__, sort_keys=True, ensure_ascii=False)


def image_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_key(model: dict, sampling: dict, request: Request, prompt_version: str = "") -> str:
    """The content key: model and revision, sampling params, rendered messages, image hashes,
    sample index (and the prompt file's hash). Nothing else, so unrelated config changes,
    added sources or resharding never invalidate a finished response."""
    payload = {
        "model": model.get("model"),
        "revision": model.get("revision"),
        "sampling": sampling,
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


class Journal:
    """Append-only JSONL of finished responses. A torn last line (killed mid-write) is ignored."""

    def __init__(self, path: str):
        self.path = path

    def load(self) -> dict[str, Response]:
        done: dict[str, Response] = {}
        if not os.path.exists(self.path):
            return done
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = Response(**json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    continue
                done[r.key] = r
        return done

    @contextlib.contextmanager
    def writer(self):
        """Append responses one line each, flushed at once (a killed process loses nothing it
        wrote), fsynced on close. A line torn by an earlier kill is closed off first."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a+b") as f:
            torn = f.tell() > 0 and (f.seek(-1, os.SEEK_END) or f.read(1) != b"\n")
        with open(self.path, "a", encoding="utf-8") as f:
            if torn:
                f.write("\n")

            def write(response: Response) -> None:
                f.write(response.to_json() + "\n")
                f.flush()

            try:
                yield write
            finally:
                f.flush()
                os.fsync(f.fileno())


def generate(backend: Backend, requests: list[Request], keys: list[str],
             journal_path: str | None = None) -> dict[str, Response]:
    """Run every request not yet journaled; return responses for all keys."""
    journal = Journal(journal_path) if journal_path else None
    done = journal.load() if journal else {}
    todo = [(r, k) for r, k in zip(requests, keys) if k not in done]
    # the same key twice in one call (identical requests) is generated once
    seen, unique = set(), []
    for r, k in todo:
        if k not in seen:
            seen.add(k)
            unique.append((r, k))
    log.info("%d requests: %d journaled, %d to generate", len(keys), len(keys) - len(todo), len(unique))
    if unique:
        reqs, ks = zip(*unique)
        with journal.writer() if journal else contextlib.nullcontext(lambda r: None) as write:
            for resp in backend.generate(list(reqs), list(ks)):
                done[resp.key] = resp
                if resp.finish_reason != "error":  # a failed request is retried on the next run
                    write(resp)
    missing = [k for k in keys if k not in done]
    if missing:
        raise RuntimeError(f"backend {backend.name} returned no response for {len(missing)} requests")
    return {k: done[k] for k in keys}


def resolve_model(spec: dict) -> dict:
    """A model that is a local directory (a checkpoint this workflow trained) is keyed by its
    content hash, so retraining it invalidates its cached responses and nothing else does."""
    path = spec.get("model", "")
    if os.path.isdir(path) and not spec.get("revision"):
        from mmfr.provenance import known_sha256

        return {**spec, "revision": "sha256:" + known_sha256(path)}
    return spec


def make_backend(spec: dict, **kwargs) -> Backend:
    """``spec`` is a model block of the config: ``{backend, model, revision, ...}``."""
    kind = spec["backend"]
    if kind == "scripted":
        from mmfr.generate.scripted import ScriptedBackend

        return ScriptedBackend(spec, **kwargs)
    if kind == "transformers":
        from mmfr.generate.hf import TransformersBackend

        return TransformersBackend(spec, **kwargs)
    if kind == "vllm":
        from mmfr.generate.vllm import VLLMBackend

        return VLLMBackend(spec, **kwargs)
    raise ValueError(f"unknown backend {kind!r} (config key 'backend': scripted, transformers or vllm)")
