"""A model role: one model block of the config (``models.caption``, ``models.proxy``, the evaluation
generation block with a checkpoint filled in), checked once and passed as one object from the stage
that asks to the backend that answers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

BACKEND_NAMES = ("transformers", "vllm", "openai", "scripted", "release")
# Sampling a backend applies when the block does not say (the block's own keys enter request keys)
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 1024, "repetition_penalty": 1.0}
_FIELDS = ("backend", "model", "revision", "sampling", "batch_size", "tensor_parallel_size")


class RoleError(ValueError):
    """A model block that cannot be run; the message names its config key."""


@dataclass(frozen=True)
class ModelRole:
    """Which model, at which revision, with which backend, sampling and parallelism; ``options``
    holds what only one backend reads (``dtype``, ``device``, ``base_url``, ``mistakes``, ...);
    ``key`` is where the config gives the block, so every error can name it."""

    backend: str
    model: str
    revision: str | None = None
    sampling: dict = field(default_factory=dict)
    batch_size: int | None = None
    tensor_parallel_size: int = 1
    options: dict = field(default_factory=dict)
    key: str = ""

    @classmethod
    def from_config(cls, block: dict | ModelRole, key: str = "") -> ModelRole:
        """The role of a config block (a role passes through, taking ``key`` if given)."""
        if isinstance(block, ModelRole):
            return replace(block, key=key) if key and key != block.key else block
        where = key or "model block"
        if not isinstance(block, dict) or not block.get("backend") or not block.get("model"):
            raise RoleError(f"{where}: a model block needs 'backend' and 'model' (got {block!r})")
        if block["backend"] not in BACKEND_NAMES:
            raise RoleError(f"{where}.backend: unknown backend {block['backend']!r} (one of {', '.join(BACKEND_NAMES)})")
        sampling = dict(block.get("sampling") or {})
        if unknown := sorted(set(sampling) - set(SAMPLING_DEFAULTS)):
            raise RoleError(f"{where}.sampling: unknown sampling keys {unknown} for model {block['model']!r} "
                            f"(known: {sorted(SAMPLING_DEFAULTS)})")
        if "api_key" in block:
            raise RoleError(f"{where}: model {block['model']!r}: never put an API key in the config; set "
                            f"api_key_env to the name of the environment variable that holds it "
                            f"(default OPENAI_API_KEY)")
        return cls(backend=block["backend"], model=str(block["model"]), revision=block.get("revision"),
                   sampling=sampling, batch_size=block.get("batch_size"),
                   tensor_parallel_size=int(block.get("tensor_parallel_size", 1)),
                   options={k: v for k, v in block.items() if k not in _FIELDS}, key=key)

    def config_key(self, name: str) -> str | None:
        """``models.proxy.model`` for ``name`` = model: where the config gives a field, or None."""
        return f"{self.key}.{name}" if self.key else None

    def option(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value

    def resolved_sampling(self) -> dict:
        """Sampling with the backends' defaults filled in. ``temperature: 0`` is greedy; ``top_k: 0``
        is no top-k cut."""
        return {**SAMPLING_DEFAULTS, **self.sampling}

    def with_revision(self, revision: str) -> ModelRole:
        return replace(self, revision=revision)

    def identity(self) -> str:
        """Everything that makes two roles load different engines (for a job that keeps one loaded)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "key"}, sort_keys=True, default=str)


def as_role(value: ModelRole | dict, backend: str) -> ModelRole:
    """What a backend is built from: a role, or (constructing a backend by hand) a model block, whose
    backend defaults to the one being built."""
    return value if isinstance(value, ModelRole) else ModelRole.from_config({"backend": backend, **value})
