"""Sources: fetch raw data (generated, or a pinned ``datasets`` download) and standardise it into
canonical, statically sharded records with a quarantine for what cannot be used."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import adapters, images, schema
from mmfr.answers import ANSWER_TYPES
from mmfr.exclusions import Exclusions
from mmfr.schema import DROPPED, dropped_row, tally

log = logging.getLogger(__name__)


CATEGORIES = ("quarantined", "excluded", "duplicate", "contaminated")


class Reject(ValueError):
    def __init__(self, reason: str, detail: str = "", category: str = "quarantined"):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.category = reason, detail, category


# ---------------------------------------------------------------- download
SYNTHETIC_KINDS = ("synthetic", "composed", "synthetic_benchmark", "synthetic_detection")
# Where the generated kinds are made: the demo package, reached only through this name
GENERATOR = "mmfr.demo.sources:generated_table"


def download(spec: dict, out_path: str, manifest_path: str, images_dir: str, seed: int) -> int:
    """Fetch one source into ``out_path`` with a manifest of exactly what was fetched.

    Generated sources are written in the RAW layout. A ``kind: hf`` source is loaded with
    ``datasets`` at its pinned revision (``hf_id`` may be a hub id, a local directory or a mirror;
    ``HF_DATASETS_OFFLINE=1`` with a filled cache works too) and saved verbatim, images as bytes:
    adapters run in standardise, so fixing one never downloads again. ``image_archives`` (files of the
    dataset repo, parts concatenated in order) are unpacked into ``images_dir`` for sources whose
    records hold image paths. Returns the row count.
    """
    os.makedirs(images_dir, exist_ok=True)
    manifest = {"name": spec["name"], "kind": spec["kind"]}
    if spec["kind"] in SYNTHETIC_KINDS:  # the embedded demo's sources, generated (mmfr.demo)
        module, name = GENERATOR.split(":")
        table = getattr(importlib.import_module(module), name)(spec, seed)
        schema.write_table(table, out_path)
        manifest.update(rows=table.num_rows, seed=seed)
    elif spec["kind"] == "hf":
        manifest.update(hf_download(spec, out_path, images_dir))
    else:
        raise ValueError(f"sources.{spec['name']}.kind: unknown kind {spec['kind']!r} "
                         f"(one of {', '.join(SYNTHETIC_KINDS + ('hf',))})")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    log.info("downloaded %d rows of %s into %s", manifest["rows"], spec["name"], out_path)
    return manifest["rows"]


def hf_download(spec: dict, out_path: str, images_dir: str) -> dict:
    """One Hub dataset split to parquet, images left encoded. A list of configs (MMMU's subjects)
    or of splits (DynaMath's variants) is read part by part into one table, each row naming its
    part in ``_config`` / ``_split``."""
    import datasets

    where = f"sources.{spec['name']}"
    if not spec.get("revision") and not os.path.isdir(spec["hf_id"]):
        log.warning("%s.revision is not pinned: downloading the current main of %s", where, spec["hf_id"])
    configs, splits = spec.get("config"), spec.get("split", "train")
    parts = []
    for config in configs if isinstance(configs, list) else [configs]:
        for split in splits if isinstance(splits, list) else [splits]:
            ds = datasets.load_dataset(spec["hf_id"], config, split=split, revision=spec.get("revision"),
                                       data_files=spec.get("data_files"))
            ds = ds.cast(_undecoded(ds.features))
            if isinstance(configs, list):
                ds = ds.add_column("_config", [config] * ds.num_rows)
            if isinstance(splits, list):
                ds = ds.add_column("_split", [split] * ds.num_rows)
            parts.append(ds)
    ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    ds.to_parquet(out_path)
    archives = [_fetch_file(spec, name) for name in spec.get("image_archives") or []]
    if archives:
        unpack(archives, images_dir)
    return {"hf_id": spec["hf_id"], "config": configs, "split": splits,
            "revision": spec.get("revision"), "resolved_revision": _resolved_revision(spec),
            "fingerprint": ds._fingerprint, "rows": ds.num_rows, "columns": ds.column_names,
            "image_archives": spec.get("image_archives") or [], "datasets": datasets.__version__}


def _undecoded(features):
    """The same features with every Image (also inside lists) left as bytes: no decoding at download."""
    import datasets

    if isinstance(features, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(features, dict):
        return type(features)({k: _undecoded(v) for k, v in features.items()})
    if isinstance(features, (datasets.Sequence, datasets.List)):
        return type(features)(_undecoded(features.feature))
    if isinstance(features, list):
        return [_undecoded(f) for f in features]
    return features


def _fetch_file(spec: dict, filename: str) -> str:
    if os.path.isdir(spec["hf_id"]):  # a local copy or mirror of the dataset repo
        return os.path.join(spec["hf_id"], filename)
    from huggingface_hub import hf_hub_download

    return hf_hub_download(spec["hf_id"], filename, repo_type="dataset", revision=spec.get("revision"))


def _resolved_revision(spec: dict) -> str | None:
    """The commit a hub download resolved to, for the audit trail (None offline or for local paths)."""
    if os.path.isdir(spec["hf_id"]) or os.environ.get("HF_HUB_OFFLINE") == "1":
        return spec.get("revision")
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(spec["hf_id"], revision=spec.get("revision")).sha
    except Exception as e:  # the download itself worked; an audit field must not fail the job
        log.warning("could not resolve the revision of %s: %s", spec["hf_id"], e)
        return spec.get("revision")


def unpack(parts: list[str], out_dir: str) -> int:
    """Unpack a zip archive given as one file or as split parts (concatenated in order)."""
    import shutil
    import tempfile
    import zipfile

    with tempfile.TemporaryFile() as joined:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, joined)
        joined.seek(0)
        with zipfile.ZipFile(joined) as z:
            for member in z.infolist():  # refuse paths that would escape out_dir
                target = os.path.realpath(os.path.join(out_dir, member.filename))
                if not target.startswith(os.path.realpath(out_dir) + os.sep) and target != os.path.realpath(out_dir):
                    raise ValueError(f"{parts[0]}: archive member {member.filename!r} escapes {out_dir}")
            z.extractall(out_dir)
            return len(z.infolist())


# ---------------------------------------------------------------- standardise
@dataclass(frozen=True)
class ImagePolicy:
    max_side: int = 2048
    max_pixels: int = 89_478_485
    min_side: int = 32


def to_canonical(row: dict, source: str, license: str, policy: ImagePolicy,
                 exclusions: Exclusions = Exclusions(), config: str | None = None) -> dict:
    """One RAW row → one canonical record, or ``Reject`` with the category and reason."""
    if row.get("unreadable"):
        raise Reject("unreadable", row["unreadable"])
    if row.get("reject"):  # an adapter's own verdict on a row it made (a model-written question)
        raise Reject(*row["reject"])
    if hit := exclusions.origin_match(row.get("origin"), config):
        raise Reject("excluded_origin", f"{hit} (origin {row.get('origin') or config})", "excluded")
    question = _text(row.get("question"), "question")
    if not question.strip():
        raise Reject("empty_question")
    answer = _text(row.get("answer"), "answer").strip()
    solution = _text(row.get("solution"), "solution").strip()
    if not answer and not solution:
        raise Reject("missing_answer")
    if row.get("answer_type") not in (*ANSWER_TYPES, None):
        raise Reject("bad_answer_type", str(row.get("answer_type")))
    blobs = row.get("images") or []
    if len(blobs) > 1 and exclusions.multi_image:
        raise Reject("multi_image", f"{len(blobs)} images", "excluded")
    if not blobs or not blobs[0]:
        raise Reject("image_missing")
    try:
        image = images.normalise(blobs[0], policy.max_side, policy.max_pixels, policy.min_side)
    except images.ImageError as e:
        raise Reject(e.reason, str(e)) from None
    digest = images.sha256(image.data)
    question = question.strip()
    return {
        "source": source,
        "id": schema.sample_id(source, row["original_id"], question, digest),
        "original_id": row["original_id"],
        "original_question": question,
        "original_answer": answer or None,
        "solution": solution or None,
        "image": {"bytes": image.data, "path": None},
        "image_sha256": digest,
        "image_phash": image.phash,
        "question": question,
        "answer": answer or None,  # None: to be extracted from the solution by the clean stage
        "answer_type": row.get("answer_type"),
        "choices": list(row.get("choices") or []),
        "domain": row.get("domain") or "general",
        "language": language(question),
        "license": license,
        "metadata": row.get("metadata") or "{}",
    }


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def language(text: str) -> str:
    """'zh' when the text holds CJK characters (BMMR, Euclid30K, ...: the clean stage translates), else 'en'."""
    return "zh" if _CJK.search(text) else "en"


def _text(value, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("non_utf8", field) from None
    if isinstance(value, str) and "\ufffd" in value:  # text that was already decoded with replacement
        raise Reject("non_utf8", f"{field} holds U+FFFD replacement characters")
    return str(value)


def raw_rows(raw_path: str, spec: dict, images_dir: str | None = None, batch_size: int = 256,
             adapt=adapters.adapt, row_groups: list[int] | None = None, first: int = 0,
             replies: dict[int, dict] | None = None):
    """Stream a downloaded source through its adapter: yields RAW rows, a batch of records at a time.
    ``adapt``: another reader of records (a benchmark's protocol). ``row_groups``: only those row
    groups of the file, whose first record is record number ``first`` of the file. ``replies``: the
    question writer's reply to each record, by row (adapter caption_mcq), given to it in column
    ``adapters.REPLY``."""

    default = {"synthetic_detection": "grounded_mcq"}.get(spec.get("kind"),
                                                           "raw" if spec.get("kind") in SYNTHETIC_KINDS else "generic")
    spec = {**spec, "adapter": spec.get("adapter") or default, "image_root": spec.get("image_root") or images_dir}
    index = first
    for batch in pq.ParquetFile(raw_path).iter_batches(batch_size=batch_size, row_groups=row_groups):
        for rec in batch.to_pylist():
            if replies is not None:
                rec[adapters.REPLY] = replies.get(index)
            try:
                yield from adapt(rec, spec, index)
            except adapters.RecordError as e:
                yield {"original_id": str(index), "unreadable": str(e)}
            index += 1


def outcomes(raw_path: str, spec: dict, policy: ImagePolicy, exclusions: Exclusions, images_dir: str | None,
             adapt=adapters.adapt, row_groups: list[int] | None = None, first: int = 0,
             replies: dict[int, dict] | None = None):
    """What becomes of each RAW row of the file (or of ``row_groups``): yields a canonical record,
    or a ``DROPPED`` row with its reason, in order. The part of standardise that needs no other row."""
    source, license = spec["name"], spec.get("license", "unknown")
    for row in raw_rows(raw_path, spec, images_dir, adapt=adapt, row_groups=row_groups, first=first,
                        replies=replies):
        try:
            yield to_canonical(row, source, license, policy, exclusions, spec.get("config"))
        except Reject as e:
            yield dropped_row(source, row.get("original_id"), e.reason, e.detail, e.category,
                              row.get("question"), row.get("answer"))


TASK_ROWS = 256  # records of the raw file per task of a parallel standardise (whole row groups)


def _tasks(raw_path: str) -> list[tuple[list[int], int, int]]:
    """The raw file's row groups in runs of about ``TASK_ROWS`` records: (row groups, first record,
    records)."""
    meta = pq.ParquetFile(raw_path).metadata
    tasks, first, run, size = [], 0, [], 0
    for g in range(meta.num_row_groups):
        run.append(g)
        size += meta.row_group(g).num_rows
        if size >= TASK_ROWS or g == meta.num_row_groups - 1:
            tasks.append((run, first, size))
            first, run, size = first + size, [], 0
    return tasks


def _task_outcomes(job: tuple, task: tuple[list[int], int, int], replies: dict[int, dict] | None = None) -> list[dict]:
    return list(outcomes(*job, row_groups=task[0], first=task[1], replies=replies))


class Replies:
    """The replies of a source's question jobs, read in row order, a range at a time (standardise
    asks for each task's rows in turn, so memory holds one part's batch, not the source)."""

    def __init__(self, paths: list[str]):
        self._rows = (r for path in paths for b in pq.ParquetFile(path).iter_batches(batch_size=1024)
                      for r in b.to_pylist())
        self._next = next(self._rows, None)

    def take(self, first: int, size: int) -> dict[int, dict]:
        """``{row: reply}`` for download rows ``first`` to ``first + size - 1``."""
        out = {}
        while self._next is not None and self._next["index"] < first + size:
            if self._next["index"] >= first:
                out[self._next["index"]] = self._next
            self._next = next(self._rows, None)
        return out


def parallel_outcomes(raw_path: str, spec: dict, policy: ImagePolicy, exclusions: Exclusions,
                      images_dir: str | None, adapt=adapters.adapt, threads: int = 1,
                      replies: list[str] | None = None):
    """``outcomes`` computed by ``threads`` worker processes over runs of row groups, yielded in the
    file's order (so the output bytes do not depend on ``threads``). At most two tasks per worker are
    in flight, so memory is bounded by the workers, not by the source's size. Workers are forked:
    a Snakemake script cannot be imported again by a spawned process. ``replies``: the question
    writer's reply files (adapter caption_mcq), each task sent its own rows' replies."""
    job = (raw_path, spec, policy, exclusions, images_dir, adapt)
    reader = Replies(replies) if replies is not None else None

    def replies_of(task):
        return reader.take(task[1], task[2]) if reader is not None else None

    if threads <= 1:
        for task in _tasks(raw_path):
            yield from _task_outcomes(job, task, replies_of(task))
        return
    import collections
    import functools
    import multiprocessing

    pending = collections.deque()
    run = functools.partial(_task_outcomes, job)
    with ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("fork")) as pool:
        for task in _tasks(raw_path):
            pending.append(pool.submit(run, task, replies_of(task)))
            if len(pending) >= 2 * threads:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


class ShardWriter:
    """Appends records to one parquet shard in row groups, so a source of any size streams
    through bounded memory. The output depends only on the input order: byte-identical reruns.
    ``pool``: a thread pool that encodes and compresses the row groups (pyarrow lets go of the
    GIL), one at a time per shard, so several shards are written at once."""

    def __init__(self, path: str, table_schema: pa.Schema, flush_bytes: int = 16 << 20, flush_rows: int = 256,
                 pool=None):
        self.path, self.schema, self.rows, self.size, self.n = path, table_schema, [], 0, 0
        self.flush_bytes, self.flush_rows, self.pool, self.writing = flush_bytes, flush_rows, pool, None
        self.writer = pq.ParquetWriter(path, table_schema, compression="zstd", compression_level=3,
                                       write_statistics=True, store_schema=True)

    def add(self, rec: dict) -> None:
        self.rows.append(rec)
        self.size += len(rec["image"]["bytes"]) if rec.get("image") else 0
        self.n += 1
        if len(self.rows) >= self.flush_rows or self.size >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            table = pa.Table.from_pylist(self.rows, schema=self.schema)
            self._wait()
            if self.pool is None:
                self.writer.write_table(table)
            else:
                self.writing = self.pool.submit(self.writer.write_table, table)
        self.rows, self.size = [], 0

    def _wait(self) -> None:
        if self.writing is not None:
            self.writing.result()
            self.writing = None

    def close(self) -> None:
        self.flush()
        self._wait()
        self.writer.close()


def standardise(raw_path: str, spec: dict, shard_paths: list[str], dropped_path: str, counts_path: str | None,
                policy: ImagePolicy, exclusions: Exclusions = Exclusions(), images_dir: str | None = None,
                adapt=adapters.adapt, threads: int = 1, replies: list[str] | None = None) -> dict:
    """A downloaded source → canonical records hash-sharded over ``shard_paths``, streamed.

    Every row the source's adapter yields is either kept or written to ``dropped_path`` with its
    category and reason; ``counts_path`` gets {raw, kept, dropped: {category: {reason: n}}}, and
    raw == kept + all drops always. ``threads``: worker processes that decode and hash the images
    (``parallel_outcomes``); the output is the same bytes for any number. ``replies``: the question
    writer's reply files, in row order (adapter caption_mcq; ``mmfr.questions``). Returns the counts.
    """
    source = spec["name"]
    if (spec.get("adapter") == "caption_mcq") != (replies is not None):
        raise ValueError(f"source {source!r}: the question writer's replies are read by adapter caption_mcq, and "
                         "it reads nothing else")
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    writers = [ShardWriter(p, schema.RECORD, pool=pool) for p in shard_paths]
    dropped, seen, raw = [], set(), 0
    try:
        for rec in parallel_outcomes(raw_path, spec, policy, exclusions, images_dir, adapt, threads, replies):
            raw += 1
            if "reason" in rec:  # a DROPPED row
                dropped.append(rec)
            elif rec["id"] in seen:  # the same record twice in one source: no information, not a defect
                dropped.append(dropped_row(source, rec["original_id"], "duplicate_id", rec["id"], "duplicate",
                                           rec["question"], rec["answer"], rec["id"]))
            else:
                seen.add(rec["id"])
                writers[schema.shard_of(rec["id"], len(writers))].add(rec)
    finally:
        for w in writers:
            w.close()
        if pool is not None:
            pool.shutdown()
    dropped.sort(key=lambda r: (r["original_id"], r["reason"]))
    schema.write_table(pa.Table.from_pylist(dropped, schema=DROPPED), dropped_path)
    counts = {"source": source, "raw": raw, "kept": len(seen), "dropped": tally(dropped)}
    if counts_path:
        with open(counts_path, "w") as f:
            json.dump(counts, f, indent=1, sort_keys=True)
    log.info("%s: %s", source, counts)
    return counts
