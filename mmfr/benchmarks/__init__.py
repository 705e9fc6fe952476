"""Benchmarks: each one's protocol (reading its published records, the prompt, the official scoring
rules, the aggregate) in ``protocols``; the rules themselves in ``rules``. ``score_response`` is what
the pipeline's evaluation and ``mmfr score`` both call, so the two cannot differ."""

from __future__ import annotations

import json

from mmfr.benchmarks.protocols import PROTOCOLS, Protocol

__all__ = ["PROTOCOLS", "Protocol", "protocol_of", "read_record", "score_response", "item_of", "aggregate"]


def protocol_of(spec: dict) -> Protocol:
    """The protocol a benchmark's config entry names (``protocol``), else the one of its name,
    else the generic chain."""
    name = spec.get("protocol") or (spec.get("name") if spec.get("name") in PROTOCOLS else "generic")
    if name not in PROTOCOLS:
        raise ValueError(f"benchmark {spec.get('name')!r}: unknown protocol {name!r} "
                         f"(one of {', '.join(sorted(PROTOCOLS))})")
    return PROTOCOLS[name]


def read_record(rec: dict, spec: dict, index: int) -> list[dict]:
    """The RAW rows of one published record (an adapter for ``mmfr.sources.standardise``)."""
    return protocol_of(spec).read(rec, spec, index)


def item_of(row: dict) -> dict:
    """What a protocol's prompt and scorer read from a prepared item (or a RAW row)."""
    meta = row.get("metadata") or "{}"
    return {"id": row.get("id") or row.get("original_id"), "question": row["question"], "answer": row["answer"],
            "answer_type": row["answer_type"], "choices": list(row.get("choices") or []),
            "metadata": json.loads(meta) if isinstance(meta, str) else meta}


def score_response(protocol: Protocol, item: dict, response: str) -> dict:
    """{extracted, verdict, decided_by, extract_method} of one response; a scorer that fails on an
    odd item gives the verdict ``undecided`` with the error, and never stops the benchmark."""
    try:
        return protocol.score(item, response or "")
    except Exception as e:  # one bad item must not abort a benchmark
        return {"extracted": None, "verdict": "undecided", "decided_by": f"error: {type(e).__name__}: {e}"[:300],
                "extract_method": "none"}


def aggregate(protocol: Protocol, rows: list[dict]) -> tuple[int, int]:
    """(units, correct) of a benchmark's scored rows (ITEMS rows): items, or for a worst-case
    protocol the groups of variants in ``group`` (a group is right only when all its variants are),
    or the protocol's own metric (WeMath: correct is then its score times the units)."""
    if protocol.metric:
        return protocol.metric(rows)
    if not protocol.group_by:
        return len(rows), sum(bool(r["correct"]) for r in rows)
    groups: dict[str, bool] = {}
    for r in rows:
        key = str(r.get("group") or r["id"])
        groups[key] = groups.get(key, True) and bool(r["correct"])
    return len(groups), sum(groups.values())
