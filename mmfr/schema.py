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

ANSWER_TYPES = ("choice", "number", "expression", "text")
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

