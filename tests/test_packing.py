"""Padding-free packing of image SFT examples (``mmfr.packing``) on a tiny random Qwen3-VL, float32 on
the CPU: one packed forward pass gives every token what a forward pass over its example alone gives."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mmfr.demo.models import build_tiny_model  # noqa: E402
from mmfr.models import load_processor  # noqa: E402
from mmfr.packing import IGNORE, PackedVisionCollator, pack_lengths, padding_efficiency  # noqa: E402
from mmfr.prompts import student_messages  # noqa: E402

CORPUS = [f"How many red squares are there?\nA. {n}\nB. {n + 1}\n<think>I count {n} squares.</think>\n"
          f"<answer>{n}</answer> user assistant system" for n in range(40)]
# (question, choices, response, image size): three image grids, 4, 12 and 8 merged tokens
SPECS = [("How many red squares?", ["1", "2"], "<think>I count 1.</think>\n<answer>A</answer>", (64, 48)),
         ("How many blue squares are there in the picture?", [], "<think>I count 3 squares.</think>\n<answer>3</answer>",
          (128, 96)),
         ("Which?", ["5", "6"], "<answer>B</answer>", (48, 112))]
TOL = 1e-5


def example(question, choices, response, size, seed=0) -> dict:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return {"messages": student_messages(question, choices) + [
        {"role": "assistant", "content": [{"type": "text", "text": response}]}], "image": Image.fromarray(pixels)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForImageTextToText

    out = tmp_path_factory.mktemp("tiny")
    build_tiny_model(str(out), {}, CORPUS, seed=0)
    models = {impl: AutoModelForImageTextToText.from_pretrained(str(out), dtype=torch.float32,
                                                                 attn_implementation=impl).eval()
              for impl in ("sdpa", "eager")}
    return load_processor(str(out)), models


@pytest.fixture(scope="module")
def examples():
    return [example(*spec, seed=i) for i, spec in enumerate(SPECS)]


def trl_batch(processor, examples):
    """TRL's own vision collator (assistant-only loss), on copies: it pops ``image``."""
    from trl.chat_template_utils import get_training_chat_template
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    collate = DataCollatorForVisionLanguageModeling(processor=processor, assistant_only_loss=True,
                                                    chat_template=get_training_chat_template(processor))
    return collate([dict(e) for e in examples])


