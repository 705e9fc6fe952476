"""One generation interface for every stage that asks a model something.

Captioning, distillation, judging, pass rates and evaluation all build ``Request`` objects and
hand them to ``generate``. Each request has a content key; finished responses are appended to a
journal as they complete, so a killed job resumes where it stopped and nothing is generated twice.

Backends (``make_backend``): ``scripted`` (the demo teacher), ``transformers`` (local model, CPU or
GPU), ``vllm`` (offline batched engine on GPUs) and ``openai`` (any OpenAI-compatible server).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

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
        """The journal line: the response and a sha256 over it, so an edited line is found (the
        journal drops it on load and the audit names it)."""
        return json.dumps({**self.__dict__, "sha256": content_sha256(self.__dict__)}, sort_keys=True,
                          ensure_ascii=False)


def content_sha256(fields: dict) -> str:
    """The seal of a journal line: sha256 of its fields (all but ``sha256``) as canonical JSON."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


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
    """Append-only JSONL of finished responses, one per shard job, with an index beside it
    (``<journal>.idx``: key, byte offset, length per line) so that other jobs of the same stage can
    fetch a response without reading the whole journal. A torn last line (killed mid-write) is
    ignored, and closed off before the next append."""

    def __init__(self, path: str):
        self.path = path
        self.index_path = path + ".idx"

    def load(self) -> dict[str, Response]:
        done: dict[str, Response] = {}
        if not os.path.exists(self.path):
            return done
        with open(self.path, encoding="utf-8", errors="replace") as f:  # a kill may cut a character
            for line in f:
                if (r := _parse(line)) is not None:
                    done[r.key] = r
        return done

    def lookup(self, keys: set[str]) -> dict[str, Response]:
        """The responses for ``keys`` this journal holds, read by offset through its index (or by
        a full scan for a journal written before indexes existed)."""
        if not keys or not os.path.exists(self.path):
            return {}
        if not os.path.exists(self.index_path):
            return {k: r for k, r in self.load().items() if k in keys}
        found: dict[str, Response] = {}
        with open(self.index_path, encoding="ascii", errors="replace") as idx, open(self.path, "rb") as f:
            for line in idx:
                parts = line.split()
                if len(parts) != 3 or parts[0] not in keys or parts[0] in found:
                    continue
                f.seek(int(parts[1]))
                if (r := _parse(f.read(int(parts[2])).decode("utf-8", errors="replace"))) is not None and r.key == parts[0]:
                    found[r.key] = r
        return found

    def _index_complete(self) -> bool:
        """Does the index end where the journal ends? (A kill between the journal write and the
        index write, or inside the index write, leaves it short or torn.)"""
        size = os.path.getsize(self.path)
        if not os.path.exists(self.index_path):
            return size == 0
        with open(self.index_path, "rb") as idx:
            idx.seek(max(0, os.path.getsize(self.index_path) - 256))
            tail = idx.read()
        if size == 0 or not tail.endswith(b"\n"):
            return size == 0 and not tail
        parts = tail.splitlines()[-1].split()
        return len(parts) == 3 and int(parts[1]) + int(parts[2]) == size

    def rebuild_index(self) -> None:
        """Write the index again from the journal (skipping torn lines)."""
        offset, lines = 0, []
        with open(self.path, "rb") as f:
            for raw in f:
                r = _parse(raw.decode("utf-8", errors="replace"))
                if r is not None:
                    lines.append(f"{r.key} {offset} {len(raw)}\n")
                offset += len(raw)
        with open(self.index_path, "w", encoding="ascii") as idx:
            idx.writelines(lines)
        log.info("rebuilt the index of %s (%d entries)", self.path, len(lines))

    @contextlib.contextmanager
    def writer(self):
        """Append responses one line each, flushed at once (a killed process loses nothing it
        wrote), fsynced on close. A line torn by an earlier kill is closed off first."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a+b") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # torn by a kill: end it, so the next line stands alone
                    f.write(b"\n")
        if not self._index_complete():
            self.rebuild_index()
        with open(self.path, "ab") as f, open(self.index_path, "a", encoding="ascii") as idx:

            def write(response: Response) -> None:
                line = (response.to_json() + "\n").encode("utf-8")
                offset = f.tell()
                f.write(line)
                f.flush()
                idx.write(f"{response.key} {offset} {len(line)}\n")
                idx.flush()

            try:
                yield write
            finally:
                f.flush()
                os.fsync(f.fileno())


def restore_think(text: str) -> str:
    """Qwen3 thinking chat templates open ``<think>`` in the prompt, so the generated text starts
    mid-thought and only closes it: put the opening tag back, so a trace is whole on disk."""
    if text and "</think>" in text and "<think>" not in text:
        return "<think>\n" + text
    return text


def _parse(line: str) -> Response | None:
    """The response on a journal line; None for a torn line, and for an edited one (its fields no
    longer match its sha256: it is logged, and the request is generated again)."""
    try:
        fields = json.loads(line)
        seal = fields.pop("sha256", None)
        response = Response(**fields)
    except (json.JSONDecodeError, TypeError, AttributeError):
        return None
    if seal is not None and seal != content_sha256(fields):
        log.warning("journal line for %s (%s) does not match its sha256: edited after it was written; "
                    "ignored, the request will be generated again", fields.get("key"), fields.get("sample_id"))
        return None
    return response


def check_lines(path: str) -> list[tuple[int, str]]:
    """(line number, problem) for each line of the journal at ``path`` that is not a whole, sealed
    response (edited, unsealed, or not JSON). A torn last line is not counted: the next append
    ends it."""
    problems = []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip() or (number == len(lines)):  # the text after the last newline: torn, or none
            continue
        try:
            fields = json.loads(raw.decode("utf-8"))
            seal = fields.pop("sha256", None)
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            problems.append((number, "not a JSON response"))
            continue
        if seal is None:
            problems.append((number, "no sha256"))
        elif seal != content_sha256(fields):
            problems.append((number, f"edited: its fields no longer match its sha256 (key {fields.get('key')})"))
    return problems


def siblings(journal_path: str) -> list[Journal]:
    """The other journals of the same stage and source: where a response lives after resharding."""
    folder = os.path.dirname(journal_path) or "."
    if not os.path.isdir(folder):
        return []
    return [Journal(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if name.endswith(".jsonl") and os.path.join(folder, name) != journal_path]


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


def resolve_model(spec: dict) -> dict:
    """A model that is a local directory (a checkpoint this workflow trained) is keyed by the hash of
    what determines its outputs (weights, config, tokenizer and processor files): new weights
    invalidate its cached responses; its metrics, logs or a retraining to the same bits do not."""
    path = spec.get("model", "")
    if os.path.isdir(path) and not spec.get("revision"):
        from mmfr.provenance import known_model_sha256

        return {**spec, "revision": "sha256:" + known_model_sha256(path)}
    return spec


class LoadedModel:
    """Holds one backend across ``generate`` calls, for a job that works through several shards:
    ``factory(spec)`` gives a backend factory that loads ``spec``'s model on first use and keeps it;
    asking for another model closes the one held first (one model in GPU memory at a time)."""

    def __init__(self):
        self.spec_key: str | None = None
        self.backend: Backend | None = None

    def factory(self, spec: dict, config_key: str | None = None) -> Callable[[], Backend]:
        def load() -> Backend:
            key = json.dumps(spec, sort_keys=True, default=str)
            if key != self.spec_key:
                self.close()
                self.backend, self.spec_key = make_backend(spec, config_key=config_key), key
            return self.backend

        return load

    def close(self) -> None:
        if self.backend is not None and hasattr(self.backend, "close"):
            self.backend.close()
        self.backend = self.spec_key = None


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


def make_backend(spec: dict, **kwargs) -> Backend:
    """``spec`` is a model block of the config: ``{backend, model, revision, ...}``; ``config_key``
    (say ``models.proxy``) names it in the error a local backend raises for a missing model path."""
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
    if kind == "openai":
        from mmfr.generate.openai import OpenAIBackend

        return OpenAIBackend(spec, **kwargs)
    raise ValueError(f"unknown backend {kind!r} (config key 'backend': scripted, transformers, vllm or openai)")
