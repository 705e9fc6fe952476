"""The verification chain and the GSPO rewards, on real inputs with exact expected verdicts."""

import random
import signal
import threading
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmfr.rewards import FORMAT_WEIGHT, accuracy_reward, format_reward, reward_weights
from mmfr.answers import has_repeated_ngram, has_repetition
from mmfr.answers import extract, match
from mmfr.verify import (
    JudgeError,
    VerifyConfig,
    answers_match,
    extract_answer,
    format_score,
    judge_messages,
    parse_judgment,
    split_response,
    verify_response,
)

CFG = VerifyConfig()
EVAL = VerifyConfig(require_template=False)
CHOICES = ["12 cm", "15 cm", r"$\frac{1}{2}$", "20 cm"]


def cot(n_words: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n_words))


def trace(answer: str, thinking: str | None = None) -> str:
    return f"<think>\n{thinking if thinking is not None else cot(120)}\n</think>\n<answer>{answer}</answer>"


# --------------------------------------------------------------------------- extraction

@pytest.mark.parametrize("text, answer_type, expected", [
    (r"<think>I guess \boxed{3}</think><answer>\boxed{7}</answer> so \boxed{9}", "number", ("7", "answer_tag")),
    (r"<think>a</think><answer>42</answer> \boxed{9}", "number", ("42", "answer_tag")),
    ("<think>a</think><answer>The final answer is: 42</answer>", "number", ("42", "answer_tag")),
    ("<think><answer>1</answer></think> the result is 5", "number", ("5", "last_number")),
    (r"so $\boxed{\frac{1}{2}}$.", "expression", (r"\frac{1}{2}", "boxed")),
    (r"\boxed{\sqrt{\frac{a}{b}}} hmm", "expression", (r"\sqrt{\frac{a}{b}}", "boxed")),
    (r"\boxed{1} then \boxed{2}", "number", ("2", "boxed")),
    (r"The roots are \boxed{6} and \boxed{8}.", "number", ("6, 8", "boxed")),  # side by side: a list
    (r"$\boxed{1}$, $\boxed{2}$", "number", ("1, 2", "boxed")),
    (r"\boxed{3} and then \boxed{4 cut off", "number", ("3", "boxed")),
    (r"<think>so \boxed{3}</think> I cannot say", "number", (None, "none")),  # the CoT's boxes never count
    ("The options differ. Answer: B", "choice", ("B", "choice_letter")),
    ("**Answer:** D", "choice", ("D", "choice_letter")),
    ("Comparing 3 and 4 I pick (C) here", "choice", ("C", "choice_letter")),
    ("Working...\nB. It fits the figure", "choice", ("B", "choice_letter")),
    ("Looking at the four panels, the correct answer is Image C.", "choice", ("C", "choice_letter")),
    ("A triangle with 3 sides", "choice", ("3", "last_number")),
    ("The answer is (E)", "choice", ("(E)", "answer_phrase")),  # names no option: scored wrong
    ("Adding them up.\nThe answer is 15 cm.", "choice", ("15 cm", "answer_phrase")),
    ("the total is 1,000 dollars", "number", ("1,000", "last_number")),
    (r"So the slope is $-\frac{10}{9}$", "number", (r"-\frac{10}{9}", "last_number")),  # not 9
    ("x-3 gives -4.5 in the end", "number", (None, "none")),  # two numbers: none is the answer
    ("We have 12 apples and 3 bags.\nEach bag then holds several apples each day.", "number", (None, "none")),
    (r"\frac{\sqrt{3}}{2}", "expression", (r"\frac{\sqrt{3}}{2}", "bare")),
    ("Eiffel Tower", "text", ("Eiffel Tower", "bare")),
    ("no idea", "text", ("no idea", "bare")),
    ("I really have no idea here.", "text", (None, "none")),
])
def test_extract_answer(text, answer_type, expected):
    assert extract_answer(text, answer_type, CHOICES) == expected


