"""Annotation: dense captions (instruct teacher) and reasoning traces (thinking teacher),
both through the one generation interface. The thinking teacher does not see the caption.
Optionally (Long Grounded Thoughts), a text reasoning model expands each finished trace after a
cue such as "Wait,": ``expand_shard``."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import images, prompts, schema
from mmfr.generate import generate, group_job, LoadedModel, make_backend, ModelRole, Request, request_key
from mmfr.schema import CAPTIONS, TRACES
from mmfr.answers import extract_answer, has_repetition, split_response

log = logging.getLogger(__name__)


def _context(rec: dict, task: str) -> dict:
    return {"task": task, "metadata": json.loads(rec["metadata"]), "answer": rec["answer"],
            "answer_type": rec["answer_type"], "choices": rec["choices"],
            "original_question": rec["original_question"],  # what a release row is found by
            "image_phash": rec["image_phash"]}


def _requests(records: list[dict], task: str, text_of, n: int, seed: int, role: ModelRole) -> list[Request]:
    out = []
    encode = partial(images.for_model, format=role.option("image_format", "stored"), quality=role.option("image_quality", 90))
    for rec in records:
        messages = ({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text_of(rec)}]},)
        image = encode(rec["image"]["bytes"])
        for i in range(n):
            out.append(Request(rec["id"], messages, (image,), i,
                               schema.seed_for(seed, task, rec["id"], i), _context(rec, task)))
    return out


def _run(records, task, text_of, n, role: ModelRole, seed, journal_path, prompt_name,
         loaded: LoadedModel | None = None):
    _, prompt_version = prompts.load(prompt_name)
    reqs = _requests(records, task, text_of, n, seed, role)
    keys = [request_key(role, r, prompt_version) for r in reqs]
    backend = loaded.factory(role) if loaded else lambda: make_backend(role)
    responses = generate(backend, reqs, keys, journal_path)
    return reqs, [responses[k] for k in keys]


def _captions(records: list[dict], role: ModelRole, seed: int, journal: str | None,
              loaded: LoadedModel | None = None):
    caption_prompt = prompts.render("caption")
    return _run(records, "caption", lambda r: caption_prompt, 1, role, seed, journal, "caption", loaded)


def caption_shard(shard: str, out: str, model: dict | ModelRole, seed: int, journal: str | None = None) -> int:
    """Captions of a shard's records by ``model`` (the ``models.caption`` block)."""
    role = ModelRole.from_config(model, "models.caption")
    records = pq.read_table(shard).to_pylist()
    reqs, resps = _captions(records, role, seed, journal)
    source = {r["id"]: r["source"] for r in records}
    rows = [{"id": q.sample_id, "source": source[q.sample_id], "caption": p.text, "finish_reason": p.finish_reason,
             "n_tokens": p.n_tokens, "error": p.error, "model": role.model} for q, p in zip(reqs, resps)]
    schema.write_table(pa.Table.from_pylist(rows, schema=CAPTIONS), out)
    return len(rows)


def caption_group(shards: list[str], journals: list[str], model: dict | ModelRole, seed: int) -> dict:
    """The captions of several shards in one job, with one load of the teacher: responses go to each
    shard's journal (``journals[i]`` for ``shards[i]``), where ``caption_shard`` finds them."""

    role = ModelRole.from_config(model, "models.caption")

    def run(part, loaded):
        shard, journal = part
        return _captions(pq.read_table(shard).to_pylist(), role, seed, journal, loaded)[1]

    return group_job(list(zip(shards, journals)), run)


REGENERATE_DEFAULTS = {"tries": 0, "when": [], "ngram": 50, "max_ngram_repeats": 3}


