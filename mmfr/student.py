"""Asking a student model the dataset's questions with the student prompt: what pass rates (the
proxy, k attempts) and evaluation (each checkpoint, on each benchmark) both do."""

from __future__ import annotations

from mmfr import prompts, schema
from mmfr.generate import generate, make_backend, ModelRole, Request, request_key, resolve_model


def student_requests(records: list[dict], n: int, seed: int, stage: str,
                     questions: list[str] | None = None) -> list[Request]:
    """k requests per record with the student prompt (shared by pass rates and evaluation);
    ``questions``: the question text to give per record (a benchmark's protocol writes its own)."""
    out = []
    for j, rec in enumerate(records):
        messages = tuple(prompts.student_messages(rec["question"], rec["choices"]) if questions is None
                         else prompts.student_messages(questions[j], None))
        for i in range(n):
            out.append(Request(rec["id"], messages, (rec["image"]["bytes"],), i, schema.seed_for(seed, stage, rec["id"], i)))
    return out


def ask(records: list[dict], role: ModelRole, n: int, seed: int, stage: str, journal: str | None, loaded=None,
        questions: list[str] | None = None):
    """Generate n student-prompt answers per record; returns (requests, responses) aligned.
    ``loaded``: a ``LoadedModel`` that keeps the model across calls (a job that answers several
    benchmarks). A checkpoint this workflow trained is keyed by its content (``resolve_model``)."""
    _, version = prompts.load("student")
    role = resolve_model(role)
    reqs = student_requests(records, n, seed, stage, questions)
    keys = [request_key(role, r, version) for r in reqs]
    backend = loaded.factory(role) if loaded else lambda: make_backend(role)
    responses = generate(backend, reqs, keys, journal)
    return reqs, [responses[k] for k in keys]


def unfinished(finish_reason: str, score_truncated: bool) -> dict | None:
    """The verdict of a response that did not finish: it never counts as an answer by default."""
    if finish_reason == "stop" or (score_truncated and finish_reason == "length"):
        return None
    verdict = "truncated" if finish_reason == "length" else finish_reason
    return {"verdict": verdict, "decided_by": "finish_reason", "extracted": None, "extract_method": "none"}