def test_split_response():
    assert split_response("<think> a b </think>\n<answer> 5 </answer>") == ("a b", "5")
    assert split_response("a b </think><answer>5</answer>") == (None, "5")
    assert split_response("<think>a<answer>5</answer>") == (None, "5")  # unclosed think: answer anywhere
    assert split_response("<think>a</think><answer></answer>") == ("a", None)


# --------------------------------------------------------------------------- equivalence

@pytest.mark.parametrize("pred, gold, expected", [
    ("12", "12.0", True),
    ("12.00001", "12", True),
    ("12.1", "12", False),
    ("1,000", "1000", True),
    ("1,000.5", "1000.5", True),
    ("50%", "50", True),
    (r"50\%", "0.5", True),
    ("0.5", "50", False),
    (r"\frac{3}{4}", "0.75", True),
    ("3/4", "0.75", True),
    (r"-\dfrac{1}{2}", "-0.5", True),
    (r"12\text{ cm}", "12", True),
    (r"90^\circ", "90", True),
    ("x = 5", "5", True),
    ("$7$.", "7", True),
])
def test_numbers(pred, gold, expected):
    assert answers_match(pred, gold, "number", [], CFG) == (expected, "numeric")


def test_number_falls_back_to_math_verify():
    assert answers_match(r"2\pi", "6.283185", "number", [], CFG) == (True, "math_verify")
    assert answers_match("3 pi", "3", "number", [], CFG) == (False, "math_verify")


@pytest.mark.parametrize("pred, gold, expected", [
    (r"5\sqrt{2}", r"\sqrt{50}", (True, "math_verify")),
    (r"\frac{3}{4}", "0.75", (True, "numeric")),
    (r"2\pi", r"\pi*2", (True, "math_verify")),
    ("x^2+1", "1+x^2", (True, "math_verify")),
    (r"2\pi", r"3\pi", (False, "math_verify")),
    (r"\frac{a}{b}", r"\frac{a}{ b }", (True, "text")),
])
def test_expressions(pred, gold, expected):
    assert answers_match(pred, gold, "expression", [], CFG) == expected


def test_math_verify_never_hangs():
    start = time.perf_counter()
    assert answers_match("2^{10^{10}}", "3", "expression", [], CFG) == (None, "timeout")  # undecided, not wrong
    assert time.perf_counter() - start < 5
    out = []  # off the main thread there is no alarm: explosive input is refused, not parsed
    worker = threading.Thread(target=lambda: out.append(answers_match("2^{10^{10}}", "3", "expression", [], CFG)))
    worker.start()
    worker.join(5)
    assert out == [(False, "text")]


def slow_parse(monkeypatch, seconds):
    import math_verify

    parse = math_verify.parse

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return parse(*args, **kwargs)

    monkeypatch.setattr(math_verify, "parse", slow)


def test_one_comparison_has_one_time_bound(monkeypatch):
    """Each math-verify call alone fits in the bound, but a comparison's calls share it."""
    slow_parse(monkeypatch, 0.1)  # a math-verify call: two parses, 0.2 s
    monkeypatch.setattr(match, "MATH_VERIFY_TIMEOUT_S", 0.6)
    assert answers_match("(x^2+1, 2x+1)", "(1+x^2, 1+2x)", "expression", [], CFG) == (True, "list")
    start = time.perf_counter()
    assert answers_match("(x^2+1, 2x+1, 3x+1, 4x+1)", "(1+x^2, 1+2x, 1+3x, 1+4x)", "expression", [],
                         CFG) == (None, "timeout")
    assert time.perf_counter() - start < 0.9
    slow_parse(monkeypatch, 0.4)  # and the parses of one call: 0.8 s
    assert answers_match("x^2+1", "1+x^2", "expression", [], CFG) == (None, "timeout")


