"""Difficulty: the proxy model answers each verified question k times; pass rate = correct / k."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfr import prompts, schema
from mmfr.generate import Request, generate, make_backend, request_key, resolve_model
from mmfr.verify import VerifyConfig, verify_response

log = logging.getLogger(__name__)

PASS_RATES = pa.schema([("id", pa.string()), ("source", pa.string()), ("k", pa.int64()),
                        ("n_correct", pa.int64()), ("n_truncated", pa.int64()), ("n_error", pa.int64()),
                        ("pass_rate", pa.float64()), ("model", pa.string())])


def student_requests(records: list[dict], n: int, seed: int, stage: str) -> list[Request]:
    """k requests per record with the student prompt (shared by pass rates and evaluation)."""
    out = []
    for rec in records:
        messages = tuple(prompts.student_messages(rec["question"], rec["choices"]))
        for i in range(n):
            out.append(Request(rec["id"], messages, (rec["image"]["bytes"],), i, schema.seed_for(seed, stage, rec["id"], i)))
    return out


def ask(records: list[dict], model: dict, n: int, seed: int, stage: str, journal: str | None,
        config_key: str | None = None, loaded=None):
    """Generate n student-prompt answers per record; returns (requests, responses) aligned.
    ``config_key``: where the config gives ``model``, for the backend's errors; ``loaded``: a
    ``LoadedModel`` that keeps the model across calls (a job that answers several benchmarks)."""
    _, version = prompts.load("student")
    model = resolve_model(model)
    reqs = student_requests(records, n, seed, stage)
    keys = [request_key(model, model.get("sampling", {}), r, version) for r in reqs]
    backend = loaded.factory(model, config_key) if loaded else lambda: make_backend(model, config_key=config_key)
    responses = generate(backend, reqs, keys, journal)
    return reqs, [responses[k] for k in keys]


def unfinished(finish_reason: str, score_truncated: bool) -> dict | None:
    """The verdict of a response that did not finish: it never counts as an answer by default."""
    if finish_reason == "stop" or (score_truncated and finish_reason == "length"):
        return None
    verdict = "truncated" if finish_reason == "length" else finish_reason
    return {"verdict": verdict, "decided_by": "finish_reason", "extracted": None, "extract_method": "none"}


def pass_rate_shard(shard: str, verified: str, out: str, model: dict, k: int, seed: int,
                    journal: str | None = None, score_truncated: bool = False) -> int:
    """Pass rates for the records of ``shard`` whose trace verified correct. An attempt cut at max
    tokens (or empty) fails, unless ``score_truncated``."""
    correct = set(pq.read_table(verified, filters=pc.field("verdict") == "correct",
                                columns=["id"]).column("id").to_pylist())
    records = [r for r in pq.read_table(shard).to_pylist() if r["id"] in correct]
    reqs, resps = ask(records, model, k, seed, "passrate", journal, config_key="models.proxy")
    cfg = VerifyConfig(require_template=False)
    by_id = {r["id"]: r for r in records}
    tally = {r["id"]: [0, 0, 0] for r in records}  # correct, truncated, error
    for req, resp in zip(reqs, resps):
        rec, t = by_id[req.sample_id], tally[req.sample_id]
        if resp.finish_reason == "error":
            t[2] += 1
            continue
        t[1] += resp.finish_reason == "length"
        verdict = unfinished(resp.finish_reason, score_truncated) or verify_response(
            resp.text, rec["answer"], rec["answer_type"], rec["choices"], cfg)
        t[0] += verdict["verdict"] == "correct"
    errors = sum(t[2] for t in tally.values())
    if errors:
        raise RuntimeError(f"{errors} proxy requests failed for {shard}; see the journal {journal}")
    rows = [{"id": i, "source": by_id[i]["source"], "k": k, "n_correct": c, "n_truncated": tr, "n_error": e,
             "pass_rate": c / k if k else 0.0, "model": model.get("model")}
            for i, (c, tr, e) in sorted(tally.items())]
    schema.write_table(pa.Table.from_pylist(rows, schema=PASS_RATES), out)
    log.info("pass rates %s: %d records, mean %.3f", out, len(rows),
             sum(r["pass_rate"] for r in rows) / max(1, len(rows)))
    return len(rows)