def segments(batch) -> list[tuple[int, int]]:
    starts = (batch["position_ids"][0, 0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
    return list(zip(starts[:-1], starts[1:]))


def token_losses(logits, labels):
    """Cross-entropy of each position's next-token label (0 where ignored), shape (L - 1,)."""
    target = labels[0, 1:]
    losses = torch.nn.functional.cross_entropy(logits[0, :-1].double(), target.clamp(min=0), reduction="none")
    return losses.masked_fill(target == IGNORE, 0.0)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_one_packed_pass_equals_separate_passes(tiny, examples, impl):
    """Logits at every token and per-token losses of one packed pass against one unpadded pass per
    example (TRL's collator, the model's own positions and mask); measured: logits to 4e-7."""
    processor, models = tiny
    model = models[impl]
    packed = PackedVisionCollator(processor, model)(examples)
    singles = [trl_batch(processor, [e]) for e in examples]
    with torch.no_grad():
        logits = model(**packed, use_cache=False).logits
        alone = [(model(**single).logits, single["labels"]) for single in singles]
    spans = segments(packed)
    assert [b - a for a, b in spans] == [lg.shape[1] for lg, _ in alone]
    worst = max(float((logits[0, a:b] - lg[0]).abs().max()) for (a, b), (lg, _) in zip(spans, alone))
    assert worst < TOL, worst
    packed_losses = token_losses(logits, packed["labels"])
    for (a, b), (lg, labels) in zip(spans, alone):
        assert torch.allclose(packed_losses[a:b - 1], token_losses(lg, labels), atol=TOL, rtol=0)
    total = sum(float(token_losses(lg, labels).sum()) for lg, labels in alone)
    assert abs(float(packed_losses.sum()) - total) < TOL * abs(total)


def test_packed_loss_equals_trl_padded_batch_loss(tiny, examples):
    processor, models = tiny
    model = models["sdpa"]
    padded = trl_batch(processor, examples)
    packed = PackedVisionCollator(processor, model)(examples)
    # the same label tokens: TRL's unpadded rows end to end
    assert torch.equal(packed["labels"][0], padded["labels"][padded["attention_mask"].bool()])
    assert torch.equal(packed["pixel_values"], padded["pixel_values"])
    assert torch.equal(packed["image_grid_thw"], padded["image_grid_thw"])
    with torch.no_grad():
        a, b = float(model(**padded).loss), float(model(**packed, use_cache=False).loss)
    assert abs(a - b) < TOL * abs(a), (a, b)


def test_the_text_position_row_is_what_keeps_examples_apart(tiny, examples):
    """Without row 0 (mrope rows only), with an attention mask, or with a KV cache (``use_cache``
    defaults to True outside training), transformers builds a plain causal mask over the whole row:
    the second example then sees the first."""
    processor, models = tiny
    model = models["sdpa"]
    packed = PackedVisionCollator(processor, model)(examples)
    with torch.no_grad():
        good = model(**packed, use_cache=False).logits
        mrope_only = model(**{**packed, "position_ids": packed["position_ids"][1:]}, use_cache=False).logits
        masked = model(**packed, attention_mask=torch.ones_like(packed["input_ids"]), use_cache=False).logits
        cached = model(**packed).logits
    a, b = segments(packed)[0]
    for leaky in (mrope_only, masked, cached):  # the first example has nothing before it
        assert float((good[0, a:b] - leaky[0, a:b]).abs().max()) < TOL
    a, b = segments(packed)[1]
    for leaky in (mrope_only, masked, cached):
        assert float((good[0, a:b] - leaky[0, a:b]).abs().max()) > 1e-3


def test_labels_positions_and_token_types(tiny, examples):
    processor, models = tiny
    collate = PackedVisionCollator(processor, models["sdpa"])
    batch = collate(examples)
    n = batch["input_ids"].shape[1]
    assert set(batch) == {"input_ids", "labels", "position_ids", "mm_token_type_ids", "pixel_values",
                          "image_grid_thw"}  # no attention_mask, no padding
    assert batch["position_ids"].shape == (4, 1, n) and batch["labels"].shape == (1, n)
    spans = segments(batch)
    assert [b - a for a, b in spans] == collate.lengths(examples)
    tok = processor.tokenizer
    rope = models["sdpa"].model.get_rope_index
    for (a, b), e, (_, _, response, _) in zip(spans, examples, SPECS):
        ids, labels = batch["input_ids"][0, a:b], batch["labels"][0, a:b]
        assert labels[0] == IGNORE
        # loss exactly on the assistant turn as TRL's training template marks it: the response, its
        # end-of-turn token and the newline after it
        trained = (labels != IGNORE).nonzero().flatten()
        assert trained.tolist() == list(range(int(trained[0]), b - a))
        assert torch.equal(labels[trained], ids[trained])
        assert tok.decode(ids[trained]) == response + "<|im_end|>\n"
        assert tok.decode(ids[:int(trained[0])]).endswith("<|im_start|>assistant\n")
        # positions restart: text row 0..n-1, mrope rows as the model computes them for the example alone
        assert batch["position_ids"][0, 0, a:b].tolist() == list(range(b - a))
        alone = trl_batch(processor, [e])
        expected, _ = rope(alone["input_ids"], mm_token_type_ids=alone["mm_token_type_ids"],
                           image_grid_thw=alone["image_grid_thw"])
        assert torch.equal(batch["position_ids"][1:, :, a:b], expected)
        assert torch.equal(batch["mm_token_type_ids"][0, a:b], alone["mm_token_type_ids"][0])
    image_tokens = int((batch["mm_token_type_ids"] == 1).sum())
    assert image_tokens == int(batch["image_grid_thw"].prod(-1).sum()) // 4 == 4 + 12 + 8
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 6, 8], [1, 8, 4]]


