"""The verification chain: the one place for answer extraction and answer equivalence.

``verify_response`` runs the MMFineReason selection checks in order: template, CoT length,
repetition, answer extraction, then rule-based equivalence (choice letters, numbers with a
tolerance, math-verify for expressions, normalised text). The LLM judge that follows the rule
checks is built from ``judge_messages`` and read back strictly with ``parse_judgment``;
``format_score`` is the OpenMMReasoner format reward.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass

from mmfr.prompts import render
from mmfr.schema import ANSWER_TYPES

MATH_VERIFY_TIMEOUT_S = 2  # per parse / per comparison, main thread only (signal.alarm)
UNGUARDED_MAX_CHARS = 300  # off the main thread (no alarm): longer expressions skip math-verify


@dataclass(frozen=True)
class VerifyConfig:
    """Thresholds of the chain; the defaults are the MMFineReason selection rules."""

    min_cot_words: int = 100
    ngram: int = 50
    max_ngram_repeats: int = 3
    rel_tol: float = 1e-4
    abs_tol: float = 1e-6
    require_template: bool = True  # training traces; False for evaluation and pass rates


# --------------------------------------------------------------------------- extraction

def _last_answer_tag(text: str) -> str | None:
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    if start < 0:
        return None
    return text[start + len("<answer>"):end].strip() or None


def split_response(text: str) -> tuple[str | None, str | None]:
    """Split a response into (think content, answer-tag content).

    The think part is present only when the response opens with ``<think>`` and holds exactly one
    ``<think>`` and one ``</think>``. The answer is the last non-empty ``<answer>…</answer>`` after
    the last ``</think>`` (anywhere when there is none), so answers inside the CoT never count.
    """
    body = text.lstrip()
    think = None
    if body.startswith("<think>") and body.count("<think>") == 1 and body.count("</think>") == 1:
        think = body[len("<think>"):body.index("</think>")].strip()
    return think, _last_answer_tag(text.rpartition("</think>")[2])


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) whose braces balance."""
    for start in reversed([m.end() for m in _BOXED.finditer(text)]):
        depth = 1
        for j in range(start, len(text)):
            depth += (text[j] == "{") - (text[j] == "}")
            if depth == 0:
                return text[start:j].strip()
    return None


_FINAL_PREFIX = re.compile(r"^\s*(?:\*\*)?\s*the final answer is\s*:?\s*(?:\*\*)?\s*", re.I)
_LETTER = r"\**\s*\(?([A-J])\)?\**"
_CHOICE_EXPLICIT = re.compile(
    rf"(?i:\banswer|\bcorrect (?:option|choice))(?:\s+is)?\**\s*[:：]?\s*{_LETTER}(?![\w(])")
_CHOICE_STANDALONE = re.compile(rf"\(([A-J])\)|^[ \t]*{_LETTER}[ \t]*(?:[.:)]|$)", re.M)
_NUMBER = re.compile(r"(?:(?<![\w.)])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")


def _choice_letter(text: str, choices: list[str]) -> str | None:
    allowed = {chr(ord("A") + i) for i in range(len(choices))} if choices else None
    for pattern in (_CHOICE_EXPLICIT, _CHOICE_STANDALONE):
        letters = [next(g for g in m.groups() if g) for m in pattern.finditer(text)]
        letters = [x for x in letters if allowed is None or x in allowed]
        if letters:
            return letters[-1]
    return None


def extract_answer(text: str, answer_type: str, choices: list[str]) -> tuple[str | None, str]:
    """Extract the final answer from a response.

    Order: content of the last <answer>…</answer> (if it holds a \\boxed{}, take the boxed content;
    strip a leading 'The final answer is:'), else the last \\boxed{…} (balanced braces, nested ok),
    else for answer_type 'choice' a standalone option letter (e.g. 'Answer: B', '(C)', 'B.'), else the
    last number in the text. Returns (answer or None, method) with method in
    {'answer_tag','boxed','choice_letter','last_number','none'}.
    """
    _, tagged = split_response(text)
    if tagged is not None:
        tagged = _last_boxed(tagged) or _FINAL_PREFIX.sub("", tagged)
        if tagged:
            return tagged, "answer_tag"
    if boxed := _last_boxed(text):
        return boxed, "boxed"
    if answer_type == "choice" and (letter := _choice_letter(text, choices)):
        return letter, "choice_letter"
    if numbers := _NUMBER.findall(text):
        return numbers[-1], "last_number"
    return None, "none"


# --------------------------------------------------------------------------- equivalence

