"""Annotation: dense captions (instruct teacher) and reasoning traces (thinking teacher),
both through the one generation interface. The thinking teacher does not see the caption."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import prompts, schema
from mmfr.generate import Request, generate, make_backend, request_key

log = logging.getLogger(__name__)

CAPTIONS = pa.schema([("id", pa.string()), ("source", pa.string()), ("caption", pa.string()),
                      ("finish_reason", pa.string()), ("n_tokens", pa.int64()), ("error", pa.string()),
                      ("model", pa.string())])
TRACES = pa.schema([("id", pa.string()), ("source", pa.string()), ("sample_index", pa.int64()),
                    ("response", pa.string()), ("finish_reason", pa.string()), ("n_tokens", pa.int64()),
                    ("error", pa.string()), ("model", pa.string())])


def _context(rec: dict, task: str) -> dict:
    return {"task": task, "metadata": json.loads(rec["metadata"]), "answer": rec["answer"],
            "answer_type": rec["answer_type"], "choices": rec["choices"]}


def _requests(records: list[dict], task: str, text_of, n: int, seed: int) -> list[Request]:
    out = []
    for rec in records:
        messages = ({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text_of(rec)}]},)
        for i in range(n):
            out.append(Request(rec["id"], messages, (rec["image"]["bytes"],), i,
                               schema.seed_for(seed, task, rec["id"], i), _context(rec, task)))
    return out


def _run(records, task, text_of, n, model, seed, journal_path, prompt_name):
    _, prompt_version = prompts.load(prompt_name)
    reqs = _requests(records, task, text_of, n, seed)
    sampling = model.get("sampling", {})
    keys = [request_key(model, sampling, r, prompt_version) for r in reqs]
    responses = generate(lambda: make_backend(model), reqs, keys, journal_path)
    return reqs, [responses[k] for k in keys]


def caption_shard(shard: str, out: str, model: dict, seed: int, journal: str | None = None) -> int:
    records = pq.read_table(shard).to_pylist()
    caption_prompt = prompts.render("caption")
    reqs, resps = _run(records, "caption", lambda r: caption_prompt, 1, model, seed, journal, "caption")
    source = {r["id"]: r["source"] for r in records}
    rows = [{"id": q.sample_id, "source": source[q.sample_id], "caption": p.text, "finish_reason": p.finish_reason,
             "n_tokens": p.n_tokens, "error": p.error, "model": model.get("model")} for q, p in zip(reqs, resps)]
    schema.write_table(pa.Table.from_pylist(rows, schema=CAPTIONS), out)
    return len(rows)


def trace_shard(shard: str, out: str, model: dict, n_samples: int, seed: int, journal: str | None = None) -> int:
    records = pq.read_table(shard).to_pylist()

    def text_of(rec):
        return prompts.render("trace", question=prompts.question_text(rec["question"], rec["choices"]))

    reqs, resps = _run(records, "trace", text_of, n_samples, model, seed, journal, "trace")
    source = {r["id"]: r["source"] for r in records}
    rows = [{"id": q.sample_id, "source": source[q.sample_id], "sample_index": q.sample_index,
             "response": p.text, "finish_reason": p.finish_reason, "n_tokens": p.n_tokens, "error": p.error,
             "model": model.get("model")} for q, p in zip(reqs, resps)]
    schema.write_table(pa.Table.from_pylist(rows, schema=TRACES), out)
    counts = {}
    for p in resps:
        counts[p.finish_reason] = counts.get(p.finish_reason, 0) + 1
    log.info("traces %s: %s", out, counts)
    return len(rows)
