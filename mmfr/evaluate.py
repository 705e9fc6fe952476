"""Evaluation: a model answers each benchmark item through the generation interface (greedy by
default), the benchmark's protocol scores the answer (``mmfr.benchmarks``), and an optional LLM judge
decides what the rules call wrong or cannot decide."""

from __future__ import annotations

import json
import logging
import re

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import prompts, schema
from mmfr.answers import LETTERS
from mmfr.benchmarks import aggregate, item_of, protocol_of, score_response
from mmfr.benchmarks.protocols import final_part
from mmfr.generate import generate, group_job, make_backend, ModelRole, Request, request_key
from mmfr.schema import ITEMS
from mmfr.student import ask, unfinished
from mmfr.verify import JudgeError

log = logging.getLogger(__name__)

NOBODY = ("undecided", "judge_error")  # verdicts no rule and no judge could give


def category(metadata: str) -> str:
    meta = json.loads(metadata or "{}")
    return str(meta.get("family") or meta.get("category") or meta.get("subject") or meta.get("tag") or "all")


def _questions(records: list[dict], spec: dict) -> list[str] | None:
    """The question text the protocol gives the model, per record (None: the student prompt's own)."""
    protocol = protocol_of(spec)
    if protocol.name == "generic":
        return None
    return [protocol.prompt(item_of(r)) for r in records]


def score_rows(records: list[dict], responses: list, spec: dict, score_truncated: bool = False) -> list[dict]:
    """One ITEMS row per record: the protocol's verdict on its response. A response cut at max
    tokens, empty or failed is not an answer (verdict 'truncated', 'empty', 'error') unless
    ``score_truncated``, then whatever answer it holds is scored like any other."""
    protocol = protocol_of(spec)
    rows = []
    for rec, resp in zip(records, responses):
        item = item_of(rec)
        v = unfinished(resp.finish_reason, score_truncated) or score_response(protocol, item, resp.text)
        group = item["metadata"].get(protocol.group_by) if protocol.group_by else None
        rows.append({"id": rec["id"], "benchmark": spec["name"], "category": category(rec["metadata"]),
                     "answer": rec["answer"], "response": resp.text, "finish_reason": resp.finish_reason,
                     "extracted": v["extracted"], "extract_method": v["extract_method"], "verdict": v["verdict"],
                     "decided_by": v["decided_by"], "correct": v["verdict"] == "correct",
                     "group": str(group if group is not None else rec["id"]),
                     "protocol": f"{protocol.name}/{protocol.version}"})
    return rows


def evaluate(bench: str, spec: dict, out: str, model: dict | ModelRole, seed: int, journal: str | None = None,
             score_truncated: bool = False, judge: dict | ModelRole | None = None) -> float:
    """Score ``model`` on benchmark file ``bench`` (config entry ``spec``); writes one row per item and
    returns the benchmark's score (worst-case over variants where the protocol says so)."""
    name = spec["name"]
    records = pq.read_table(bench).to_pylist()
    _, resps = ask(records, ModelRole.from_config(model, "evaluate.generation"), 1, seed, f"eval/{name}", journal,
                   questions=_questions(records, spec))
    rows = score_rows(records, resps, spec, score_truncated)
    if judge:
        judge_rows(rows, records, ModelRole.from_config(judge, "evaluate.judge"), seed, journal)
    rows.sort(key=lambda r: r["id"])
    schema.write_table(pa.Table.from_pylist(rows, schema=ITEMS), out)
    units, correct = aggregate(protocol_of(spec), rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("correct", "wrong", *NOBODY)}
    log.info("%s: score %.4f (%d of %d); verdicts %s", name, correct / max(1, units), correct, units, counts)
    return correct / max(1, units)


# --------------------------------------------------------------------------- the LLM judge

def judge_requests(rows: list[dict], records: list[dict], judge: ModelRole, seed: int):
    """The rows the judge is asked about (the rules' wrong and undecided answers, not unfinished
    responses), its requests and their keys."""
    _, version = prompts.load("verdict")
    by_id = {r["id"]: r for r in records}
    todo = [r for r in rows if r["verdict"] in ("wrong", "undecided") and r["decided_by"] != "finish_reason"]
    reqs = []
    for r in todo:
        rec = by_id[r["id"]]
        gold = rec["answer"]
        if rec["answer_type"] == "choice" and len(gold) == 1 and LETTERS.index(gold) < len(rec["choices"] or []):
            gold = f"{gold}. {rec['choices'][LETTERS.index(gold)]}"
        candidate = final_part(r["response"] or "")[0][-3000:]
        text = prompts.render("verdict", question=prompts.question_text(rec["question"], rec["choices"]),
                              reference=gold, candidate=candidate)
        reqs.append(Request(r["id"], ({"role": "user", "content": text},), (), 0,
                            schema.seed_for(seed, "eval_judge", r["id"], 0)))
    return todo, reqs, [request_key(judge, q, version) for q in reqs]


