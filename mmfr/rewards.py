"""GSPO reward functions for TRL's ``GRPOTrainer``: R = (1 - λ)·R_acc + λ·R_fmt, λ = 0.1.

Pass ``reward_funcs=[accuracy_reward, format_reward]`` with ``GRPOConfig(reward_weights=reward_weights())``.
Both take the completions TRL hands over, conversational or plain; dataset columns ``answer``,
``answer_type`` and ``choices`` arrive as keyword lists.
"""

from __future__ import annotations

from mmfr.verify import VerifyConfig, format_score, verify_response

FORMAT_WEIGHT = 0.1  # OpenMMReasoner's λ_fmt

_ACCURACY = VerifyConfig(require_template=False)


def completion_text(completion) -> str:
    """The text of a completion: a string, or the last message of a conversational completion.

    TRL may parse a Qwen3 response into ``reasoning_content`` and ``content``; the think block is
    put back so the format reward sees what the model wrote. List contents keep their text parts."""
    if isinstance(completion, str):
        return completion
    message = completion[-1]
    content = message.get("content") or ""
    if not isinstance(content, str):
        content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
    reasoning = message.get("reasoning_content") or message.get("thinking")
    return f"<think>\n{reasoning}\n</think>\n{content}" if reasoning else content


def accuracy_reward(completions, answer, answer_type, choices, **kwargs) -> list[float]:
    """1.0 where the completion's answer matches the gold answer (verify chain without the
    template requirement), else 0.0."""
    return [
        float(verify_response(completion_text(c), gold, kind, list(opts or []), _ACCURACY)["verdict"] == "correct")
        for c, gold, kind, opts in zip(completions, answer, answer_type, choices, strict=True)
    ]


def format_reward(completions, **kwargs) -> list[float]:
    """The think/answer template score of each completion (1.0, 0.8 or 0.0)."""
    return [format_score(completion_text(c)) for c in completions]


def reward_weights() -> list[float]:
    """Weights for ``GRPOConfig.reward_weights``, in the order [accuracy_reward, format_reward]."""
    return [1.0 - FORMAT_WEIGHT, FORMAT_WEIGHT]
