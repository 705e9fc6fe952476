"""The verification chain over a model's response (answer extraction and equivalence are
``mmfr.answers``).

``verify_response`` runs the MMFineReason selection checks in order: template, CoT length,
repetition, answer extraction, then rule-based equivalence (choice letters, numbers with a
tolerance, math-verify for expressions, normalised text). The LLM judge that follows the rule
checks is built from ``judge_messages`` and read back strictly with ``parse_judgment``;
``format_score`` is the OpenMMReasoner format reward.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from mmfr import prompts, schema
from mmfr.answers import answers_match, extract_answer, has_repeated_ngram, last_boxed, split_response, Tolerance
from mmfr.generate import generate, group_job, make_backend, ModelRole, Request, request_key
from mmfr.models import count_tokens, limit_tokenizer_threads
from mmfr.prompts import render


@dataclass(frozen=True)
class VerifyConfig(Tolerance):
    """Thresholds of the chain (and the numeric tolerance of its answer checks); the defaults are
    the MMFineReason selection rules."""

    min_cot_words: int = 100
    ngram: int = 50
    max_ngram_repeats: int = 3
    require_template: bool = True  # training traces; False for evaluation and pass rates


# --------------------------------------------------------------------------- the chain

def verify_response(text: str, answer: str, answer_type: str, choices: list[str],
                    cfg: VerifyConfig, check_answer: bool = True) -> dict:
    """Run the chain on one response against the gold ``answer``.

    Returns {'verdict': 'correct'|'wrong'|'rejected', 'decided_by', 'extracted', 'extract_method',
    'reason' ('' when correct), 'cot_words'}. Order: template (with cfg.require_template: a leading
    <think>…</think>, then <answer>…</answer>) → length (CoT words < min_cot_words, with the template
    only) → repetition of word n-grams in the CoT (the think part, else the whole text) →
    extraction (nothing found: wrong/extract) → ``answers_match``. ``check_answer`` False (a source
    with no usable ground truth, ``sources[].check_answer``): what passes the checks before the
    answer is admitted as correct/unchecked, its answer extracted but compared with nothing.
    """
    think, tagged = split_response(text)
    words = (think if think is not None else text).split()
    out = {"verdict": "rejected", "decided_by": "template", "extracted": None,
           "extract_method": "none", "reason": "", "cot_words": len(words)}
    if cfg.require_template:
        if think is None:
            return {**out, "reason": "no well-formed <think>…</think> block opening the response"}
        if tagged is None:
            return {**out, "reason": "no non-empty <answer>…</answer> after </think>"}
        if len(words) < cfg.min_cot_words:
            return {**out, "decided_by": "length",
                    "reason": f"CoT has {len(words)} words < {cfg.min_cot_words}"}
    if has_repeated_ngram(words, cfg.ngram, cfg.max_ngram_repeats):
        return {**out, "decided_by": "repetition",
                "reason": f"a {cfg.ngram}-gram of words occurs >= {cfg.max_ngram_repeats} times"}
    extracted, method = extract_answer(text, answer_type, choices)
    out.update(extracted=extracted, extract_method=method)
    if not check_answer:
        return {**out, "verdict": "correct", "decided_by": "unchecked"}
    if extracted is None:
        return {**out, "verdict": "wrong", "decided_by": "extract", "reason": "no answer found"}
    equal, how = answers_match(extracted, answer, answer_type, choices, cfg)
    reason = ("" if equal else f"comparing {extracted!r} with {answer!r} ran out of time" if how == "timeout"
              else f"{extracted!r} does not match {answer!r}")
    return {**out, "verdict": "correct" if equal else "wrong", "decided_by": how, "reason": reason}


# --------------------------------------------------------------------------- LLM judge and format

def judge_messages(question: str, reference: str, candidate: str) -> list[dict]:
    """Chat messages asking an LLM judge whether ``candidate`` means the same as ``reference``."""
    text = render("judge", question=question, reference=reference, candidate=candidate)
    return [{"role": "user", "content": text}]


class JudgeError(ValueError):
    """The judge's output holds no single, unambiguous JUDGMENT line."""


