"""The canonical record, stable ids, static sharding and seeds: one place for each.

Every source is mapped to ``RECORD`` (field names follow the released MMFineReason data where
they exist). Images travel inside the parquet as bytes in the ``datasets`` Image layout so a
shard is self-contained and loads with ``datasets.load_dataset("parquet", ...)``.
"""

from __future__ import annotations

import hashlib
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

DOMAINS = ("math", "science", "puzzle", "general")

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

RECORD_FIELDS = [
    ("source", pa.string()),
    ("id", pa.string()),
    ("original_id", pa.string()),
    ("original_question", pa.string()),
    ("original_answer", pa.string()),
    ("solution", pa.string()),  # a source's worked solution, when it has one (answer extraction reads it)
    ("image", IMAGE_TYPE),
    ("image_sha256", pa.string()),
    ("image_phash", pa.string()),  # perceptual hash (16 hex): near-duplicate and contamination checks
    ("question", pa.string()),
    ("answer", pa.string()),
    ("answer_type", pa.string()),
    ("choices", pa.list_(pa.string())),
    ("domain", pa.string()),
    ("language", pa.string()),
    ("license", pa.string()),
    ("metadata", pa.string()),  # JSON text: scene program or source-specific extras
]


def _feature(typ: pa.DataType) -> dict:
    if typ == IMAGE_TYPE:
        return {"_type": "Image"}
    if pa.types.is_list(typ):
        return {"feature": _feature(typ.value_type), "_type": "List"}
    dtype = {pa.string(): "string", pa.int64(): "int64", pa.int32(): "int32",
             pa.float64(): "float64", pa.float32(): "float32", pa.bool_(): "bool"}[typ]
    return {"dtype": dtype, "_type": "Value"}


def hf_features_metadata(fields: list[tuple[str, pa.DataType]]) -> dict[bytes, bytes]:
    """Schema metadata that makes ``datasets`` read ``image`` columns as Image features."""
    features = {name: _feature(typ) for name, typ in fields}
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def schema_with(extra: list[tuple[str, pa.DataType]] = ()) -> pa.Schema:
    """The canonical record schema, plus stage-specific columns appended after it."""
    fields = RECORD_FIELDS + list(extra)
    return pa.schema(fields, metadata=hf_features_metadata(fields))


RECORD = schema_with()
# subset: the record with its caption, verified trace and pass rate (a released dataset's columns)
SUBSET = schema_with([("caption", pa.string()), ("response", pa.string()), ("verdict", pa.string()),
                      ("decided_by", pa.string()), ("cot_tokens", pa.int64()), ("pass_rate", pa.float64())])


def sample_id(source: str, original_id: str, question: str, image_sha256: str) -> str:
    """A stable id from source, original id and content (16 hex chars)."""
    h = hashlib.sha256()
    for part in (source, original_id, question, image_sha256):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def shard_of(sid: str, n_shards: int) -> int:
    """A sample's shard: a stable hash of its id modulo the source's shard count."""
    return int(hashlib.sha256(sid.encode()).hexdigest()[:12], 16) % n_shards


def shard_name(index: int) -> str:
    return f"{index:05d}"


def seed_for(global_seed: int, stage: str, sample_id: str = "", index: int = 0) -> int:
    """Every random choice is seeded from (global seed, stage, sample id[, index])."""
    key = f"{global_seed}\x00{stage}\x00{sample_id}\x00{index}".encode()
    return int(hashlib.sha256(key).hexdigest()[:15], 16)


def write_table(table: pa.Table, path: str) -> None:
    """Deterministic parquet: fixed compression, no timestamps; rows sorted by the caller."""
    tmp = f"{path}.tmp"  # written aside, then renamed: a killed job never leaves half a file
    pq.write_table(table, tmp, compression="zstd", compression_level=3, row_group_size=256,
                   write_statistics=True, store_schema=True)
    os.replace(tmp, path)