def flaw(text: str, finish_reason: str, spec: dict) -> str | None:
    """Why a finished trace is to be generated again (``annotate.regenerate.when``): ``template`` (no
    well-formed think block, or no answer after it) or ``repetition`` (a word n-gram of the CoT
    repeated as often as verify rejects); None when neither, or when the teacher did not finish."""
    if finish_reason != "stop":
        return None
    think, tagged = split_response(text)
    if "template" in spec["when"] and (think is None or tagged is None):
        return "template"
    if "repetition" in spec["when"] and has_repetition(think if think is not None else text, spec["ngram"],
                                                        spec["max_ngram_repeats"]):
        return "repetition"
    return None


def _regenerate(reqs, resps, role: ModelRole, seed: int, journal: str | None, spec: dict) -> dict:
    """Ask again, with another seed, for each trace with a flaw, up to ``spec["tries"]`` times; the
    last answer stands. Every attempt is journaled under its own key (the seed differs), so a
    resumed job asks nothing twice. Returns the count of traces asked again per try and flaw."""
    _, prompt_version = prompts.load("trace")
    counts: dict[str, int] = {}
    for attempt in range(1, spec["tries"] + 1):
        redo = [(i, why) for i, p in enumerate(resps) if (why := flaw(p.text, p.finish_reason, spec))]
        if not redo:
            break
        again = [replace(reqs[i], seed=schema.seed_for(seed, f"trace again {attempt}", reqs[i].sample_id,
                                                       reqs[i].sample_index)) for i, _ in redo]
        keys = [request_key(role, r, prompt_version) for r in again]
        done = generate(lambda: make_backend(role), again, keys, journal)
        for (i, why), key in zip(redo, keys):
            resps[i] = done[key]
            counts[f"try {attempt}: {why}"] = counts.get(f"try {attempt}: {why}", 0) + 1
    return counts


def trace_shard(shard: str, out: str, model: dict | ModelRole, n_samples: int, seed: int,
                journal: str | None = None, regenerate: dict | None = None) -> int:
    """The thinking teacher's traces of a shard's records, ``n_samples`` each; with ``regenerate``
    (``annotate.regenerate``: tries, when) a trace with a flaw is asked for again with another seed."""
    records = pq.read_table(shard).to_pylist()

    def text_of(rec):
        return prompts.render("trace", question=prompts.question_text(rec["question"], rec["choices"]))

    role = ModelRole.from_config(model, "models.trace")
    reqs, resps = _run(records, "trace", text_of, n_samples, role, seed, journal, "trace")
    spec = {**REGENERATE_DEFAULTS, **(regenerate or {})}
    if spec["tries"]:
        log.info("traces asked for again: %s", _regenerate(reqs, resps, role, seed, journal, spec))
    source = {r["id"]: r["source"] for r in records}
    rows = [{"id": q.sample_id, "source": source[q.sample_id], "sample_index": q.sample_index,
             "response": p.text, "finish_reason": p.finish_reason, "n_tokens": p.n_tokens, "error": p.error,
             "model": role.model} for q, p in zip(reqs, resps)]
    schema.write_table(pa.Table.from_pylist(rows, schema=TRACES), out)
    counts = {}
    for p in resps:
        counts[p.finish_reason] = counts.get(p.finish_reason, 0) + 1
    log.info("traces %s: %s", out, counts)
    return len(rows)


# --------------------------------------------------------------------------- LGT expansion

EXPAND_DEFAULTS = {"cue": "Wait,", "require_cue": True}
_TAGS = re.compile(r"</?think>")
_ANSWER_TAG = re.compile(r"<answer>.*?(?:</answer>|$)", re.S)


def short_reasoning(text: str) -> str:
    """The reasoning of a short trace without its tags: the think block when it is well formed,
    else the text with think tags and answer tags taken out (the expansion rewraps it)."""

    think, _ = split_response(text)
    if think is None:
        think = _TAGS.sub("", _ANSWER_TAG.sub("", text))
    return think.strip()