_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_MATH_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _strip_math(s: str) -> str:
    """Answer text without a 'The final answer is:' prefix, math delimiters or a final period."""
    s = _FINAL_PREFIX.sub("", s.strip()).rstrip(". ")
    for left, right in _MATH_DELIMS:
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            return s[len(left):-len(right)].strip()
    return s


def _plain(s: str) -> str:
    return _LATEX_WRAPPER.sub(r"\1", _strip_math(s)).strip()


def _normalize_text(s: str) -> str:
    s = re.sub(r"[^\w\s]", " ", _plain(s).lower())
    return " ".join(w for w in s.split() if w not in ("a", "an", "the"))


_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(_NUM)
_FRACTION = re.compile(rf"([-+]?)\\[dt]?frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}|({_NUM})\s*/\s*({_NUM})")
_UNIT_TAIL = re.compile(r"(?!(?:pi|sqrt|e|i)\b)[A-Za-zµΩ°][\w°²³/^{}·.\s-]*")
_NUMERIC_NOISE = re.compile(r"\\[,!;:]|\{,\}|\^\s*\{?\\circ\}?|\\circ|\\degree|°|\\?%")


def _to_number(s: str) -> tuple[float, bool] | None:
    """(value, is_percent) of a plain numeric answer: commas, %, units, \\frac and a/b allowed."""
    s = _plain(s).replace("≈", "=").rpartition("=")[2]
    percent = "%" in s
    s = _NUMERIC_NOISE.sub("", s.replace("\\ ", " ")).strip()
    if m := _FRACTION.fullmatch(s):
        sign, num, den = (m[1], m[2], m[3]) if m[2] else ("", m[4], m[5])
        den_value = float(den.replace(",", ""))
        if den_value == 0:
            return None
        return (-1 if sign == "-" else 1) * float(num.replace(",", "")) / den_value, percent
    m = _NUM_RE.match(s)
    if not m or (tail := s[m.end():].strip()) and not _UNIT_TAIL.fullmatch(tail):
        return None
    return float(m.group().replace(",", "")), percent


def _numbers_close(p: tuple[float, bool], g: tuple[float, bool], cfg: VerifyConfig) -> bool:
    """Equal within tolerance; a percentage also matches its fraction (50% ~ 50 ~ 0.5)."""
    def forms(value, percent):
        return (value, value / 100) if percent else (value,)
    return any(math.isclose(a, b, rel_tol=cfg.rel_tol, abs_tol=cfg.abs_tol)
               for a in forms(*p) for b in forms(*g))


