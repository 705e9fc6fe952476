"""Provenance: one JSON record per artifact, written beside the data under ``provenance/``.

Snakemake's metadata tracks scripts by mtime, drops non-builtin params, checksums only small
inputs and records no seed, host or GPU; this record has all of that and can be audited.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

ROOT = "provenance"
PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "pyarrow", "duckdb", "pillow",
            "math-verify", "snakemake", "vllm", "tokenizers")


def checkpoint_dir(output: str) -> str:
    """Where the job that writes ``output`` keeps its training checkpoints: beside the output, not in
    it (Snakemake removes an output before it runs the job again), so a retried job resumes."""
    return os.path.normpath(output) + ".checkpoints"


def record_path(artifact: str) -> str:
    return os.path.join(ROOT, artifact.rstrip("/") + ".json")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_sha256(path: str) -> str:
    """sha256 of a file, or of a directory's sorted (relative path, file sha256) list."""
    if os.path.isdir(path):
        return _listing_sha256(file_hashes(path))
    return file_sha256(path)


def file_hashes(folder: str) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``, in sorted order."""
    return {str(p.relative_to(folder)): file_sha256(str(p)) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".snakemake_timestamp"}  # Snakemake's marker, added after the job


def _listing_sha256(hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel, sha in hashes.items():
        h.update(f"{rel}\x00{sha}\n".encode())
    return h.hexdigest()


# What a model folder's outputs depend on: weights, configs, tokenizer and processor files (at its
# top level). Not metrics, logs, training state (training_args.bin holds a dated log folder) or
# intermediate checkpoints.
MODEL_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "adapter_model.bin",
               "pytorch_model.bin.index.json", "config.json",
               "generation_config.json", "adapter_config.json", "tokenizer*", "vocab*", "merges.txt",
               "special_tokens_map.json", "added_tokens.json", "chat_template*", "*preprocessor_config.json",
               "processor_config.json", "*.tiktoken", "spiece.model")


def model_sha256(folder: str, hashes: dict[str, str] | None = None) -> str:
    """The content key of a model folder: the sha256 of its ``MODEL_FILES`` only, so a model retrained
    to the same weights keeps its key (and every response cached for it) whatever its metrics say."""
    hashes = file_hashes(folder) if hashes is None else hashes
    return _listing_sha256({rel: sha for rel, sha in hashes.items()
                            if "/" not in rel and any(fnmatch.fnmatch(rel, pat) for pat in MODEL_FILES)})


def known_model_sha256(folder: str) -> str:
    """A model folder's content key: from its provenance record when it has one, else computed."""
    rec = record_path(folder)
    if os.path.exists(rec):
        with open(rec) as f:
            record = json.load(f)
        if "model_sha256" in record:
            return record["model_sha256"]
    return model_sha256(folder)


def seal(journal: str) -> dict:
    """What a journal held when an artifact was built from it: its size, line count and sha256. A
    journal only grows, so these bytes must stay its prefix; ``mmfr audit`` checks that they do."""
    h, size, lines = hashlib.sha256(), 0, 0
    with open(journal, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
            lines += block.count(b"\n")
    return {"path": journal, "bytes": size, "lines": lines, "sha256": h.hexdigest()}


def prefix_sha256(path: str, size: int) -> str | None:
    """sha256 of the first ``size`` bytes of ``path``; None when it is shorter."""
    if os.path.getsize(path) < size:
        return None
    h, left = hashlib.sha256(), size
    with open(path, "rb") as f:
        while left:
            block = f.read(min(left, 1 << 20))
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def rows_of(path: str) -> int | None:
    if path.endswith(".parquet") and os.path.isfile(path):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def known_sha256(path: str) -> str:
    """An input's hash: from its provenance record when it has one, else computed."""
    rec = record_path(path)
    if os.path.exists(rec):
        with open(rec) as f:
            return json.load(f)["sha256"]
    return artifact_sha256(path)


@lru_cache(maxsize=1)
def code_version() -> dict:
    pkg = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".txt", ".json", ".yaml"):
            h.update(str(p.relative_to(pkg)).encode() + b"\x00" + p.read_bytes())
    commit = None
    try:
        commit = subprocess.run(["git", "-C", str(pkg), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"mmfr_sha256": h.hexdigest(), "git_commit": commit}


@lru_cache(maxsize=1)
def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": sys.version.split()[0], "packages": versions, "platform": platform.platform()}


SLURM_FIELDS = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "SLURM_JOB_ACCOUNT",
                "SLURM_JOB_NODELIST", "SLURM_CPUS_PER_TASK", "SLURM_GPUS_ON_NODE", "SLURM_RESTART_COUNT")


def hardware() -> dict:
    """Host, SLURM job and GPUs (model and count). torch is consulted only if the job already
    imported it; otherwise ``nvidia-smi`` names the GPUs when there is one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    info = {"host": platform.node(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm": {k.removeprefix("SLURM_").lower(): os.environ[k] for k in SLURM_FIELDS if k in os.environ},
            "cuda_visible_devices": visible, "gpus": []}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    elif visible:
        info["gpus"] = _nvidia_smi_names()
    info["gpu_count"] = len(info["gpus"]) or (len([d for d in visible.split(",") if d]) if visible else 0)
    return info


def _nvidia_smi_names() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def job_of(artifact: str) -> dict:
    """Where and how the job that wrote ``artifact`` ran (its rule and wildcards, times, hardware),
    from its provenance record; ``{"artifact": ...}`` alone when there is none."""
    path = record_path(artifact)
    if not os.path.exists(path):
        return {"artifact": artifact}
    with open(path) as f:
        record = json.load(f)
    return {"artifact": artifact,
            **{k: record.get(k) for k in ("rule", "wildcards", "started", "finished", "hardware")}}


def write(artifact: str, *, rule: str, wildcards: dict, params: dict, inputs: list[str],
          started: float, finished: float, extra: dict | None = None) -> dict:
    hashes = file_hashes(artifact) if os.path.isdir(artifact) else None
    record = {
        "artifact": artifact,
        "sha256": _listing_sha256(hashes) if hashes is not None else file_sha256(artifact),
        "rows": rows_of(artifact),
        "rule": rule,
        "wildcards": wildcards,
        "params": params,
        "inputs": {p: known_sha256(p) for p in inputs if os.path.exists(p)},
        "code": code_version(),
        "environment": environment(),
        "hardware": hardware(),
        "started": started,
        "finished": finished,
        **(extra or {}),
    }
    if hashes is not None and "config.json" in hashes:  # a model: its content key, for resolve_model
        record["model_sha256"] = model_sha256(artifact, hashes)
    path = record_path(artifact)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True, default=str)
    return record