_BOLD = r"[ \t]*(?:\*\*)?[ \t]*"
_JUDGMENT = re.compile(rf"^{_BOLD}JUDGMENT:{_BOLD}(EQUIVALENT|DIFFERENT){_BOLD}$", re.M)


def parse_judgment(text: str) -> bool:
    """True for 'JUDGMENT: EQUIVALENT', False for 'JUDGMENT: DIFFERENT'.

    Strict: after dropping everything up to the last </think>, exactly one line must match
    (case-sensitive keyword, optional surrounding whitespace / markdown bold). No line, both, or
    several raise JudgeError with the text's tail: a judge that fails to answer is an error."""
    verdicts = _JUDGMENT.findall(text.rpartition("</think>")[2])
    if len(verdicts) != 1:
        found = f"{len(verdicts)} JUDGMENT lines" if verdicts else "no JUDGMENT line"
        raise JudgeError(f"judge output has {found}; tail: {text[-300:]!r}")
    return verdicts[0] == "EQUIVALENT"


def format_score(text: str) -> float:
    """OpenMMReasoner format reward.

    1.0: a well-formed leading <think>…</think> followed by <answer>…</answer> or \\boxed{};
    0.8: an <answer>…</answer> or \\boxed{} present but the think block missing/unclosed/malformed;
    0.0: otherwise (including a closed think block with no final answer after it)."""
    think, tagged = split_response(text)
    final = tagged is not None or last_boxed(text.rpartition("</think>")[2]) is not None
    if think is not None:
        return 1.0 if final else 0.0
    return 0.8 if final else 0.0


# ---------------------------------------------------------------- the verify stage, one shard

def verify_shard(std: str, traces: str, captions: str, tokenizer_json: str, out: str, checks: dict,
                 judge: dict | ModelRole | None = None, seed: int = 0, journal: str | None = None,
                 check_answer: bool = True, threads: int | None = None) -> dict:
    """Verify every trace of a shard: generation outcome → template → length → repetition →
    extraction → rule checks → (optional) LLM judge for rule-level disagreements; with
    ``check_answer`` False (the source's ground truth is unusable) no rule check or judge.

    A trace the teacher did not finish (hit max tokens, empty, backend error) is rejected with
    decided_by='generation'; it never reaches the answer check. An answer comparison that runs out
    of time is wrong with decided_by='timeout' (counted as 'wrong/timeout') unless the judge, when
    there is one, finds the answers equivalent; a judgment the judge did not give or that does not
    parse is 'judge_error/judge'. Token counts use the teacher's tokenizer (``tokenizer_json``) on
    at most ``threads`` threads (the job's, capped here before anything in the process encodes a
    batch: see ``limit_tokenizer_threads``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    limit_tokenizer_threads(threads)
    records, rows = _rule_checks(std, traces, checks, check_answer)
    caption_of = {r["id"]: r["caption"] for r in pq.read_table(captions, columns=["id", "caption"]).to_pylist()}
    if judge:
        _judge(rows, records, ModelRole.from_config(judge, "models.judge"), seed, journal)
    thinks = [split_response(r["response"])[0] or "" for r in rows]
    for r, n_cot, n_cap in zip(rows, count_tokens(tokenizer_json, thinks, threads),
                               count_tokens(tokenizer_json, [caption_of.get(r["id"], "") for r in rows], threads)):
        r["cot_tokens"], r["caption_tokens"] = n_cot, n_cap
    rows.sort(key=lambda r: (r["id"], r["sample_index"]))
    table = pa.Table.from_pylist(rows, schema=schema.VERIFIED)
    schema.write_table(table, out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r['verdict']}/{r['decided_by']}"] = counts.get(f"{r['verdict']}/{r['decided_by']}", 0) + 1
    logging.getLogger(__name__).info("verified %s: %s", out, counts)
    return counts


def _rule_checks(std: str, traces: str, checks: dict, check_answer: bool = True) -> tuple[dict, list[dict]]:
    """A shard's records by id, and one row per trace with the verdict of the rule checks."""
    import pyarrow.parquet as pq

    cfg = VerifyConfig(**{k: v for k, v in checks.items() if k in VerifyConfig.__dataclass_fields__})
    records = {r["id"]: r for r in pq.read_table(std, columns=["id", "question", "answer", "answer_type",
                                                                "choices"]).to_pylist()}
    rows = []
    for t in pq.read_table(traces).to_pylist():
        rec = records[t["id"]]
        if t["finish_reason"] != "stop":
            v = {"verdict": "rejected", "decided_by": "generation", "extracted": None, "extract_method": "none",
                 "reason": f"teacher output {t['finish_reason']}" + (f": {t['error']}" if t["error"] else ""),
                 "cot_words": 0}
        else:
            v = verify_response(t["response"], rec["answer"], rec["answer_type"], rec["choices"], cfg, check_answer)
        rows.append({"id": t["id"], "source": t["source"], "sample_index": t["sample_index"],
                     "response": t["response"], "finish_reason": t["finish_reason"], **{k: v[k] for k in (
                         "verdict", "decided_by", "extracted", "extract_method", "reason", "cot_words")}})
    return records, rows