_VERDICT = re.compile(r"^\s*(?:\\boxed\{\s*)?\(?([ABC])\)?\s*\}?\s*\.?\s*$")


def parse_verdict(text: str) -> str:
    """A, B or C: the judge's reply after its thinking, one letter (boxed or bracketed allowed) on
    its last non-empty line. Anything else raises JudgeError."""
    lines = [ln for ln in text.rpartition("</think>")[2].strip().splitlines() if ln.strip()]
    if lines and (m := _VERDICT.match(lines[-1].strip("*` "))):
        return m[1]
    raise JudgeError(f"judge reply holds no single A/B/C verdict; tail: {text[-200:]!r}")


def judge_rows(rows: list[dict], records: list[dict], judge: ModelRole, seed: int, journal: str | None,
               loaded=None) -> None:
    """Ask the judge about what the rules call wrong or undecided: A makes the answer correct, B or C
    wrong (decided_by 'judge'); a judge that fails or answers unparsably gives 'judge_error'."""
    todo, reqs, keys = judge_requests(rows, records, judge, seed)
    if not todo:
        return
    backend = loaded.factory(judge) if loaded else lambda: make_backend(judge)
    answers = generate(backend, reqs, keys, journal)
    for r, k in zip(todo, keys):
        resp = answers[k]
        try:
            if resp.finish_reason != "stop":
                raise JudgeError(f"judge gave no answer ({resp.finish_reason}: {resp.error})")
            letter = parse_verdict(resp.text)
        except JudgeError as e:
            r.update(verdict="judge_error", decided_by=f"judge: {e}"[:300], correct=False)
            continue
        r.update(verdict="correct" if letter == "A" else "wrong", decided_by="judge", correct=letter == "A")


# --------------------------------------------------------------------------- grouped generation

def answer_group(benches: list[str], specs: list[dict], journals: list[str], model: dict | ModelRole,
                 seed: int) -> dict:
    """A model's answers to several benchmarks in one job, with one load of the model: they go to
    each benchmark's journal (``journals[i]`` for ``benches[i]``), where ``evaluate`` finds and
    scores them."""
    role = ModelRole.from_config(model, "evaluate.generation")

    def run(part, loaded):
        bench, spec, journal = part
        records = pq.read_table(bench).to_pylist()
        return ask(records, role, 1, seed, f"eval/{spec['name']}", journal, loaded=loaded,
                   questions=_questions(records, spec))[1]

    return group_job(list(zip(benches, specs, journals)), run)


def judge_group(benches: list[str], specs: list[dict], journals: list[str], model: dict | ModelRole,
                judge: dict | ModelRole, seed: int, score_truncated: bool = False) -> dict:
    """The judge's calls for a model's answers to several benchmarks in one job, with one load of the
    judge: the answers come from each benchmark's journal (``answer_group`` put them there), the
    rules score them again (cheap), and each judgment goes to the same journal, where the
    benchmark's ``evaluate`` job finds it."""
    student = ModelRole.from_config(model, "evaluate.generation")
    role = ModelRole.from_config(judge, "evaluate.judge")

    def run(part, loaded):
        bench, spec, journal = part
        records = pq.read_table(bench).to_pylist()
        _, resps = ask(records, student, 1, seed, f"eval/{spec['name']}", journal, questions=_questions(records, spec))
        _, reqs, keys = judge_requests(score_rows(records, resps, spec, score_truncated), records, role, seed)
        return list(generate(loaded.factory(role), reqs, keys, journal).values()) if reqs else []

    return group_job(list(zip(benches, specs, journals)), run)


# --------------------------------------------------------------------------- the table

DECIDED = ("rules", "judge", "nobody")


def decided(rows: list[dict]) -> dict[str, int]:
    """How many items the rules, the judge, or nobody (undecided, judge_error) decided; unfinished
    responses count with the rules (they are wrong by rule)."""
    out = dict.fromkeys(DECIDED, 0)
    for r in rows:
        out["nobody" if r["verdict"] in NOBODY else "judge" if r["decided_by"] == "judge" else "rules"] += 1
    return out


