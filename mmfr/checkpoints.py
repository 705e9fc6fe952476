"""Base checkpoints and tokenizers: download a pinned hub model (or copy a local mirror); a student
given by an architecture (``build:``) is the demo's tiny Qwen3-VL, made by ``mmfr.demo.models``."""

from __future__ import annotations

import importlib
import logging
import os
import shutil

from mmfr.models import build_qwen_tokenizer, require_model

log = logging.getLogger(__name__)

# Where a student given by an architecture is built: the demo package, reached only through this name
BUILDER = "mmfr.demo.models:build_base"


def prepare_base(spec: dict, out_dir: str, seed: int) -> None:
    """``spec`` is a ``students`` entry: ``{size, model, revision}`` (fetched), or ``{size, build: {...}}``
    (the demo's tiny model, built by ``BUILDER``)."""
    if "build" in spec:
        module, name = BUILDER.split(":")
        getattr(importlib.import_module(module), name)(spec, out_dir, seed)
        return
    fetch_model(spec["model"], spec.get("revision"), out_dir, key=f"students[size={spec['size']}].model")


def fetch_model(model: str, revision: str | None, out_dir: str, key: str | None = None) -> None:
    """A local directory is copied; anything else is a hub id downloaded at ``revision``. A local
    path that does not exist is an error naming ``key``, where the config gives it."""

    require_model(model, key)
    if os.path.isdir(model):
        shutil.copytree(model, out_dir)
        return
    from huggingface_hub import snapshot_download

    if not revision:
        log.warning("%s: no pinned revision, downloading the current main", model)
    snapshot_download(repo_id=model, revision=revision, local_dir=out_dir)


def prepare_tokenizer(spec: dict, out_json: str) -> None:
    """The teacher's tokenizer as a ``tokenizer.json``, for token statistics. The other files a
    tokenizer saves are left out: ``out_json`` is the rule's one output."""
    import tempfile

    os.makedirs(os.path.dirname(out_json) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out_json) or ".") as out_dir:
        if spec["kind"] == "qwen-tokenizer":
            build_qwen_tokenizer(out_dir)
        else:
            from transformers import AutoTokenizer

            require_model(spec["model"], "tokenizer.model")
            AutoTokenizer.from_pretrained(spec["model"], revision=spec.get("revision")).save_pretrained(out_dir)
        written = os.path.join(out_dir, "tokenizer.json")
        if not os.path.exists(written):
            raise FileNotFoundError(f"tokenizer.{spec['kind']}: no tokenizer.json was written")
        shutil.move(written, out_json)