def test_the_time_bound_leaves_the_alarm_as_it_found_it(monkeypatch):
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    monkeypatch.setattr(match, "MATH_VERIFY_TIMEOUT_S", 0.5)
    try:
        signal.setitimer(signal.ITIMER_REAL, 3.0)
        assert answers_match("2^{10^{10}}", "3", "expression", [], CFG) == (None, "timeout")
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 1.5 < left < 2.6 and not fired  # the outer timer runs on, less the time spent
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert answers_match("x^2", "x^2", "expression", [], CFG) == (True, "text")
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_verify_counts_the_comparisons_that_ran_out_of_time(monkeypatch, tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from mmfr import models
    from mmfr.verify import verify_shard

    ids = ["a", "b", "c"]
    pq.write_table(pa.table({"id": ids, "question": ["q"] * 3, "answer": ["x^2+1", "12", "1+x"],
                             "answer_type": ["expression", "number", "expression"], "choices": [[], [], []]}),
                   tmp_path / "std.parquet")
    pq.write_table(pa.table({"id": ids, "source": ["s"] * 3, "sample_index": [0] * 3, "finish_reason": ["stop"] * 3,
                             "error": [None] * 3, "response": [trace("1+x^2"), trace("12"), trace("x+1")]}),
                   tmp_path / "traces.parquet")
    pq.write_table(pa.table({"id": ids, "caption": ["a picture"] * 3}), tmp_path / "captions.parquet")
    tok = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    slow_parse(monkeypatch, 0.3)
    monkeypatch.setattr(match, "MATH_VERIFY_TIMEOUT_S", 0.5)
    threads = []
    monkeypatch.setattr(models, "limit_tokenizer_threads", threads.append)
    monkeypatch.setattr("mmfr.verify.limit_tokenizer_threads", threads.append)
    counts = verify_shard(str(tmp_path / "std.parquet"), str(tmp_path / "traces.parquet"),
                          str(tmp_path / "captions.parquet"), str(tmp_path / "tokenizer.json"),
                          str(tmp_path / "verified.parquet"), {}, threads=3)
    assert counts == {"wrong/timeout": 2, "correct/numeric": 1}
    assert threads and set(threads) == {3}
    rows = pq.read_table(tmp_path / "verified.parquet").to_pylist()
    assert [(r["verdict"], r["decided_by"], r["cot_tokens"]) for r in rows] == [
        ("wrong", "timeout", 120), ("correct", "numeric", 120), ("wrong", "timeout", 120)]
    assert "ran out of time" in rows[0]["reason"]

    # with a judge, what the rules could not compare in time goes to it (here it finds them equivalent)
    from mmfr.generate import Response

    class Judge:
        asked = []

        def generate(self, requests, keys):
            for r, k in zip(requests, keys):
                self.asked.append(r.sample_id)
                yield Response(k, r.sample_id, r.sample_index, "Same expression.\nJUDGMENT: EQUIVALENT", "stop", 5)

    monkeypatch.setattr("mmfr.verify.make_backend", lambda role: Judge())
    counts = verify_shard(str(tmp_path / "std.parquet"), str(tmp_path / "traces.parquet"),
                          str(tmp_path / "captions.parquet"), str(tmp_path / "tokenizer.json"),
                          str(tmp_path / "judged.parquet"), {}, {"backend": "openai", "model": "j", "revision": "r"},
                          journal=str(tmp_path / "judge.jsonl"), threads=3)
    assert counts == {"correct/judge": 2, "correct/numeric": 1} and sorted(Judge.asked) == ["a", "c"]


@pytest.mark.parametrize("pred, expected", [
    ("B", True), ("(b)", True), ("Option B", True), ("B. 15 cm", True), ("15 cm", True), ("15", True),
    ("A", False), ("12 cm", False), ("0.5", False), ("E", False), ("something else", False),
])
def test_choices(pred, expected):
    assert answers_match(pred, "B", "choice", CHOICES, CFG) == (expected, "choice")


def test_choice_gold_must_name_an_option():
    assert answers_match("C", r"\frac{1}{2}", "choice", CHOICES, CFG) == (True, "choice")
    with pytest.raises(ValueError):
        answers_match("B", "F", "choice", CHOICES, CFG)
    with pytest.raises(ValueError):
        answers_match("B", "B", "ratio", [], CFG)


def test_text():
    assert answers_match("The Eiffel Tower.", "eiffel  tower", "text", [], CFG) == (True, "text")
    assert answers_match("Eiffel", "eiffel tower", "text", [], CFG) == (False, "text")


# --------------------------------------------------------------------------- the chain

def test_correct_and_wrong_traces():
    result = verify_response(trace("The final answer is: 12.0"), "12", "number", [], CFG)
    assert result == {"verdict": "correct", "decided_by": "numeric", "extracted": "12.0",
                      "extract_method": "answer_tag", "reason": "", "cot_words": 120}
    result = verify_response(trace("(C)"), "B", "choice", CHOICES, CFG)
    assert (result["verdict"], result["decided_by"], result["extracted"]) == ("wrong", "choice", "(C)")
    assert result["reason"]
    result = verify_response(trace(r"\sqrt{50}"), r"5\sqrt{2}", "expression", [], CFG)
    assert (result["verdict"], result["decided_by"]) == ("correct", "math_verify")


@pytest.mark.parametrize("text", [
    "<think>\n" + cot(120) + "\n<answer>12</answer>",                   # missing </think>
    "<think>\n" + cot(120) + "\n</think>\nThe answer is 12.",            # no answer tag
    "<answer>12</answer>\n<think>\n" + cot(120) + "\n</think>",          # answer before think
    "<think>\n" + cot(120) + " <answer>12</answer></think>",             # answer only inside think
    "<think>\n" + cot(120) + "\n</think>\n<answer>  </answer>",          # empty answer
    cot(120) + "\n</think>\n<answer>12</answer>",                        # no opening <think>
])
def test_template_failures(text):
    result = verify_response(text, "12", "number", [], CFG)
    assert (result["verdict"], result["decided_by"]) == ("rejected", "template")
    assert verify_response(text, "12", "number", [], EVAL)["decided_by"] != "template"


def test_short_cot_rejected_only_with_template():
    short = trace("12", cot(99))
    assert verify_response(short, "12", "number", [], CFG)["decided_by"] == "length"
    assert verify_response(trace("12", cot(100)), "12", "number", [], CFG)["verdict"] == "correct"
    assert verify_response(short, "12", "number", [], EVAL)["verdict"] == "correct"


def test_repeated_50gram():
    phrase = cot(50, "r")
    thrice = " ".join([cot(30, "a"), phrase, cot(30, "b"), phrase, cot(30, "c"), phrase])
    twice = " ".join([cot(30, "a"), phrase, cot(30, "b"), phrase, cot(30, "c")])
    result = verify_response(trace("12", thrice), "12", "number", [], CFG)
    assert (result["verdict"], result["decided_by"]) == ("rejected", "repetition")
    assert verify_response(trace("12", twice), "12", "number", [], CFG)["verdict"] == "correct"
    assert verify_response(trace("12", thrice), "12", "number", [], EVAL)["decided_by"] == "repetition"


def test_has_repetition():
    assert has_repetition(" ".join(["x"] * 52), 50, 3)        # overlapping occurrences count
    assert not has_repetition(" ".join(["x"] * 51), 50, 3)
    assert has_repetition("one two three " * 20, 50, 3)        # a looping short phrase
    assert not has_repetition(cot(5000), 50, 3)
    assert not has_repetition("", 50, 3)


def reference_repeated_ngram(words, n, max_repeats):
    """The plain definition: some window of n words occurs at least max_repeats times."""
    windows = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)) if n > 0 else Counter()
    return any(c >= max_repeats for c in windows.values())


