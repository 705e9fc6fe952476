"""Long Grounded Thoughts, "scale" from dense captions: a text LLM (``models.question_writer``,
prompt ``questions.txt``) writes multiple-choice questions about each image of a source from the
image's dense caption, a column of the download (DenseFusion-1M's, DOCCI's, a detection set's).

It runs before standardise, on the download, so its questions are ordinary records from then on:
deduplicated, checked against the benchmarks, cleaned, captioned, traced and verified like any
other. One job writes for one part of the download's rows (``question_jobs`` parts, contiguous), so
a million captions spread over as many GPU jobs; every reply is journaled, so a killed job resumes.
The job keeps the replies as they came (``QUESTION_REPLIES``, one row per record); adapter
``caption_mcq`` reads them at standardise (``mmfr.sources.Replies``), where ``mmfr.grounded.caption_questions`` checks each
question and a failed one is dropped with its reason and counted (``data/std/<source>.dropped.parquet``)."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import prompts, schema
from mmfr.adapters import CAPTION_COLUMNS, ID_COLUMNS, dense_caption
from mmfr.config import QUESTIONS_PER_IMAGE
from mmfr.generate import generate, make_backend, ModelRole, Request, request_key

log = logging.getLogger(__name__)

QUESTION_REPLIES = pa.schema([
    ("index", pa.int64()),  # the record's row in the download
    ("caption", pa.string()),  # the dense caption the writer was given
    ("response", pa.string()),
    ("finish_reason", pa.string()),
    ("n_tokens", pa.int64()),
    ("error", pa.string()),
    ("model", pa.string()),
])


def part_rows(n_rows: int, part: int, parts: int) -> range:
    """The download rows of one question job: ``parts`` contiguous, near-equal ranges."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} of {parts}")
    return range(n_rows * part // parts, n_rows * (part + 1) // parts)


def _column(names: list[str], spec: dict, key: str, candidates: tuple, required: bool) -> str | None:
    override = (spec.get("fields") or {}).get(key)
    wanted = (override,) if override else candidates
    found = next((n for n in wanted if n in names), None)
    if found is None and required:
        raise ValueError(f"source {spec['name']!r}: the download has no {key} column (looked for "
                         f"{', '.join(map(repr, wanted))}; columns: {', '.join(names)}); map it with the "
                         f"source's `fields: {{{key}: <column>}}`")
    return found


def requests_for(raw_path: str, spec: dict, rows: range, seed: int) -> tuple[list[int], list[str], list[Request]]:
    """(download rows, their captions, the requests) for ``rows``; a row without a caption gets no
    request (its caption is "")."""
    pf = pq.ParquetFile(raw_path)
    names = pf.schema_arrow.names
    caption_col = _column(names, spec, "caption", CAPTION_COLUMNS, required=True)
    id_col = _column(names, spec, "id", ID_COLUMNS, required=False)
    n = int(spec.get("questions_per_image", QUESTIONS_PER_IMAGE))
    indexes, captions, reqs, index = [], [], [], 0
    for batch in pf.iter_batches(batch_size=1024, columns=[c for c in (caption_col, id_col) if c]):
        if index + batch.num_rows <= rows.start:
            index += batch.num_rows
            continue
        for rec in batch.to_pylist():
            if index in rows:
                caption = dense_caption(rec[caption_col]) or ""
                indexes.append(index)
                captions.append(caption)
                if caption:
                    sample_id = f"{spec['name']}/{rec[id_col] if id_col and rec[id_col] is not None else index}"
                    text = prompts.render("questions", caption=caption, n=str(n))
                    reqs.append(Request(sample_id, ({"role": "user", "content": text},), (), 0,
                                        schema.seed_for(seed, "questions", sample_id),
                                        {"task": "questions", "caption": caption, "n": n}))
            index += 1
        if index >= rows.stop:
            break
    return indexes, captions, reqs


def write_questions(raw_path: str, spec: dict, part: int, parts: int, out: str, model: dict | ModelRole,
                    seed: int, journal: str | None = None) -> dict:
    """The question writer's replies for one part of a source's download, one row per record (a
    record with no caption: finish_reason ``error``, "no dense caption"). Returns counts by outcome."""
    role = ModelRole.from_config(model, "models.question_writer")
    rows = part_rows(pq.ParquetFile(raw_path).metadata.num_rows, part, parts)
    indexes, captions, reqs = requests_for(raw_path, spec, rows, seed)
    _, prompt_version = prompts.load("questions")
    keys = [request_key(role, r, prompt_version) for r in reqs]
    responses = generate(lambda: make_backend(role), reqs, keys, journal)
    asked = iter(keys)
    out_rows, counts = [], {}
    for index, caption in zip(indexes, captions):
        if caption:
            p = responses[next(asked)]
            row = {"response": p.text, "finish_reason": p.finish_reason, "n_tokens": p.n_tokens, "error": p.error}
        else:
            row = {"response": "", "finish_reason": "error", "n_tokens": 0, "error": "no dense caption"}
        out_rows.append({"index": index, "caption": caption, **row, "model": role.model})
        counts[row["finish_reason"]] = counts.get(row["finish_reason"], 0) + 1
    schema.write_table(pa.Table.from_pylist(out_rows, schema=QUESTION_REPLIES), out)
    log.info("question replies %s (rows %d-%d): %s", out, rows.start, rows.stop - 1, counts)
    return counts

