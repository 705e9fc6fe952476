"""One generation interface for every stage that asks a model something.

Captioning, distillation, judging, pass rates and evaluation all build ``Request`` objects and
hand them to ``generate``. Each request has a content key; finished responses are appended to a
journal as they complete, so a killed job resumes where it stopped and nothing is generated twice.

Backends (``make_backend``): ``scripted`` (the demo teacher), ``transformers`` (local model, CPU or
GPU), ``vllm`` (offline batched engine on GPUs), ``openai`` (any OpenAI-compatible server) and
``release`` (the texts of a published MMFineReason dataset, ``mmfr.release``).
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from typing import Callable

from mmfr.generate.core import Backend, content_sha256, image_sha256, Request, request_key, Response, restore_think
from mmfr.generate.journal import check_lines, Journal, siblings
from mmfr.generate.role import SAMPLING_DEFAULTS, ModelRole, RoleError
from mmfr.provenance import known_model_sha256

log = logging.getLogger(__name__)

__all__ = ["SAMPLING_DEFAULTS", "Backend", "Journal", "LoadedModel", "ModelRole", "Request", "Response", "RoleError",
           "check_lines", "content_sha256", "generate",
           "group_job", "image_sha256", "make_backend", "request_key", "resolve_model", "restore_think", "siblings"]


def generate(backend: Backend | Callable[[], Backend], requests: list[Request], keys: list[str],
             journal_path: str | None = None) -> dict[str, Response]:
    """Run every request not yet finished; return responses for all keys.

    A response is found first in this job's journal, then in the other journals of its stage and
    source (so changing a source's shard count regenerates nothing); those found elsewhere are
    copied into this journal, so every shard's journal is complete on its own. ``backend`` may be
    a factory, called only when something is left to generate (a large model is not loaded for a
    job whose responses all exist).
    """
    journal = Journal(journal_path) if journal_path else None
    done = journal.load() if journal else {}
    elsewhere: dict[str, Response] = {}
    if journal:
        wanted = set(keys) - set(done)
        for other in siblings(journal.path) if wanted else []:
            elsewhere.update(other.lookup(wanted - set(elsewhere)))
            if len(elsewhere) == len(wanted):
                break
    todo = [(r, k) for r, k in zip(requests, keys) if k not in done and k not in elsewhere]
    # the same key twice in one call (identical requests) is generated once
    seen, unique = set(), []
    for r, k in todo:
        if k not in seen:
            seen.add(k)
            unique.append((r, k))
    log.info("%d requests: %d journaled, %d from other shards' journals, %d to generate",
             len(keys), len(set(keys) & set(done)), len(elsewhere), len(unique))
    with journal.writer() if journal and (unique or elsewhere) else contextlib.nullcontext(lambda r: None) as write:
        for key in sorted(elsewhere):
            write(elsewhere[key])
        done.update(elsewhere)
        if unique:
            reqs, ks = zip(*unique)
            engine = backend() if callable(backend) and not hasattr(backend, "generate") else backend
            for resp in engine.generate(list(reqs), list(ks)):
                resp.text = restore_think(resp.text)
                done[resp.key] = resp
                if resp.finish_reason != "error":  # a failed request is retried on the next run
                    write(resp)
    missing = [k for k in keys if k not in done]
    if missing:
        raise RuntimeError(f"backend {getattr(backend, 'name', backend)} returned no response for "
                           f"{len(missing)} requests")
    return {k: done[k] for k in keys}


def resolve_model(role: ModelRole) -> ModelRole:
    """A model that is a local directory (a checkpoint this workflow trained) is keyed by the hash of
    what determines its outputs (weights, config, tokenizer and processor files): new weights
    invalidate its cached responses; its metrics, logs or a retraining to the same bits do not."""
    if os.path.isdir(role.model) and not role.revision:
        return role.with_revision("sha256:" + known_model_sha256(role.model))
    return role


class LoadedModel:
    """Holds one backend across ``generate`` calls, for a job that works through several shards:
    ``factory(role)`` gives a backend factory that loads the role's model on first use and keeps it;
    asking for another model closes the one held first (one model in GPU memory at a time)."""

    def __init__(self):
        self.identity: str | None = None
        self.backend: Backend | None = None

    def factory(self, role: ModelRole) -> Callable[[], Backend]:
        def load() -> Backend:
            if role.identity() != self.identity:
                self.close()
                self.backend, self.identity = make_backend(role), role.identity()
            return self.backend

        return load

    def close(self) -> None:
        if self.backend is not None and hasattr(self.backend, "close"):
            self.backend.close()
        self.backend = self.identity = None


def group_job(parts: list, run: Callable[[object, LoadedModel], list[Response]]) -> dict:
    """The loop of a job that generates for several parts (shards, benchmarks) with one load of its
    model: ``run(part, loaded)`` generates one part's requests through ``loaded``, which keeps the
    model from part to part and is closed at the end. Returns {parts, requests, finish_reason:
    counts}, for the job's log and markers."""
    loaded = LoadedModel()
    counts: dict = {"parts": len(parts), "requests": 0, "finish_reason": {}}
    try:
        for part in parts:
            for resp in run(part, loaded):
                counts["requests"] += 1
                counts["finish_reason"][resp.finish_reason] = counts["finish_reason"].get(resp.finish_reason, 0) + 1
    finally:
        loaded.close()
    log.info("%s", counts)
    return counts


# Backends by name: "module:class", imported when first asked for (the demo's scripted teacher
# lives with the rest of the demo, and a job that never loads vLLM never imports it)
BACKENDS = {
    "transformers": "mmfr.generate.hf:TransformersBackend",
    "vllm": "mmfr.generate.vllm:VLLMBackend",
    "openai": "mmfr.generate.openai:OpenAIBackend",
    "scripted": "mmfr.demo.teacher:ScriptedBackend",
    "release": "mmfr.release:ReleaseBackend",  # a published dataset's texts as the teacher's answers
}


def make_backend(role: ModelRole) -> Backend:
    """The backend that runs ``role`` (its ``key``, say ``models.proxy``, names the config block in
    the errors a backend raises, e.g. for a missing local model)."""
    if role.backend not in BACKENDS:
        raise ValueError(f"{role.key or 'model block'}.backend: unknown backend {role.backend!r} ({', '.join(sorted(BACKENDS))})")
    module, name = BACKENDS[role.backend].split(":")
    return getattr(importlib.import_module(module), name)(role)
