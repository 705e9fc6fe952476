"""Cleaning: the last step of the sources stage, after dedup and decontamination.

A text LLM rewrites each question (English, no noise, no "answer directly" instruction) or flags
it unanswerable; a second text LLM extracts the final answer of items that came with a worked
solution only. Both go through the one generation interface, so every response is cached per
sample and a rerun or a resumed job generates nothing twice. Either model may be null (skipped).

On a cluster the two models are loaded once for several shards (``generate_group``, one GPU job per
``grouping.clean_rows`` rows); the per-shard ``clean_shard`` jobs then find every response in the
journals and load no model.
"""

from __future__ import annotations

import logging
import re

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import prompts, schema
from mmfr.answers import detect_answer_type, to_letter
from mmfr.generate import generate, LoadedModel, make_backend, ModelRole, Request, request_key
from mmfr.schema import DROPPED, dropped_row, tally

log = logging.getLogger(__name__)

# clean_status: cleaned | unchanged | skipped (no model) | failed:<finish reason> | unparsed
# answer_from: source (the dataset's own short answer) | llm (extracted from its solution)
CLEAN = schema.schema_with([("clean_status", pa.string()), ("answer_from", pa.string())])

_STATUS = re.compile(r"^\s*STATUS:\s*(OK|UNANSWERABLE)\s*$", re.M | re.I)
_QUESTION = re.compile(r"^\s*QUESTION:\s*\n?(.*)\Z", re.M | re.S | re.I)
_ANSWER = re.compile(r"^\s*ANSWER:\s*(.+?)\s*$", re.M | re.I)


def parse_cleaned(text: str) -> tuple[str, str] | None:
    """('OK'|'UNANSWERABLE', question) from a cleaning reply, or None if it is not in the form."""
    status, question = _STATUS.search(text or ""), _QUESTION.search(text or "")
    if not status:
        return None
    verdict = status.group(1).upper()
    question = question.group(1).strip() if question else ""
    if verdict == "OK" and not question:
        return None
    return verdict, question


def parse_extracted(text: str) -> str | None:
    """The answer of the last 'ANSWER:' line, None for 'NONE' or no such line."""
    found = _ANSWER.findall(text or "")
    if not found or found[-1].strip().upper() in ("NONE", "<NONE>", "N/A"):
        return None
    return found[-1].strip().strip("$").strip() or None


def _text_request(rec: dict, task: str, text: str, seed: int, **context) -> Request:
    messages = ({"role": "user", "content": [{"type": "text", "text": text}]},)
    return Request(rec["id"], messages, (), 0, schema.seed_for(seed, task, rec["id"]), {"task": task, **context})


def _ask(records: list[dict], task: str, render, model: dict | ModelRole, seed: int, journal: str | None,
         loaded: LoadedModel | None, **context_of):
    _, version = prompts.load(task)
    reqs = [_text_request(r, task, render(r), seed, **{k: f(r) for k, f in context_of.items()}) for r in records]
    role = ModelRole.from_config(model, f"models.{task}")  # models.clean, models.extract
    keys = [request_key(role, q, version) for q in reqs]
    factory = loaded.factory(role) if loaded else lambda: make_backend(role)
    responses = generate(factory, reqs, keys, journal)
    return [responses[k] for k in keys]


def clean_records(records: list[dict], model: dict | None, seed: int, journal: str | None = None,
                  loaded: LoadedModel | None = None):
    """Rewrite questions in place; returns the records flagged unanswerable (removed from ``records``)."""
    if not model:
        for r in records:
            r["clean_status"] = "skipped"
        return []
    responses = _ask(records, "clean", lambda r: prompts.render("clean", question=r["question"]), model, seed,
                     journal, loaded, question=lambda r: r["question"])
    unanswerable = []
    for rec, resp in zip(records, responses):
        if resp.finish_reason != "stop":
            rec["clean_status"] = f"failed:{resp.finish_reason}"
            continue
        parsed = parse_cleaned(resp.text)
        if parsed is None:
            rec["clean_status"] = "unparsed"
        elif parsed[0] == "UNANSWERABLE":
            unanswerable.append(rec)
        else:
            rec["clean_status"] = "unchanged" if parsed[1] == rec["question"] else "cleaned"
            rec["question"], rec["language"] = parsed[1], "en"  # the cleaner writes English
    flagged = {id(r) for r in unanswerable}
    records[:] = [r for r in records if id(r) not in flagged]
    return unanswerable


def extract_answers(records: list[dict], model: dict | None, seed: int, journal: str | None = None,
                    loaded: LoadedModel | None = None):
    """Fill the answer of records that have only a solution; returns (record, why) for those left without."""
    todo = [r for r in records if not r["answer"]]
    for r in records:
        r["answer_from"] = "source" if r["answer"] else None
    if not todo:
        return []
    if not model:
        return [(r, "no answer and no extract model configured") for r in todo]
    responses = _ask(todo, "extract", lambda r: prompts.render("extract", question=r["question"],
                                                                 solution=r["solution"]),
                     model, seed, journal, loaded, question=lambda r: r["question"], solution=lambda r: r["solution"],
                     answer_type=lambda r: r["answer_type"], choices=lambda r: r["choices"])
    missing = []
    for rec, resp in zip(todo, responses):
        answer = parse_extracted(resp.text) if resp.finish_reason == "stop" else None
        if answer is None:
            missing.append((rec, f"extraction {resp.finish_reason}: {resp.error or resp.text[-200:]}"))
            continue
        rec["answer"], rec["answer_from"] = answer, "llm"
    return missing


