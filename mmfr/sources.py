"""Sources: fetch raw data (generated, or a pinned ``datasets`` download) and standardise it into
canonical, statically sharded records with a quarantine for what cannot be used."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import images, schema

log = logging.getLogger(__name__)

# The raw layout every fetcher writes; adapters for real datasets map onto it.
RAW = pa.schema([
    ("original_id", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("answer_type", pa.string()),
    ("choices", pa.list_(pa.string())),
    ("images", pa.list_(pa.binary())),
    ("metadata", pa.string()),
    ("domain", pa.string()),
])

QUARANTINE = pa.schema([
    ("source", pa.string()),
    ("original_id", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
])


class Reject(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------- fetch
def synthetic_rows(spec: dict, seed: int) -> list[dict]:
    """Rows of a generated source: one synthetic family, or composed questions over others."""
    from mmfr import synth

    def family(name: str, split: str, n: int) -> list[dict]:
        return synth.generate(name, split, n, schema.seed_for(seed, "synth", name))

    if spec["kind"] == "synthetic":
        records = family(spec["family"], spec.get("split", "train"), spec["n"])
    elif spec["kind"] == "composed":  # harder multiple-choice questions from the metadata of simple ones
        parents = [r for f in spec["families"] for r in family(f, spec.get("split", "train"), spec["n_parents"])]
        records = synth.compose(parents, spec["n"], schema.seed_for(seed, "compose", spec["name"]))
    else:  # synthetic_benchmark: the held-out test split of every family, plus composed questions
        records = [r for f in spec["families"] for r in family(f, "test", spec["n"])]
        records += synth.compose(records, spec.get("n_composed", 0), schema.seed_for(seed, "compose", spec["name"]))
    rows = [{
        "original_id": r["original_id"], "question": r["question"], "answer": r["answer"],
        "answer_type": r["answer_type"], "choices": r["choices"], "images": [r["image"]],
        "metadata": json.dumps(r["metadata"], sort_keys=True), "domain": r["domain"],
    } for r in records]
    return inject_faults(rows, spec.get("inject_faults", 0.0), schema.seed_for(seed, "faults", spec["name"]))


def inject_faults(rows: list[dict], rate: float, seed: int) -> list[dict]:
    """Damage a seeded fraction of generated rows the way real data is damaged, so that the
    quarantine has real work in the demo: truncated image, empty question, missing answer,
    two images. The damage is recorded in the row's metadata."""
    rng = random.Random(seed)
    faults = ("truncated_image", "empty_question", "missing_answer", "multi_image")
    out = []
    for row in rows:
        if rng.random() < rate:
            row = dict(row)
            fault = rng.choice(faults)
            if fault == "truncated_image":
                row["images"] = [row["images"][0][: len(row["images"][0]) // 3]]
            elif fault == "empty_question":
                row["question"] = "  "
            elif fault == "missing_answer":
                row["answer"] = None
            else:
                row["images"] = row["images"] * 2
            row["metadata"] = json.dumps({**json.loads(row["metadata"]), "injected_fault": fault}, sort_keys=True)
        out.append(row)
    return out


def hf_rows(spec: dict) -> list[dict]:
    """Download a pinned dataset (or read a local mirror) and map its fields to the raw layout.

    ``spec`` keys: hf_id (a hub id or a local path), config, split, revision, fields
    (question/answer/image/choices/id → the dataset's column names), answer_type, domain.
    """
    import datasets

    ds = datasets.load_dataset(spec["hf_id"], spec.get("config"), split=spec.get("split", "train"),
                               revision=spec.get("revision"))
    fields = spec.get("fields", {})
    image_field = fields.get("image", "image")
    ds = ds.cast_column(image_field, datasets.Image(decode=False)) if image_field in ds.column_names else ds
    adapt = ADAPTERS[spec.get("adapter", "generic")]
    return [adapt(rec, fields, spec, index=i) for i, rec in enumerate(ds)]


def adapt_record(rec: dict, fields: dict, spec: dict, index: int) -> dict:
    """Map one record of a real dataset onto the raw layout, keeping everything else as metadata."""
    img = rec.get(fields.get("image", "image"))
    imgs = img if isinstance(img, list) else ([img] if img is not None else [])
    blobs = []
    for im in imgs:
        if isinstance(im, dict):
            blobs.append(im.get("bytes") or b"")
        elif isinstance(im, (bytes, bytearray)):
            blobs.append(bytes(im))
    choices = rec.get(fields.get("choices", "choices")) or []
    used = {fields.get(k, k) for k in ("id", "question", "answer", "image", "choices")}
    extra = {k: v for k, v in rec.items() if k not in used and _jsonable(v)}
    answer = rec.get(fields.get("answer", "answer"))
    return {
        "original_id": str(rec.get(fields.get("id", "id"), index)),
        "question": rec.get(fields.get("question", "question")),
        "answer": None if answer is None else str(answer),
        "answer_type": spec.get("answer_type") or ("choice" if choices else "text"),
        "choices": [str(c) for c in choices],
        "images": blobs,
        "metadata": json.dumps(extra, sort_keys=True, default=str),
        "domain": spec.get("domain", "general"),
    }


def adapt_finevision(rec: dict, fields: dict, spec: dict, index: int) -> dict:
    """FineVision rows: ``images`` (list) and ``texts`` (list of {user, assistant} turns); the first
    turn is the question, with any choices written into its text."""
    turn = (rec.get("texts") or [{}])[0]
    flat = {**{k: v for k, v in rec.items() if k != "texts"},
            "question": turn.get("user"), "answer": turn.get("assistant")}
    return adapt_record(flat, {"image": "images", "id": "id", **fields}, spec, index)


ADAPTERS = {"generic": adapt_record, "finevision": adapt_finevision}


def _jsonable(v) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict))