def judge_group(stds: list[str], traces: list[str], journals: list[str], checks: dict, judge: dict | ModelRole,
                seed: int, check_answer: bool = True) -> dict:
    """The judge calls of ``verify_shard`` for several shards in one job, with one load of the judge:
    the rule checks run again here (they are cheap), and each judgment goes to its shard's journal
    (``journals[i]`` for ``stds[i]``), where the shard's verify job finds and reads it (and names a
    judgment it cannot read)."""

    role = ModelRole.from_config(judge, "models.judge")

    def run(part, loaded):
        std, trace, journal = part
        records, rows = _rule_checks(std, trace, checks, check_answer)
        _, reqs, keys = _judge_requests(rows, records, role, seed)
        return list(generate(loaded.factory(role), reqs, keys, journal).values()) if reqs else []

    return group_job(list(zip(stds, traces, journals)), run)


def _judge_requests(rows: list[dict], records: dict, judge: ModelRole, seed: int):
    """The rows the judge is asked about (answers the rules call wrong), its requests and their keys."""

    todo = [r for r in rows if r["verdict"] == "wrong"
            and r["decided_by"] in ("choice", "numeric", "math_verify", "text", "timeout")]
    _, version = prompts.load("judge")
    reqs = []
    for r in todo:
        rec = records[r["id"]]
        question = prompts.question_text(rec["question"], rec["choices"])
        reqs.append(Request(r["id"], tuple(judge_messages(question, rec["answer"], r["extracted"] or "")), (),
                            r["sample_index"], schema.seed_for(seed, "judge", r["id"], r["sample_index"])))
    return todo, reqs, [request_key(judge, q, version) for q in reqs]


def _judge(rows: list[dict], records: dict, judge: ModelRole, seed: int, journal: str | None) -> None:
    """Ask the LLM judge about answers the rules call wrong (or could not compare in time). A judge
    that gives no answer, or none that parses, leaves the trace neither correct nor wrong: verdict
    'judge_error', with the reason (counted as 'judge_error/judge'; kept out of every subset and out
    of DPO's wrong answers). The shard goes on: the journal holds that reply, so a rerun would meet
    it again."""

    todo, reqs, keys = _judge_requests(rows, records, judge, seed)
    if not todo:
        return
    answers = generate(lambda: make_backend(judge), reqs, keys, journal)
    failed = 0
    for r, k in zip(todo, keys):
        resp = answers[k]
        try:
            if resp.finish_reason != "stop":
                raise JudgeError(f"judge gave no answer ({resp.finish_reason}: {resp.error})")
            equivalent = parse_judgment(resp.text)
        except JudgeError as e:
            r.update(verdict="judge_error", decided_by="judge", reason=str(e)[:300])
            failed += 1
            continue
        if equivalent:
            r.update(verdict="correct", decided_by="judge", reason="")
        else:
            r["decided_by"] = "judge"
    if failed:
        logging.getLogger(__name__).warning("%d of %d judgments unreadable: verdict judge_error", failed, len(todo))
