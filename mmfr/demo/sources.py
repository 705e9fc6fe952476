"""The demo's generated sources: synthetic task families, composed questions, the held-out
benchmark, detection scenes, and seeded faults that give every check of the sources stage work."""

from __future__ import annotations

import json
import random

import pyarrow as pa

from mmfr import schema
from mmfr.demo import synth
from mmfr.schema import RAW


def generated_table(spec: dict, seed: int) -> pa.Table:
    """The table a generated source downloads to: RAW rows, or (``synthetic_detection``) images with
    labelled boxes as a detection dataset stores them (and, with ``dense_captions``, a caption each)."""
    if spec["kind"] == "synthetic_detection":
        return pa.Table.from_pylist(synth.detections(spec["n"], schema.seed_for(seed, "synth", spec["name"]),
                                                     dense_captions=spec.get("dense_captions", False)))
    return pa.Table.from_pylist(synthetic_rows(spec, seed), schema=RAW)


def synthetic_rows(spec: dict, seed: int) -> list[dict]:
    """Rows of a generated source: one synthetic family, or composed questions over others."""
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
    rows = [_raw_row(r) for r in records]
    if spec["kind"] == "synthetic" and spec.get("inject_faults"):
        # a leak to simulate: the first test records of the family are the demo benchmark's
        test = [_raw_row(r) for r in family(spec["family"], "test", max(1, len(rows) // 20))]
        rows = inject_faults(rows, spec["inject_faults"], schema.seed_for(seed, "faults", spec["name"]), test)
    return rows


def _raw_row(r: dict) -> dict:
    return {"original_id": r["original_id"], "question": r["question"], "answer": r["answer"], "solution": None,
            "answer_type": r["answer_type"], "choices": r["choices"], "images": [r["image"]],
            "metadata": json.dumps(r["metadata"], sort_keys=True), "domain": r["domain"], "origin": None}


FAULTS = ("truncated_image", "empty_question", "missing_answer", "multi_image", "duplicate", "benchmark_leak",
          "noisy_question", "unanswerable", "answer_in_solution")
UNANSWERABLE = "Using the table on the previous page, what is the total of the second column?"


def inject_faults(rows: list[dict], rate: float, seed: int, leaks: list[dict] = ()) -> list[dict]:
    """Damage a seeded fraction of generated rows the way real data is damaged, so that every
    check of the sources stage has real work in the demo: broken images and fields (quarantine),
    two images (exclusion), copies and benchmark leaks (dedup), noise, unanswerable questions and
    answers buried in a worked solution (LLM cleaning and extraction). The damage is recorded in
    the row's metadata."""
    rng = random.Random(seed)
    out, leaks = [], list(leaks)
    for i, row in enumerate(rows):
        if rng.random() >= rate:
            out.append(row)
            continue
        row, fault = dict(row), rng.choice(FAULTS)
        meta = json.loads(row["metadata"])
        if fault == "truncated_image":
            row["images"] = [row["images"][0][: len(row["images"][0]) // 3]]
        elif fault == "empty_question":
            row["question"] = "  "
        elif fault == "missing_answer":
            row["answer"] = None
        elif fault == "multi_image":
            row["images"] = row["images"] * 2
        elif fault == "duplicate" and out:
            row = {**out[rng.randrange(len(out))], "original_id": row["original_id"]}
            meta = json.loads(row["metadata"])
        elif fault == "benchmark_leak" and leaks:
            row = {**leaks.pop(0), "original_id": row["original_id"]}
            meta = json.loads(row["metadata"])
        elif fault == "noisy_question":
            row["question"] = f"Question {i + 1}: {row['question']}<br> Answer directly with a single word or number."
        elif fault == "unanswerable":
            row["question"] = UNANSWERABLE
        elif fault == "answer_in_solution":
            sol = synth.solution(meta)
            row["solution"] = " ".join([*sol["facts"], sol["setup"], *sol["steps"], f"So we get {row['answer']}."])
            row["answer"] = None
        row["metadata"] = json.dumps({**meta, "injected_fault": fault}, sort_keys=True)
        out.append(row)
    return out