def write_dataset(table: pa.Table, out_dir: str, shard_rows: int = 5000) -> int:
    """``table`` as ``out_dir/data/train-XXXXX-of-NNNNN.parquet`` files of ``shard_rows`` rows (one,
    maybe empty, at least), the layout ``datasets.load_dataset(out_dir)`` reads; returns the count."""
    data_dir = os.path.join(out_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    n_files = max(1, -(-table.num_rows // shard_rows))
    for i in range(n_files):
        write_table(table.slice(i * shard_rows, shard_rows),
                    os.path.join(data_dir, f"train-{i:05d}-of-{n_files:05d}.parquet"))
    return n_files

# ------------------------------------------------------------------ the tables the stages write


# The layout every adapter maps a source's records onto (generated sources are written in it).
# answer: the short final answer, or null when the source has only a worked solution (then an LLM
# extracts it); answer_type null means "detect it"; origin: the upstream dataset of a record in an
# aggregate source (MMR1, FineVision), which the recipe's exclusions match.
RAW = pa.schema([
    ("original_id", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("solution", pa.string()),
    ("answer_type", pa.string()),
    ("choices", pa.list_(pa.string())),
    ("images", pa.list_(pa.binary())),
    ("metadata", pa.string()),
    ("domain", pa.string()),
    ("origin", pa.string()),
])

# Every record a stage drops, with why: one layout for standardise, dedup and clean, so the
# accounting raw = kept + quarantined + excluded + duplicate + contaminated is one query.
# category: quarantined (unusable: corrupt image, no answer...), excluded (the recipe leaves it out),
# duplicate, contaminated (matches an evaluation benchmark).
DROPPED = pa.schema([
    ("source", pa.string()),
    ("original_id", pa.string()),
    ("id", pa.string()),
    ("category", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
])


def dropped_row(source: str, original_id, reason: str, detail: str = "", category: str = "quarantined",
                question=None, answer=None, id: str | None = None) -> dict:
    """A ``DROPPED`` row: the one way every stage records a record it drops, with a category and a reason."""
    return {"source": source, "original_id": str(original_id), "id": id, "category": category, "reason": reason,
            "detail": (detail or "")[:500], "question": _clip(question), "answer": _clip(answer)}


def tally(dropped: list[dict]) -> dict:
    """{category: {reason: n}} of ``DROPPED`` rows."""
    out: dict[str, dict[str, int]] = {}
    for r in dropped:
        by_reason = out.setdefault(r["category"], {})
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    return out


def _clip(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")[:500]
    return str(value)[:500]

# dedup: one row per training record dropped as a duplicate or as contaminated
DROPS = pa.schema([
    ("source", pa.string()),
    ("id", pa.string()),
    ("original_id", pa.string()),
    ("category", pa.string()),  # duplicate | contaminated
    ("reason", pa.string()),  # one of REASONS
    ("matched_source", pa.string()),  # the kept copy's source, or the benchmark's name
    ("matched_id", pa.string()),  # the kept copy's id, or the benchmark record's id
    ("distance", pa.int32()),  # pHash bits to the matched image; null for question matches
    ("question", pa.string()),  # the record's question, first 300 characters
])

# caption: one teacher caption per record
CAPTIONS = pa.schema([("id", pa.string()), ("source", pa.string()), ("caption", pa.string()),
                      ("finish_reason", pa.string()), ("n_tokens", pa.int64()), ("error", pa.string()),
                      ("model", pa.string())])

# trace (and expand): one row per sampled chain of thought
TRACES = pa.schema([("id", pa.string()), ("source", pa.string()), ("sample_index", pa.int64()),
                    ("response", pa.string()), ("finish_reason", pa.string()), ("n_tokens", pa.int64()),
                    ("error", pa.string()), ("model", pa.string())])

# verify: one row per trace, with its verdict and the check that decided it
VERIFIED = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in [("id", "string"), ("source", "string"), ("sample_index", "int64"), ("response", "string"),
                    ("finish_reason", "string"), ("verdict", "string"), ("decided_by", "string"),
                    ("extracted", "string"), ("extract_method", "string"), ("reason", "string"),
                    ("cot_words", "int64"), ("cot_tokens", "int64"), ("caption_tokens", "int64")]])

# pass_rate: the proxy model's k attempts per record
PASS_RATES = pa.schema([("id", pa.string()), ("source", pa.string()), ("k", pa.int64()),
                        ("n_correct", pa.int64()), ("n_truncated", pa.int64()), ("n_error", pa.int64()),
                        ("pass_rate", pa.float64()), ("model", pa.string())])

# evaluate: one row per benchmark item, with the answer read and the verdict
ITEMS = pa.schema([("id", pa.string()), ("benchmark", pa.string()), ("category", pa.string()),
                   ("answer", pa.string()), ("response", pa.string()), ("finish_reason", pa.string()),
                   ("extracted", pa.string()), ("extract_method", pa.string()), ("verdict", pa.string()),
                   ("decided_by", pa.string()), ("correct", pa.bool_()),
                   ("group", pa.string()),  # the unit a worst-case score counts (DynaMath's seed question), else id
                   ("protocol", pa.string())])  # name/version of the benchmark's protocol