def finish_types(rec: dict) -> str | None:
    """Detect a missing answer type; a choice answered by its option text becomes the letter.
    Returns why the record cannot be used (a choice answer naming none of its options), or None."""
    if not rec["answer_type"]:
        rec["answer_type"] = detect_answer_type(rec["answer"], rec["choices"])
    if rec["answer_type"] == "choice" and rec["choices"]:
        letter = to_letter(rec["answer"], rec["choices"])
        if letter is None:
            return f"answer {rec['answer']!r} names none of the {len(rec['choices'])} options"
        rec["answer"] = letter
    return None


def clean_shard(std: str, drops: str, out: str, dropped_out: str, clean_model: dict | None,
                extract_model: dict | None, seed: int, journal: str | None = None) -> dict:
    """One standardised shard → cleaned records, minus dedup/decontamination drops.

    Writes ``out`` (CLEAN layout, input order) and ``dropped_out`` (the records this step removed:
    duplicates and contaminated ones as dedup decided, unanswerable ones, and ones whose answer
    could not be extracted). Returns {kept, dropped: {category: {reason: n}}, clean_status: {...}}.
    """
    records, verdicts = _read(std, drops)
    dropped = [dropped_row(r["source"], r["original_id"], verdicts[r["id"]]["reason"],
                           _match(verdicts[r["id"]]), verdicts[r["id"]]["category"], r["question"], r["answer"], r["id"])
               for r in records if r["id"] in verdicts]
    records = [r for r in records if r["id"] not in verdicts]
    for r in clean_records(records, clean_model, seed, _journal(journal, "clean")):
        dropped.append(dropped_row(r["source"], r["original_id"], "unanswerable", "flagged by the cleaning model",
                                   "excluded", r["question"], r["answer"], r["id"]))
    missing = extract_answers(records, extract_model, seed, _journal(journal, "extract"))
    gone = {id(r) for r, _ in missing}
    for r, why in missing:
        dropped.append(dropped_row(r["source"], r["original_id"], "missing_answer", why, "quarantined",
                                   r["question"], r["solution"], r["id"]))
    records = [r for r in records if id(r) not in gone]
    for r in records:
        if why := finish_types(r):
            gone.add(id(r))
            dropped.append(dropped_row(r["source"], r["original_id"], "answer_not_an_option", why, "quarantined",
                                       r["question"], r["answer"], r["id"]))
    records = [r for r in records if id(r) not in gone]
    schema.write_table(pa.Table.from_pylist(records, schema=CLEAN), out)
    dropped.sort(key=lambda r: (r["original_id"], r["reason"]))
    schema.write_table(pa.Table.from_pylist(dropped, schema=DROPPED), dropped_out)
    status: dict[str, int] = {}
    for r in records:
        status[r["clean_status"]] = status.get(r["clean_status"], 0) + 1
    counts = {"kept": len(records), "dropped": tally(dropped), "clean_status": status}
    log.info("%s: %s", out, counts)
    return counts


def generate_group(stds: list[str], journals: list[str], drops: str, clean_model: dict | None,
                   extract_model: dict | None, seed: int) -> dict:
    """The model calls of ``clean_shard`` for several shards in one job: every cleaning request with
    one load of the cleaning model, then every extraction with one load of the extraction model.
    Responses go to each shard's journals (``journals[i]`` for ``stds[i]``), where the per-shard jobs
    find them. Reads no image. Returns {shards, rows, unanswerable, to_extract}."""
    loaded = LoadedModel()
    try:
        shards = []
        for std in stds:
            columns = [c for c in pq.read_schema(std).names if c != "image"]
            records, verdicts = _read(std, drops, columns)
            shards.append([r for r in records if r["id"] not in verdicts])
        unanswerable = sum(len(clean_records(records, clean_model, seed, _journal(j, "clean"), loaded))
                           for records, j in zip(shards, journals))
        to_extract = sum(1 for records in shards for r in records if not r["answer"])
        for records, j in zip(shards, journals):
            extract_answers(records, extract_model, seed, _journal(j, "extract"), loaded)
    finally:
        loaded.close()
    counts = {"shards": len(stds), "rows": sum(map(len, shards)), "unanswerable": unanswerable,
              "to_extract": to_extract}
    log.info("%s", counts)
    return counts


def _read(std: str, drops: str, columns: list[str] | None = None) -> tuple[list[dict], dict[str, dict]]:
    """A standardised shard's records, and dedup's verdicts on those of them it dropped."""
    records = pq.read_table(std, columns=columns).to_pylist()
    ids = {r["id"] for r in records}
    return records, {d["id"]: d for d in pq.read_table(drops).to_pylist() if d["id"] in ids}


def _match(drop: dict) -> str:
    return f"{drop['matched_source']}/{drop['matched_id']}" + (
        f" (distance {drop['distance']})" if drop.get("distance") is not None else "")


def _journal(base: str | None, task: str) -> str | None:
    return base.replace(".jsonl", f".{task}.jsonl") if base else None