def test_repeated_ngram_is_exactly_the_plain_count():
    rng = random.Random(7)
    for trial in range(3000):
        vocab = [f"v{i}" for i in range(rng.choice([1, 2, 3, 5, 20, 1000]))]
        words = [rng.choice(vocab) for _ in range(rng.choice([0, 1, 3, 10, 60, 79, 80, 81, 150, 400]))]
        if words and rng.random() < 0.3:  # a loop: a stretch of the text said again several times
            start = rng.randrange(len(words))
            loop = words[start:start + rng.randrange(1, 60)]
            words[start:start] = loop * rng.randrange(1, 4)
        n = rng.choice([-1, 0, 1, 2, 3, 5, 50, len(words), len(words) + 1])
        for max_repeats in (0, 1, 2, 3, 4):
            assert has_repeated_ngram(words, n, max_repeats) == reference_repeated_ngram(words, n, max_repeats), \
                (trial, len(words), n, max_repeats)


@pytest.mark.parametrize("size", [20, 300])
def test_repeated_ngram_edges(size):
    same = ["a"] * size  # overlapping occurrences count: k + n - 1 words hold k of one n-gram
    assert has_repeated_ngram(same, 4, size - 3) and not has_repeated_ngram(same, 4, size - 2)
    assert has_repeated_ngram(same, 1, size) and not has_repeated_ngram(same, 1, size + 1)
    distinct = [f"w{i}" for i in range(size)]
    assert not has_repeated_ngram(distinct, 1, 2) and has_repeated_ngram(distinct, 1, 1)
    assert not has_repeated_ngram(distinct, size + 1, 1) and has_repeated_ngram(distinct, size, 1)