def continuation(reply: str, cue: str) -> str | None:
    """The part of an expansion reply that continues the short trace: the reply from the cue on.

    The cue must open the reply (a thinking model's reasoning, its ``<think>`` tag aside), or open
    what the model wrote after a private reasoning block of its own (which is then dropped);
    otherwise None. Matching ignores case and leading whitespace."""
    body = reply.lstrip().removeprefix("<think>").lstrip()
    if body.lower().startswith(cue.lower()):
        return body
    _, sep, after = body.partition("</think>")
    after = after.lstrip()
    if sep and after.lower().startswith(cue.lower()):
        return after
    return None


def expanded_trace(short: str, cont: str) -> str:
    """Short reasoning and its continuation as one trace: ``<think>`` short, then the continuation
    verbatim (which closes the think block and gives the answer, or fails verification)."""
    return f"<think>\n{short}\n\n{cont}" if short else f"<think>\n{cont}"


def expand_shard(records_path: str, traces_path: str, out: str, model: dict | ModelRole, spec: dict | None, seed: int,
                 journal: str | None = None) -> dict:
    """Long Grounded Thoughts trace expansion for one shard: a text reasoning model continues each
    finished ("stop") trace after a cue such as "Wait,", re-checking it, and the short reasoning plus
    its continuation becomes the trace. Written with the columns of the traces, so ``verify`` reads
    either. Traces that did not finish pass through unchanged; an expansion that did not finish keeps
    its finish_reason; one that does not start from the cue is recorded as an error (with
    ``require_cue``, the default) or kept as it is. The short trace enters without its tags, so
    only the continuation decides the format verify checks. Returns counts of the rows by outcome."""

    spec = {**EXPAND_DEFAULTS, **(spec or {})}
    cue = spec["cue"]
    records = {r["id"]: r for r in pq.read_table(records_path).to_pylist()}
    traces = pq.read_table(traces_path).to_pylist()
    _, prompt_version = prompts.load("expand")
    todo, reqs = [], []
    for t in traces:
        if t["finish_reason"] != "stop":
            continue
        rec = records[t["id"]]
        short = short_reasoning(t["response"])
        short_answer, _ = extract_answer(t["response"], rec["answer_type"], rec["choices"] or [])
        text = prompts.render("expand", question=prompts.question_text(rec["question"], rec["choices"]),
                              reasoning=short or "(no reasoning written)",
                              short_answer=short_answer or "(none stated)", cue=cue)
        context = {**_context(rec, "expand"), "short": short, "short_answer": short_answer, "cue": cue}
        reqs.append(Request(t["id"], ({"role": "user", "content": text},), (), t["sample_index"],
                            schema.seed_for(seed, "expand", t["id"], t["sample_index"]), context))
        todo.append((t, short))
    role = ModelRole.from_config(model, "models.expand")
    keys = [request_key(role, r, prompt_version) for r in reqs]
    responses = generate(lambda: make_backend(role), reqs, keys, journal)
    expanded = {}
    for (t, short), k in zip(todo, keys):
        p = responses[k]
        row = {**t, "finish_reason": p.finish_reason, "n_tokens": p.n_tokens, "error": p.error,
               "model": role.model}
        cont = continuation(p.text, cue)
        if cont is None and p.text.strip():
            cont = p.text.lstrip().removeprefix("<think>").lstrip()
            if p.finish_reason == "stop" and spec["require_cue"]:
                row.update(finish_reason="error", error=f"expansion does not begin with the cue {cue!r}")
        row["response"] = expanded_trace(short, cont) if cont else ""
        expanded[(t["id"], t["sample_index"])] = row
    rows = [expanded.get((t["id"], t["sample_index"]), t) for t in traces]
    schema.write_table(pa.Table.from_pylist(rows, schema=TRACES), out)
    counts: dict[str, int] = {}
    for t, r in zip(traces, rows):
        outcome = r["finish_reason"] if t["finish_reason"] == "stop" else f"passed_through/{t['finish_reason']}"
        counts[outcome] = counts.get(outcome, 0) + 1
    log.info("expanded %s: %s", out, counts)
    return counts