_RISKY = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{?\s*\d{4,}|\d{3,}\s*!")


def _math_verify(pred: str, gold: str) -> bool | None:
    """math-verify equivalence of two LaTeX answers, or None where either side does not parse.

    math-verify times out with signal.alarm, which works on the main thread only; elsewhere it runs
    without a timeout, so long or explosive inputs (power towers, huge factorials) are refused."""
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main and (len(pred) + len(gold) > UNGUARDED_MAX_CHARS or _RISKY.search(pred + gold)):
        return None
    from math_verify import parse, verify

    timeout = MATH_VERIFY_TIMEOUT_S if on_main else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # a parser bug on odd input must not stop the chain
        return None


def _choice_index(s: str, choices: list[str], cfg: VerifyConfig) -> int | None:
    """The option an answer names: a letter ('B', '(b)', 'Option B', 'B. text') or an option's text."""
    plain = _plain(s)
    letter = re.fullmatch(r"(?:(?i:option|choice|answer)\s*:?\s*)?\(?([A-Za-z])\)?", plain)
    if not letter and choices:
        norm = _normalize_text(plain)
        texts = [_normalize_text(c) for c in choices]
        if norm in texts:
            return texts.index(norm)
    letter = letter or re.match(r"\(?([A-Z])(?:\)|[.:]\s)", plain)
    if letter:
        index = ord(letter[1].upper()) - ord("A")
        return index if not choices or index < len(choices) else None
    if (value := _to_number(plain)) is not None:
        hits = [i for i, c in enumerate(choices) if (v := _to_number(c)) and _numbers_close(value, v, cfg)]
        if len(hits) == 1:
            return hits[0]
    return None


def answers_match(pred: str, gold: str, answer_type: str, choices: list[str],
                  cfg: VerifyConfig) -> tuple[bool, str]:
    """Rule checks. Returns (equal, method), method in {'choice','numeric','math_verify','text'}.

    choice: pred may be a letter, '(B)', 'B. text', or the option's text itself → compare to the gold
    letter (a gold naming no option raises ValueError: it is a data error);
    number: parse numbers (commas, %, units, LaTeX \\frac, simple fractions) → tolerance; fall back
    to math-verify; expression: math-verify (both wrapped in $…$, verify(gold, pred)) with timeouts,
    after cheap exact and numeric checks; text: normalised exact match (case, whitespace,
    punctuation, articles). An expression or number that math-verify cannot parse falls back to text.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")
    if answer_type == "choice":
        gold_index = _choice_index(gold, choices, cfg)
        if gold_index is None:
            raise ValueError(f"gold answer {gold!r} names none of the options {choices!r}")
        return _choice_index(pred, choices, cfg) == gold_index, "choice"
    if answer_type in ("number", "expression"):
        p, g = _strip_math(pred), _strip_math(gold)
        if answer_type == "expression" and re.sub(r"\s+", "", p) == re.sub(r"\s+", "", g):
            return True, "text"
        p_num, g_num = _to_number(p), _to_number(g)
        if p_num is not None and g_num is not None:
            return _numbers_close(p_num, g_num, cfg), "numeric"
        if (equal := _math_verify(p, g)) is not None:
            return equal, "math_verify"
    return _normalize_text(pred) == _normalize_text(gold), "text"


# --------------------------------------------------------------------------- the chain

_HASH_MOD = (1 << 61) - 1
_HASH_BASE = 1_000_003


def _has_repeated_ngram(words: list[str], n: int, max_repeats: int) -> bool:
    if n <= 0 or len(words) < n + max_repeats - 1:
        return False
    vocab: dict[str, int] = {}
    ids = [vocab.setdefault(w, len(vocab) + 1) for w in words]
    drop = pow(_HASH_BASE, n, _HASH_MOD)  # weight of the word leaving the window
    counts: dict[int, int] = {}
    h = 0
    for i, x in enumerate(ids):
        h = (h * _HASH_BASE + x - (ids[i - n] * drop if i >= n else 0)) % _HASH_MOD
        if i >= n - 1:
            counts[h] = c = counts.get(h, 0) + 1
            if c >= max_repeats:
                return True
    return False


def has_repetition(text: str, n: int, max_repeats: int) -> bool:
    """Whether some n-gram of whitespace-separated words occurs >= max_repeats times (overlaps count).

    One pass with a rolling polynomial hash mod 2**61-1 (collisions are negligible at CoT sizes)."""
    return _has_repeated_ngram(text.split(), n, max_repeats)


def verify_response(text: str, answer: str, answer_type: str, choices: list[str],
                    cfg: VerifyConfig) -> dict:
    """Run the chain on one response against the gold ``answer``.

    Returns {'verdict': 'correct'|'wrong'|'rejected', 'decided_by', 'extracted', 'extract_method',
    'reason' ('' when correct), 'cot_words'}. Order: template (with cfg.require_template: a leading
    <think>…</think>, then <answer>…</answer>) → length (CoT words < min_cot_words, with the template
    only) → repetition of word n-grams in the CoT (the think part, else the whole text) →
    extraction (nothing found: wrong/extract) → ``answers_match``.
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
    if _has_repeated_ngram(words, cfg.ngram, cfg.max_ngram_repeats):
        return {**out, "decided_by": "repetition",
                "reason": f"a {cfg.ngram}-gram of words occurs >= {cfg.max_ngram_repeats} times"}
    extracted, method = extract_answer(text, answer_type, choices)
    out.update(extracted=extracted, extract_method=method)
    if extracted is None:
        return {**out, "verdict": "wrong", "decided_by": "extract", "reason": "no answer found"}
    equal, how = answers_match(extracted, answer, answer_type, choices, cfg)
    reason = "" if equal else f"{extracted!r} does not match {answer!r}"
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
    final = tagged is not None or _last_boxed(text.rpartition("</think>")[2]) is not None
    if think is not None:
        return 1.0 if final else 0.0
    return 0.8 if final else 0.0


# ---------------------------------------------------------------- the verify stage, one shard
VERIFIED_COLUMNS = [("id", "string"), ("source", "string"), ("sample_index", "int64"), ("response", "string"),
                    ("finish_reason", "string"), ("verdict", "string"), ("decided_by", "string"),
                    ("extracted", "string"), ("extract_method", "string"), ("reason", "string"),
                    ("cot_words", "int64"), ("cot_tokens", "int64"), ("caption_tokens", "int64")]


def verify_shard(std: str, traces: str, captions: str, tokenizer_json: str, out: str, checks: dict,
                 judge: dict | None = None, seed: int = 0, journal: str | None = None) -> dict:
    """Verify every trace of a shard: generation outcome → template → length → repetition →
    extraction → rule checks → (optional) LLM judge for rule-level disagreements.

    A trace the teacher did not finish (hit max tokens, empty, backend error) is rejected with
    decided_by='generation'; it never reaches the answer check. Token counts use the teacher's
    tokenizer (``tokenizer_json``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmfr import schema
    from mmfr.models import count_tokens

    records, rows = _rule_checks(std, traces, checks)
    caption_of = {r["id"]: r["caption"] for r in pq.read_table(captions, columns=["id", "caption"]).to_pylist()}
    if judge:
        _judge(rows, records, judge, seed, journal)
    thinks = [split_response(r["response"])[0] or "" for r in rows]
    for r, n_cot, n_cap in zip(rows, count_tokens(tokenizer_json, thinks),
                               count_tokens(tokenizer_json, [caption_of.get(r["id"], "") for r in rows])):
        r["cot_tokens"], r["caption_tokens"] = n_cot, n_cap
    rows.sort(key=lambda r: (r["id"], r["sample_index"]))
    table = pa.Table.from_pylist(rows, schema=pa.schema([(n, pa.type_for_alias(t)) for n, t in VERIFIED_COLUMNS]))
    schema.write_table(table, out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r['verdict']}/{r['decided_by']}"] = counts.get(f"{r['verdict']}/{r['decided_by']}", 0) + 1
    logging.getLogger(__name__).info("verified %s: %s", out, counts)
    return counts


def _rule_checks(std: str, traces: str, checks: dict) -> tuple[dict, list[dict]]:
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
            v = verify_response(t["response"], rec["answer"], rec["answer_type"], rec["choices"], cfg)
        rows.append({"id": t["id"], "source": t["source"], "sample_index": t["sample_index"],
                     "response": t["response"], "finish_reason": t["finish_reason"], **{k: v[k] for k in (
                         "verdict", "decided_by", "extracted", "extract_method", "reason", "cot_words")}})
    return records, rows


def judge_group(stds: list[str], traces: list[str], journals: list[str], checks: dict, judge: dict,
                seed: int) -> dict:
    """The judge calls of ``verify_shard`` for several shards in one job, with one load of the judge:
    the rule checks run again here (they are cheap), and each judgment goes to its shard's journal
    (``journals[i]`` for ``stds[i]``), where the shard's verify job finds and reads it (and names a
    judgment it cannot read)."""
    from mmfr.generate import generate, group_job

    def run(part, loaded):
        std, trace, journal = part
        records, rows = _rule_checks(std, trace, checks)
        _, reqs, keys = _judge_requests(rows, records, judge, seed)
        return list(generate(loaded.factory(judge, "models.judge"), reqs, keys, journal).values()) if reqs else []

    return group_job(list(zip(stds, traces, journals)), run)


def _judge_requests(rows: list[dict], records: dict, judge: dict, seed: int):
    """The rows the judge is asked about (answers the rules call wrong), its requests and their keys."""
    from mmfr import prompts, schema
    from mmfr.generate import Request, request_key

    todo = [r for r in rows if r["verdict"] == "wrong" and r["decided_by"] in ("choice", "numeric", "math_verify", "text")]
    _, version = prompts.load("judge")
    reqs = []
    for r in todo:
        rec = records[r["id"]]
        question = prompts.question_text(rec["question"], rec["choices"])
        reqs.append(Request(r["id"], tuple(judge_messages(question, rec["answer"], r["extracted"] or "")), (),
                            r["sample_index"], schema.seed_for(seed, "judge", r["id"], r["sample_index"])))
    return todo, reqs, [request_key(judge, judge.get("sampling", {}), q, version) for q in reqs]


def _judge(rows: list[dict], records: dict, judge: dict, seed: int, journal: str | None) -> None:
    """Ask the LLM judge about answers the rules call wrong; an unparseable judgment is an error."""
    from mmfr.generate import generate, make_backend

    todo, reqs, keys = _judge_requests(rows, records, judge, seed)
    if not todo:
        return
    answers = generate(lambda: make_backend(judge, config_key="models.judge"), reqs, keys, journal)
    for r, k in zip(todo, keys):
        resp = answers[k]
        if resp.finish_reason != "stop":
            raise JudgeError(f"judge gave no answer for {r['id']} ({resp.finish_reason}: {resp.error})")
        if parse_judgment(resp.text):
            r.update(verdict="correct", decided_by="judge", reason="")
        else:
            r["decided_by"] = "judge"