def test_masks_transformers_derives_from_the_text_positions(tiny):
    """What ``create_causal_mask`` makes of restarting text positions with no attention mask: a
    block-diagonal causal mask for sdpa and eager; for flash attention the varlen boundaries."""
    from transformers.masking_utils import create_causal_mask
    from transformers.modeling_flash_attention_utils import _is_packed_sequence, prepare_fa_kwargs_from_position_ids

    _, models = tiny
    lengths = [3, 5, 2]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    seq = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    expected = (seq[:, None] == seq[None, :]) & torch.ones(10, 10, dtype=torch.bool).tril()
    for impl, model in models.items():
        config = model.model.language_model.config
        mask = create_causal_mask(config=config, inputs_embeds=torch.zeros(1, 10, 8), attention_mask=None,
                                  past_key_values=None, position_ids=positions)
        allowed = mask[0, 0] if mask.dtype == torch.bool else mask[0, 0] == 0
        assert torch.equal(allowed, expected), impl
        plain = create_causal_mask(config=config, inputs_embeds=torch.zeros(1, 10, 8), attention_mask=None,
                                   past_key_values=None, position_ids=None)
        assert plain is None or not torch.equal(plain[0, 0] if plain.dtype == torch.bool else plain[0, 0] == 0,
                                                expected)
    assert _is_packed_sequence(positions, batch_size=1)
    (cu_q, cu_k), (max_q, _) = prepare_fa_kwargs_from_position_ids(positions)
    assert cu_q.tolist() == cu_k.tolist() == [0, 3, 8, 10] and int(max_q) == 5


def test_flash_varlen_boundaries_reach_only_the_language_model(tiny, examples, monkeypatch):
    """``flash_varlen=True`` adds the boundaries flash attention would derive from the text positions;
    the vision tower never receives them, and sdpa ignores them."""
    import transformers.models.qwen3_vl.modeling_qwen3_vl as qwen3_vl
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    processor, models = tiny
    model = models["sdpa"]
    plain = PackedVisionCollator(processor, model)(examples)
    batch = PackedVisionCollator(processor, model, flash_varlen=True)(examples)
    (cu, _), (longest, _) = prepare_fa_kwargs_from_position_ids(batch["position_ids"][0])
    assert torch.equal(batch["cu_seq_lens_q"], cu) and torch.equal(batch["cu_seq_lens_k"], cu)
    assert batch["max_length_q"] == batch["max_length_k"] == int(longest)
    seen = []
    vision_attention = qwen3_vl.Qwen3VLVisionAttention.forward

    def spy(self, *args, **kwargs):
        seen.append(sorted(kwargs))
        return vision_attention(self, *args, **kwargs)

    monkeypatch.setattr(qwen3_vl.Qwen3VLVisionAttention, "forward", spy)
    with torch.no_grad():
        a = model(**plain, use_cache=False).logits
        b = model(**batch, use_cache=False).logits
    assert seen and not any(k in kw for kw in seen for k in ("cu_seq_lens_q", "max_length_q"))
    assert torch.equal(a, b)


def test_max_length_truncates_each_example_and_refuses_to_cut_an_image(tiny, examples):
    processor, models = tiny
    full = PackedVisionCollator(processor, models["sdpa"]).lengths(examples)
    cut = full[1] - 5  # inside the second example's response
    batch = PackedVisionCollator(processor, models["sdpa"], max_length=cut)(examples)
    assert [b - a for a, b in segments(batch)] == [min(n, cut) for n in full]
    assert batch["image_grid_thw"].shape[0] == 3
    with torch.no_grad():
        assert torch.isfinite(models["sdpa"](**batch, use_cache=False).loss)
    with pytest.raises(ValueError, match="cuts through the image tokens"):
        PackedVisionCollator(processor, models["sdpa"], max_length=6)(examples)


