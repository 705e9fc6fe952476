"""Difficulty: the proxy model answers each verified question k times; pass rate = correct / k."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfr import schema
from mmfr.generate import ModelRole
from mmfr.schema import PASS_RATES
from mmfr.student import ask, unfinished
from mmfr.verify import verify_response, VerifyConfig

log = logging.getLogger(__name__)


RELEASE_K = 4  # the published pass rates are fractions of four attempts


def pass_rate_shard(shard: str, verified: str, out: str, model: dict | ModelRole, k: int, seed: int,
                    journal: str | None = None, score_truncated: bool = False, release: dict | None = None) -> int:
    """Pass rates for the records of ``shard`` whose trace verified correct. An attempt cut at max
    tokens (or empty) fails, unless ``score_truncated``. With ``release`` (``{"index", "model"}``:
    ``difficulty.from_release``) a record the release holds takes its published pass rate, and only
    the others are asked of the proxy."""
    correct = set(pq.read_table(verified, filters=pc.field("verdict") == "correct",
                                columns=["id"]).column("id").to_pylist())
    records = [r for r in pq.read_table(shard).to_pylist() if r["id"] in correct]
    published = _published(records, release) if release else {}
    records = [r for r in records if r["id"] not in published]
    role = ModelRole.from_config(model, "models.proxy")
    reqs, resps = ask(records, role, k, seed, "passrate", journal)
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
    rows = sorted([{"id": i, "source": by_id[i]["source"], "k": k, "n_correct": c, "n_truncated": tr, "n_error": e,
                    "pass_rate": c / k if k else 0.0, "model": role.model}
                   for i, (c, tr, e) in tally.items()] + list(published.values()), key=lambda r: r["id"])
    if release:
        log.info("pass rates %s: %d published, %d from the proxy", out, len(published), len(tally))
    schema.write_table(pa.Table.from_pylist(rows, schema=PASS_RATES), out)
    log.info("pass rates %s: %d records, mean %.3f", out, len(rows),
             sum(r["pass_rate"] for r in rows) / max(1, len(rows)))
    return len(rows)


def _published(records: list[dict], release: dict) -> dict[str, dict]:
    """The pass-rate rows of the records a release holds with a pass rate (``mmfr.release``: matched
    by question and image bytes, else image content)."""
    from mmfr.release import PHASH_DISTANCE, lookup, wanted_table

    wanted = wanted_table([r["original_question"] for r in records], [r["image"]["bytes"] for r in records],
                          [r["image_phash"] for r in records], [r["answer"] for r in records])
    out = {}
    for rec, row in zip(records, lookup(release["index"], wanted, ["pass_rate"],
                                          release.get("phash_distance", PHASH_DISTANCE))):
        value = row["pass_rate"] if row else None
        if value is not None:
            out[rec["id"]] = {"id": rec["id"], "source": rec["source"], "k": RELEASE_K,
                              "n_correct": round(value * RELEASE_K), "n_truncated": 0, "n_error": 0,
                              "pass_rate": value, "model": release["model"]}
    return out
