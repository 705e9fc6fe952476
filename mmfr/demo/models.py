"""The demo's students: a tiny Qwen3-VL built from an architecture config with random weights, with
a tokenizer trained on demo text, then warmed up into a small 'instruct' base. Builds are
deterministic: the same inputs give byte-identical files."""

from __future__ import annotations

import json
import random
import shutil

from mmfr import prompts, schema
from mmfr.demo import synth
from mmfr.demo.teacher import caption, trace
from mmfr.models import QWEN_ADDED_TOKENS, QWEN_PRETOKENIZE, assemble_processor, qwen2_tokenizer
from mmfr.train import sft


TINY_ARCH = {
    "hidden_size": 64, "intermediate_size": 128, "text_layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16,
    "vision_depth": 2, "vision_heads": 4, "vision_positions": 256, "patch_size": 16, "spatial_merge_size": 2,
    "temporal_patch_size": 2, "vocab_size": 1024, "max_position_embeddings": 4096, "rope_theta": 5e6,
    "mrope_section": [4, 2, 2],  # must sum to head_dim / 2
    "max_pixels": 128 * 128, "min_pixels": 32 * 32 * 4,
}


def build_base(spec: dict, out_dir: str, seed: int) -> None:
    """A ``students`` entry with ``build:`` (and optionally ``warmup:``) made into ``out_dir``."""

    if not spec.get("warmup"):
        build_tiny_model(out_dir, spec["build"], demo_corpus(seed), seed)
        return
    init = out_dir.rstrip("/") + ".init"
    build_tiny_model(init, spec["build"], demo_corpus(seed), seed)
    warm_up(init, out_dir, spec["warmup"], seed)
    shutil.rmtree(init)


def demo_corpus(seed: int, per_family: int = 60) -> list[str]:
    """Text the demo student's tokenizer is trained on: prompts, synthetic questions and
    teacher-style traces (its 'pretraining' text; independent of the pipeline's data)."""

    texts = [prompts.load(name)[0] for name in ("student", "trace", "caption", "judge")]
    for family in synth.FAMILIES:
        for rec in synth.generate(family, "train", per_family, seed):
            ctx = {"metadata": rec["metadata"], "answer": rec["answer"], "answer_type": rec["answer_type"],
                   "choices": rec["choices"]}
            texts += [prompts.question_text(rec["question"], rec["choices"]), caption(rec["metadata"]),
                      trace(ctx, random.Random(0), {})]
    return texts


def warm_up(init_dir: str, out_dir: str, cfg: dict, seed: int) -> None:
    """Turn the random-weight model into a small 'instruct' base: a short SFT on synthetic questions
    with brief answers, drawn from seeds the pipeline never uses (``warmup`` stage) and never from
    the held-out split. Without it every pass rate of the demo's proxy would be 0."""
    import tempfile

    import pyarrow as pa

    rows = []
    for family in synth.FAMILIES:
        for rec in synth.generate(family, "train", cfg["n_per_family"], schema.seed_for(seed, "warmup", family)):
            sol = synth.solution(rec["metadata"])
            response = f"<think>\n{' '.join(sol['steps'])}\n</think>\n<answer>{rec['answer']}</answer>"
            rows.append({"question": rec["question"], "choices": rec["choices"],
                         "image": {"bytes": rec["image"], "path": None}, "response": response})
    train_cfg = {k: v for k, v in cfg.items() if k != "n_per_family"}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/warmup.parquet"
        fields = [("question", pa.string()), ("choices", pa.list_(pa.string())), ("image", schema.IMAGE_TYPE),
                  ("response", pa.string())]
        table = pa.Table.from_pylist(rows, schema=pa.schema(fields, metadata=schema.hf_features_metadata(fields)))
        schema.write_table(table, path)
        sft(init_dir, [path], out_dir, train_cfg, seed)


def train_student_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    n_base = vocab_size - len(QWEN_ADDED_TOKENS)
    if n_base <= 256:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for merges (256 bytes + "
                         f"{len(QWEN_ADDED_TOKENS)} added tokens)")
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=n_base, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return qwen2_tokenizer(model["vocab"], merges, model_max_length=TINY_ARCH["max_position_embeddings"])


def build_student_tokenizer(out_dir: str, corpus: list[str], vocab_size: int = 1024) -> None:
    """Train a small byte-level BPE on ``corpus`` and save it as a Qwen2Tokenizer with the Qwen3-VL
    added tokens, so that ``AutoTokenizer.from_pretrained(out_dir)`` loads it offline.

    ``vocab_size`` counts the added tokens; a small corpus may yield fewer merges. Deterministic:
    the same corpus gives a byte-identical ``tokenizer.json``.
    """
    train_student_tokenizer(corpus, vocab_size).save_pretrained(out_dir)


def image_processor(arch: dict):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=arch["patch_size"], merge_size=arch["spatial_merge_size"],
        temporal_patch_size=arch["temporal_patch_size"],
        size={"shortest_edge": arch["min_pixels"], "longest_edge": arch["max_pixels"]},
        image_mean=[0.5] * 3, image_std=[0.5] * 3)


def build_tiny_model(out_dir: str, arch: dict, corpus: list[str], seed: int) -> None:
    """Save a randomly initialised Qwen3-VL built from ``arch`` (see ``TINY_ARCH`` for keys and
    defaults), with a BPE tokenizer trained on ``corpus``, the PIL image processor and the Qwen3-VL
    chat template, so that ``load_model``/``load_processor`` (and ``AutoModelForImageTextToText``)
    load it offline. Weights are drawn after ``torch.manual_seed(seed)``; the output is byte-identical
    for the same inputs."""
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from trl.chat_template_utils import qwen3_vl_chat_template

    unknown = sorted(set(arch) - set(TINY_ARCH))
    if unknown:
        raise ValueError(f"unknown arch keys {unknown} (known: {sorted(TINY_ARCH)})")
    a = {**TINY_ARCH, **arch}
    if 2 * sum(a["mrope_section"]) != a["head_dim"]:
        raise ValueError(f"arch mrope_section {a['mrope_section']} must sum to head_dim / 2 = {a['head_dim'] // 2}")
    tok = train_student_tokenizer(corpus, a["vocab_size"])
    ids = dict(zip(QWEN_ADDED_TOKENS, tok.convert_tokens_to_ids(QWEN_ADDED_TOKENS)))
    h = a["hidden_size"]
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=a["vocab_size"], hidden_size=h, intermediate_size=a["intermediate_size"],
            num_hidden_layers=a["text_layers"], num_attention_heads=a["heads"], num_key_value_heads=a["kv_heads"],
            head_dim=a["head_dim"], max_position_embeddings=a["max_position_embeddings"], tie_word_embeddings=True,
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            rope_parameters=dict(rope_type="default", rope_theta=a["rope_theta"], mrope_section=a["mrope_section"],
                                 mrope_interleaved=True)),
        vision_config=dict(
            depth=a["vision_depth"], hidden_size=h, intermediate_size=a["intermediate_size"],
            num_heads=a["vision_heads"], patch_size=a["patch_size"], spatial_merge_size=a["spatial_merge_size"],
            temporal_patch_size=a["temporal_patch_size"], out_hidden_size=h,
            num_position_embeddings=a["vision_positions"],
            deepstack_visual_indexes=list(range(min(a["vision_depth"], a["text_layers"])))),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"])
    model.save_pretrained(out_dir)
    assemble_processor(tok, image_processor(a), qwen3_vl_chat_template).save_pretrained(out_dir)