def test_sft_trainer_with_the_packed_collator_trains_like_the_padded_one(tiny, tmp_path):
    """Two SFT steps of 3 examples each, TRL's padded collator against the packed one, in float64:
    the same losses and gradient norms to 1e-9 (in float32 both drift from float64 by about 1e-5,
    relative, through the optimiser step, so float32 cannot tell them apart)."""
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText
    from trl import SFTConfig, SFTTrainer

    processor, models = tiny
    data = Dataset.from_list([example(*SPECS[i % 3], seed=i) for i in range(6)])
    logs = {}
    for packed in (False, True):
        model = AutoModelForImageTextToText.from_pretrained(models["sdpa"].name_or_path, dtype=torch.float64)
        args = SFTConfig(output_dir=str(tmp_path / str(packed)), max_steps=2, per_device_train_batch_size=3,
                         logging_steps=1, learning_rate=1e-3, assistant_only_loss=True, report_to="none",
                         use_cpu=True, seed=0, data_seed=0, save_strategy="no", dataloader_num_workers=0,
                         activation_checkpointing=False)
        extra = {"data_collator": PackedVisionCollator(processor, model)} if packed else {}
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=processor, **extra)
        trainer.train()
        logs[packed] = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs[True]) == len(logs[False]) == 2
    for a, b in zip(logs[False], logs[True]):
        for key in ("loss", "grad_norm"):
            assert abs(a[key] - b[key]) <= 1e-9 * abs(a[key]), (key, a[key], b[key])
    # TRL counts a batch's tokens by attention_mask, else by position_ids.size(1): 1 per packed row
    assert [h["num_tokens"] for h in logs[True]] == [1, 2]


def test_pack_lengths_gives_trls_bfd_bins():
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    lengths = [int(n) for n in np.random.default_rng(0).integers(1, 300, 200)] + [300, 7, 7, 7]
    bins = pack_lengths(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    ds = pack_dataset(Dataset.from_dict({"input_ids": [[i] * n for i, n in enumerate(lengths)]}), 512, "bfd")
    trl_bins = [list(dict.fromkeys(row)) for row in ds["input_ids"]]
    assert bins == trl_bins
    assert pack_lengths([600, 10], 512) == [[0], [1]]  # an overlong example gets a bin of its own


def test_padding_efficiency():
    lengths = [100, 300, 200, 200]
    assert padding_efficiency(lengths, 2, None, packed=False) == 800 / (2 * 300 + 2 * 200)
    assert padding_efficiency(lengths, 2, 250, packed=False) == 750 / (2 * 250 + 2 * 200)
    assert padding_efficiency(lengths, 2, 512, packed=True) == 800 / (2 * 512)  # bins [300, 200], [200, 100]
    assert padding_efficiency(lengths, 2, None, packed=True) == 1.0


def test_padding_free_in_the_sft_settings_trains_through_the_packed_collator(tmp_path):
    """``train.sft.padding_free: true`` (which TRL refuses for images) goes through the packed
    collator: the same steps and, in float32, losses within 1e-4 (relative) of padded batches; TRL's
    miscounted ``num_tokens`` is left out of the log. ``packing`` is refused, naming the way that works."""
    from test_models import write_shard
    from mmfr.train import SettingsError, check_settings, sft

    build_tiny_model(str(tmp_path / "tiny"), {}, CORPUS, seed=0)
    shard = write_shard(tmp_path / "train.parquet")
    cfg = {"max_steps": 3, "per_device_train_batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3,
           "activation_checkpointing": False, "max_length": 384}
    padded = sft(str(tmp_path / "tiny"), [shard], str(tmp_path / "padded"), cfg, seed=0)
    free = sft(str(tmp_path / "tiny"), [shard], str(tmp_path / "free"), {**cfg, "padding_free": True}, seed=0)
    assert padded["steps"] == free["steps"] == 3
    assert all(abs(a["loss"] - b["loss"]) <= 1e-4 * a["loss"] for a, b in zip(padded["log"], free["log"]))
    assert "num_tokens" in padded["log"][0] and not any("num_tokens" in h for h in free["log"])
    with pytest.raises(SettingsError, match="train.sft.packing: TRL cannot pack image datasets; padding_free"):
        check_settings("sft", {"packing": True}, values=False)