class Colliding(str):
    """A word whose hash is the same as every other's: every window's hash collides."""

    def __hash__(self):
        return 7


def test_a_hash_collision_never_flags_a_clean_text():
    words = [Colliding(f"w{i}") for i in range(400)]
    assert (extract.window_hashes(words, 50) == extract.window_hashes(words, 50)[0]).all()
    assert not has_repeated_ngram(words, 50, 3) and not has_repeated_ngram(words, 1, 2)
    assert has_repeated_ngram(words + words[:52], 50, 2) and not has_repeated_ngram(words + words[:52], 50, 3)


def test_unextractable_answer_is_wrong():
    result = verify_response("I cannot tell.", "12", "number", [], EVAL)
    assert (result["verdict"], result["decided_by"], result["extract_method"]) == ("wrong", "extract", "none")


def test_every_verdict_carries_decided_by():
    cases = [
        (trace("12"), "12", "number", []), (trace("13"), "12", "number", []), (trace("B"), "B", "choice", CHOICES),
        (trace("eiffel"), "Eiffel", "text", []), (trace(r"x^2"), "x^2", "expression", []),
        ("<think>x</think>", "12", "number", []), (trace("12", cot(10)), "12", "number", []),
        (trace("12", "a " * 200), "12", "number", []),
    ]
    keys = {"verdict", "decided_by", "extracted", "extract_method", "reason", "cot_words"}
    for cfg in (CFG, EVAL):
        for case in cases:
            result = verify_response(*case, cfg)
            assert set(result) == keys
            assert result["verdict"] in {"correct", "wrong", "rejected"}
            assert result["decided_by"] in {"template", "length", "repetition", "extract",
                                            "choice", "numeric", "math_verify", "text"}
            assert (result["reason"] == "") == (result["verdict"] == "correct")


def test_speed_on_500_word_trace():
    rng = random.Random(0)
    vocab = [f"word{i}" for i in range(300)]
    thinking = " ".join(rng.choice(vocab) for _ in range(500))
    number, choice = trace("The final answer is: 1,234.5", thinking), trace("B", thinking)
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        assert verify_response(number, "1234.5", "number", [], CFG)["verdict"] == "correct"
        assert verify_response(choice, "B", "choice", CHOICES, CFG)["verdict"] == "correct"
    assert (time.perf_counter() - start) / (2 * runs) < 0.005


# --------------------------------------------------------------------------- judge and format