def fetch(spec: dict, out_path: str, seed: int) -> int:
    """Write the raw rows of one source to ``out_path``; returns the row count."""
    kind = spec["kind"]
    if kind in ("synthetic", "composed", "synthetic_benchmark"):
        rows = synthetic_rows(spec, seed)
    elif kind == "hf":
        rows = hf_rows(spec)
    else:
        raise ValueError(f"sources.{spec['name']}.kind: unknown kind {kind!r} (synthetic, composed, hf)")
    table = pa.Table.from_pylist(rows, schema=RAW)
    schema.write_table(table, out_path)
    log.info("fetched %d rows of %s into %s", len(rows), spec["name"], out_path)
    return len(rows)


# ---------------------------------------------------------------- standardise
@dataclass(frozen=True)
class ImagePolicy:
    max_side: int = 2048
    max_pixels: int = 89_478_485


def to_canonical(row: dict, source: str, license: str, policy: ImagePolicy) -> dict:
    """One raw row → one canonical record, or ``Reject`` with the reason."""
    question = _text(row.get("question"), "question")
    if not question.strip():
        raise Reject("empty_question")
    if row.get("answer") is None or not str(row["answer"]).strip():
        raise Reject("missing_answer")
    answer = _text(row["answer"], "answer").strip()
    if row.get("answer_type") not in schema.ANSWER_TYPES:
        raise Reject("bad_answer_type", str(row.get("answer_type")))
    blobs = row.get("images") or []
    if len(blobs) > 1:
        raise Reject("multi_image", f"{len(blobs)} images")
    if not blobs:
        raise Reject("image_missing")
    try:
        data, _, _ = images.normalise(blobs[0], policy.max_side, policy.max_pixels)
    except images.ImageError as e:
        raise Reject(e.reason, str(e)) from None
    digest = images.sha256(data)
    question = question.strip()
    return {
        "source": source,
        "id": schema.sample_id(source, row["original_id"], question, digest),
        "original_id": row["original_id"],
        "original_question": question,
        "original_answer": answer,
        "image": {"bytes": data, "path": None},
        "image_sha256": digest,
        "question": question,
        "answer": answer,
        "answer_type": row["answer_type"],
        "choices": list(row.get("choices") or []),
        "domain": row.get("domain") or "general",
        "language": "en",
        "license": license,
        "metadata": row.get("metadata") or "{}",
    }


def _text(value, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("non_utf8", field) from None
    return str(value)


def standardise(raw_path: str, source: str, license: str, shard_paths: list[str],
                quarantine_path: str, policy: ImagePolicy) -> dict:
    """Raw rows → canonical records hash-sharded over ``shard_paths``; rejects to the quarantine.

    Rows inside a shard are sorted by id so outputs are byte-identical across runs.
    Returns counts {raw, kept, quarantined, per_reason}.
    """
    raw = pq.read_table(raw_path).to_pylist()
    shards: list[list[dict]] = [[] for _ in shard_paths]
    rejected, seen = [], set()
    for row in raw:
        try:
            rec = to_canonical(row, source, license, policy)
        except Reject as e:
            rejected.append({"source": source, "original_id": str(row.get("original_id")), "reason": e.reason,
                             "detail": e.detail[:500], "question": _safe(row.get("question")),
                             "answer": _safe(row.get("answer"))})
            continue
        if rec["id"] in seen:
            rejected.append({"source": source, "original_id": rec["original_id"], "reason": "duplicate_id",
                             "detail": rec["id"], "question": rec["question"][:500], "answer": rec["answer"]})
            continue
        seen.add(rec["id"])
        shards[schema.shard_of(rec["id"], len(shard_paths))].append(rec)
    for path, recs in zip(shard_paths, shards):
        recs.sort(key=lambda r: r["id"])
        schema.write_table(pa.Table.from_pylist(recs, schema=schema.RECORD), path)
    rejected.sort(key=lambda r: (r["original_id"], r["reason"]))
    schema.write_table(pa.Table.from_pylist(rejected, schema=QUARANTINE), quarantine_path)
    per_reason: dict[str, int] = {}
    for r in rejected:
        per_reason[r["reason"]] = per_reason.get(r["reason"], 0) + 1
    counts = {"raw": len(raw), "kept": len(seen), "quarantined": len(rejected), "per_reason": per_reason}
    log.info("%s: %s", source, counts)
    return counts


def _safe(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")[:500]
    return str(value)[:500]