def score_table(items: dict[str, list[str]], out: str, specs: dict[str, dict],
                paper: dict[str, float] | None = None) -> list[dict]:
    """Score (percent) per benchmark and stage from per-item files, beside the paper's figures, with
    the protocol and its version and who decided the items; writes a TSV.

    ``items`` maps a stage (base, sft, gspo) to its per-item files; ``specs`` the benchmark names to
    their config entries."""
    stages = list(items)
    table: dict[str, dict] = {}
    for stage, paths in items.items():
        for path in paths:
            rows = pq.read_table(path).to_pylist()
            if not rows:
                continue
            name = rows[0]["benchmark"]
            protocol = protocol_of(specs.get(name, {"name": name}))
            units, correct = aggregate(protocol, rows)
            entry = table.setdefault(name, {"benchmark": name, "n": units,
                                            "protocol": f"{protocol.name}/{protocol.version}"})
            entry[stage] = round(100 * correct / max(1, units), 2)
            entry[f"{stage}_decided"] = " ".join(f"{k}={v}" for k, v in decided(rows).items())
    result = [table[b] for b in sorted(table)]
    if result:
        avg = {"benchmark": "Average", "n": sum(r["n"] for r in result), "protocol": ""}
        for s in stages:
            vals = [r[s] for r in result if s in r]
            avg[s] = round(sum(vals) / len(vals), 2) if vals else None
        result.append(avg)
    header = ["benchmark", "n", *stages, "paper", "protocol", *[f"{s}_decided" for s in stages]]
    with open(out, "w") as f:
        f.write("\t".join(header) + "\n")
        for r in result:
            ref = (paper or {}).get(r["benchmark"])
            values = [r["benchmark"], r["n"], *[r.get(s, "") for s in stages], "" if ref is None else ref,
                      r["protocol"], *[r.get(f"{s}_decided", "") for s in stages]]
            f.write("\t".join("" if v is None else str(v) for v in values) + "\n")
    return result


# --------------------------------------------------------------------------- re-scoring outputs

def rescore(records_path: str, spec: dict, out: str, judge: dict | ModelRole | None = None, seed: int = 0,
            journal: str | None = None) -> dict:
    """Score any model's outputs: each line of ``records_path`` is a record in the benchmark's
    published layout plus ``response`` (images are not needed). Writes one verdict line per input
    line, in order ({id, extracted, verdict, decided_by, correct}); a line that cannot be read or
    scored gets the verdict 'unreadable' with the reason, and is counted. Returns the counts."""
    from mmfr.adapters import AdapterError
    from mmfr.generate.core import Response

    protocol = protocol_of(spec)
    records, responses, lines = [], [], []
    with open(records_path, encoding="utf-8") as f:
        for index, text in enumerate(f):
            if not text.strip():
                continue
            line = {"id": None, "extracted": None, "verdict": "unreadable", "decided_by": "", "correct": False}
            lines.append(line)
            try:
                rec = json.loads(text)
                response = rec.pop("response")
                rows = protocol.read(rec, spec, index)
                if "item" in rec and len(rows) > 1:
                    rows = [rows[int(rec["item"])]]
                if len(rows) != 1:
                    raise AdapterError(f"the record gives {len(rows)} items (name one with \"item\": k)")
            except (ValueError, KeyError, TypeError, IndexError, AdapterError) as e:
                line["decided_by"] = f"line {index + 1}: {type(e).__name__}: {e}"[:300]
                continue
            row = {**rows[0], "id": rows[0]["original_id"]}
            line["id"] = row["id"]
            records.append(row)
            responses.append(Response("", row["id"], 0, response if isinstance(response, str) else "", "stop"))
    scored_rows = score_rows(records, responses, spec, score_truncated=True)
    if judge:
        judge_rows(scored_rows, records, ModelRole.from_config(judge, "evaluate.judge"), seed, journal)
    by_line = iter(scored_rows)
    with open(out, "w", encoding="utf-8") as f:
        for line in lines:
            if line["id"] is not None:
                r = next(by_line)
                line.update({k: r[k] for k in ("extracted", "verdict", "decided_by", "correct")})
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    units, correct = aggregate(protocol, scored_rows)
    counts = {"lines": len(lines), "correct": sum(x["correct"] for x in lines), "units": units,
              "units_correct": correct, **{v: sum(x["verdict"] == v for x in lines) for v in ("unreadable", *NOBODY)}}
    return counts