def test_judge_messages():
    (message,) = judge_messages("What is 2+2? {x}", "4", "four")
    assert message["role"] == "user"
    assert "What is 2+2? {x}" in message["content"] and "Reference answer: 4" in message["content"]
    assert "Candidate answer: four" in message["content"]


@pytest.mark.parametrize("text, expected", [
    ("The two are the same number.\nJUDGMENT: EQUIVALENT", True),
    ("Different values.\n\n  **JUDGMENT: DIFFERENT**  \n", False),
    ("**JUDGMENT:** EQUIVALENT", True),
    ("<think>Maybe JUDGMENT: DIFFERENT?\nJUDGMENT: DIFFERENT</think>\nJUDGMENT: EQUIVALENT", True),
])
def test_parse_judgment(text, expected):
    assert parse_judgment(text) is expected


@pytest.mark.parametrize("text", [
    "They look equivalent to me.",
    "JUDGMENT: EQUIVALENT\nJUDGMENT: DIFFERENT",
    "JUDGMENT: EQUIVALENT\nJUDGMENT: EQUIVALENT",
    "judgment: equivalent",
    "I would write JUDGMENT: EQUIVALENT here",
    "<think>\nJUDGMENT: EQUIVALENT\n</think>\nI am not sure.",
    "JUDGMENT:\nEQUIVALENT",
])
def test_parse_judgment_rejects(text):
    with pytest.raises(JudgeError, match="tail"):
        parse_judgment(text)


@pytest.mark.parametrize("text, expected", [
    ("<think>reasoning</think><answer>5</answer>", 1.0),
    (r"<think>reasoning</think> so \boxed{5}", 1.0),
    ("<answer>5</answer>", 0.8),
    (r"The result is \boxed{5}", 0.8),
    ("<think>reasoning never closed <answer>5</answer>", 0.8),
    ("<think>reasoning</think> the answer is 5", 0.0),
    (r"<think>I think \boxed{5}</think> the answer is 5", 0.0),
    ("just 5", 0.0),
])
def test_format_score(text, expected):
    assert format_score(text) == expected


# --------------------------------------------------------------------------- rewards

def test_rewards_on_conversational_completions():
    completions = [
        [{"role": "assistant", "content": "<think>2+2 is 4</think><answer>4</answer>"}],
        [{"role": "assistant", "content": r"It is \boxed{5}"}],
        [{"role": "assistant", "content": "<answer>4</answer>", "reasoning_content": "2+2 is 4"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "The answer is (B)"}]}],
        "<think>hmm</think>no idea",
    ]
    answer = ["4", "4", "4", "B", "4"]
    answer_type = ["number", "number", "number", "choice", "number"]
    choices = [[], [], None, CHOICES, []]
    assert accuracy_reward(completions, answer=answer, answer_type=answer_type, choices=choices,
                           prompts=[None] * 5, trainer_state=None) == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert format_reward(completions, answer=answer) == [1.0, 0.8, 1.0, 0.0, 0.0]
    assert reward_weights() == [1 - FORMAT_WEIGHT, FORMAT_WEIGHT] == [0.9, 0.1]


def test_a_source_without_usable_ground_truth_is_admitted_on_the_other_checks():
    from mmfr.verify import VerifyConfig, verify_response

    cfg = VerifyConfig(min_cot_words=3)
    trace = "<think>I look at the figure and count the parts carefully.</think>\n<answer>7</answer>"
    assert verify_response(trace, "9", "number", [], cfg)["verdict"] == "wrong"
    unchecked = verify_response(trace, "9", "number", [], cfg, check_answer=False)
    assert (unchecked["verdict"], unchecked["decided_by"], unchecked["extracted"]) == ("correct", "unchecked", "7")
    # the template and length checks still apply
    assert verify_response("<answer>7</answer>", "9", "number", [], cfg, check_answer=False)["verdict"] == "rejected"
    assert verify_response("<think>too short</think>\n<answer>7</answer>", None, "number", [], cfg,
                           check_answer=False)["decided_by"] == "length"
