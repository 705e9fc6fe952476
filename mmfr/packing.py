"""Padding-free ("packed") SFT batches for Qwen3-VL students.

TRL 1.16's ``SFTTrainer`` refuses ``packing=True`` and ``padding_free=True`` for image datasets, but
accepts any ``data_collator``. ``PackedVisionCollator`` takes the examples TRL's vision collator
would get (``messages`` plus ``image`` or ``images``) and returns ONE row: the examples' tokens end
to end with no padding, the labels of TRL's ``assistant_only_loss`` (and -100 on each example's
first token, so no loss crosses a boundary), the pixels and grids of all images in order,
``mm_token_type_ids``, and ``position_ids`` of shape ``(4, 1, L)`` that restart at 0 per example.
A forward pass over that row gives, for every token, what a forward pass over its example alone
gives (``tests/test_packing.py``: to float32 rounding, sdpa and eager on the CPU).

What transformers 5.23 does with these position ids (read in its source, checked by the tests):

- ``Qwen3VLModel.forward`` (``models/qwen3_vl/modeling_qwen3_vl.py``) only computes positions
  itself (``compute_3d_position_ids`` -> ``get_rope_index``) when ``position_ids`` is None, and
  then it has no idea of example boundaries: its mrope positions run on across the whole row.
- ``Qwen3VLTextModel.forward`` accepts ``(4, B, L)``: row 0 is taken as the *text* positions and
  rows 1-3 as the temporal/height/width mrope positions fed to the rotary embedding. With
  ``(3, B, L)`` there are no text positions (``text_position_ids = None``). Row 0 goes to
  ``create_causal_mask(position_ids=...)`` and to every decoder layer as ``position_ids``.
- ``masking_utils._preprocess_mask_arguments`` calls ``find_packed_sequence_indices`` on those
  text positions only when ``attention_mask`` is None (and there is no cache): a position that is
  not its predecessor + 1 starts a new sequence. ``create_causal_mask`` then wraps the causal mask
  function in ``packed_sequence_compatibility_function``, so ``sdpa_mask`` and ``eager_mask``
  materialise a block-diagonal causal mask. Hence the collator returns no ``attention_mask``: with
  one, with 3-row position ids, or with a KV cache (``use_cache`` defaults to True outside
  training; TRL's ``compute_loss`` sets it False) the mask is plain causal and examples attend to
  each other. So call the model with ``use_cache=False``.
- That mask is dense: sdpa and eager still compute all L x L scores of the packed row (and sdpa
  cannot take its flash kernel with an explicit mask), so packing saves the padding in the linear
  layers but not attention work; only varlen flash attention (or flex attention's block mask)
  skips the off-diagonal blocks.
- flash_attention_2/3: ``flash_attention_mask`` returns None, and
  ``modeling_flash_attention_utils._flash_attention_forward`` sees the text positions (they reach
  the attention function through the layers' kwargs); ``_is_packed_sequence`` (batch size 1 only)
  finds them non-monotonic and ``prepare_fa_kwargs_from_position_ids`` builds ``cu_seqlens`` from
  the zeros of row 0, so the varlen kernel runs per example, at the cost of a device sync in every
  layer. ``flash_varlen=True`` hands over ``cu_seq_lens_q/k`` and ``max_length_q/k`` instead, as
  TRL's text padding-free collator does; they reach only the language model
  (``utils.generic.accepts_precomputed_kwargs`` drops them on the way to the vision tower, which
  has its own) and sdpa/eager ignore them. Flash attention itself is not run here (no GPU build
  of flash-attn); ``tests/test_packing.py`` checks the boundaries both ways give.

Use with ``SFTTrainer(..., data_collator=PackedVisionCollator(processor, model, max_length))``,
``packing=False`` and ``padding_free=False`` (the defaults, which TRL insists on for images); see
``PackedVisionCollator`` for what a batch then means.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any

IGNORE = -100


class PackedVisionCollator:
    """Pack a list of conversational image examples into one padding-free row for Qwen3-VL.

    ``processor``: the Qwen3-VL processor. ``model``: the model to be trained (or any module holding
    it, e.g. a PEFT wrapper); only its ``get_rope_index`` is used, to compute each example's
    mrope positions exactly as the model would for that example alone. ``max_length``: truncate
    each example (keep its start) to this many tokens before packing, as TRL's vision collator does;
    a cut through an example's image tokens is an error. None: no truncation.
    ``assistant_only_loss`` (default True, as ``mmfr.train.sft``): loss on assistant tokens only,
    using TRL's training chat template (with ``{% generation %}`` markers) when the processor's
    template has none; False: loss on every token. ``flash_varlen``: also return the varlen
    boundaries flash attention would otherwise derive from the positions (see the module notes).

    Each call returns one row holding all the given examples, so with ``SFTTrainer``
    ``per_device_train_batch_size`` counts examples per packed row and the row length varies
    from step to step (the sum of the examples' lengths). Loss and gradient equal those of TRL's
    padded batch of the same examples (the loss is normalised by the same label-token count).
    Call the model with ``use_cache=False`` (TRL's ``compute_loss`` does). TRL's ``num_tokens``
    metric counts 1 per packed row: without ``attention_mask`` it reads ``position_ids.size(1)``.
    """

    def __init__(self, processor, model, max_length: int | None = None, assistant_only_loss: bool = True,
                 chat_template: str | None = None, flash_varlen: bool = False):
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers

        self.processor = processor
        self.max_length = max_length
        self.assistant_only_loss = assistant_only_loss
        if chat_template is None and assistant_only_loss and not has_generation_markers(processor.chat_template):
            chat_template = get_training_chat_template(processor)
        self.chat_template = chat_template
        self.flash_varlen = flash_varlen
        self._rope_index = _rope_index_of(model)

    def encode(self, example: dict[str, Any]) -> dict:
        """One example, tokenised and with its images processed, unpadded and (with ``max_length``)
        truncated: tensors of shape ``(1, n)`` (``pixel_values`` and ``image_grid_thw`` as the
        processor gives them) plus ``labels`` and mrope ``position_ids`` of shape ``(3, 1, n)``."""
        import torch
        from trl.data_utils import prepare_multimodal_messages

        images = example.get("images")
        if images is None:
            images = [example["image"]] if example.get("image") is not None else []
        messages = prepare_multimodal_messages(example["messages"], images=list(images))
        out = self.processor.apply_chat_template(
            [messages], chat_template=self.chat_template, tokenize=True, return_dict=True, return_tensors="pt",
            return_assistant_tokens_mask=self.assistant_only_loss,
            processor_kwargs={"padding": False, "add_special_tokens": False})
        row = {k: v for k, v in out.items() if k != "attention_mask"}
        labels = row["input_ids"].clone()
        if self.assistant_only_loss:
            labels[row.pop("assistant_masks") == 0] = IGNORE
        row["labels"] = labels
        if self.max_length is not None and row["input_ids"].shape[1] > self.max_length:
            row = self._truncate(row, self.max_length)
        types = row.get("mm_token_type_ids")
        if types is None:  # text-only processor output: plain positions
            n = row["input_ids"].shape[1]
            row["position_ids"] = torch.arange(n).view(1, 1, n).expand(3, 1, n).clone()
        else:
            row["position_ids"], _ = self._rope_index(row["input_ids"], mm_token_type_ids=types,
                                                      image_grid_thw=row.get("image_grid_thw"))
        return row

    def _truncate(self, row: dict, n: int) -> dict:
        types = row.get("mm_token_type_ids")
        if types is not None and bool(types[0, n:].any()):
            raise ValueError(f"max_length {n} cuts through the image tokens of an example of "
                             f"{row['input_ids'].shape[1]} tokens; raise max_length or set it to None")
        return {k: (v[:, :n] if k in ("input_ids", "labels", "mm_token_type_ids") else v) for k, v in row.items()}

    def __call__(self, examples: list[dict[str, Any]]) -> dict:
        import torch

        rows = [self.encode(e) for e in examples]
        for row in rows:
            row["labels"][0, 0] = IGNORE  # predicted from the previous example's last token
        batch = {
            "input_ids": torch.cat([r["input_ids"] for r in rows], dim=1),
            "labels": torch.cat([r["labels"] for r in rows], dim=1),
            # row 0: text positions, restarting per example (the model derives the block-diagonal mask
            # from them); rows 1-3: each example's own mrope positions
            "position_ids": torch.cat([torch.cat([torch.arange(r["input_ids"].shape[1]).view(1, 1, -1),
                                                  r["position_ids"]]) for r in rows], dim=2),
        }
        if all("mm_token_type_ids" in r for r in rows):
            batch["mm_token_type_ids"] = torch.cat([r["mm_token_type_ids"] for r in rows], dim=1)
        with_images = [r for r in rows if "pixel_values" in r]
        if with_images:
            batch["pixel_values"] = torch.cat([r["pixel_values"] for r in with_images])
            batch["image_grid_thw"] = torch.cat([r["image_grid_thw"] for r in with_images])
        if self.flash_varlen:
            lengths = torch.tensor([r["input_ids"].shape[1] for r in rows])
            cu = torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).to(torch.int32)])
            batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = cu
            batch["max_length_q"] = batch["max_length_k"] = int(lengths.max())
        return batch

    def lengths(self, examples) -> list[int]:
        """Each example's token count (text and image tokens, after truncation) as packed: for
        ``pack_lengths`` and ``padding_efficiency``. Processes the images, so not free."""
        return [int(self.encode(e)["input_ids"].shape[1]) for e in examples]


def _rope_index_of(model):
    """The ``get_rope_index`` of ``model`` or of the first submodule that has one (Qwen3-VL keeps it
    on ``Qwen3VLModel``, i.e. ``model.model``; PEFT and other wrappers nest it deeper)."""
    for module in model.modules():  # the model itself first
        if hasattr(module, "get_rope_index"):
            return module.get_rope_index
    raise ValueError(f"{type(model).__name__} has no get_rope_index (not a Qwen2/3-VL style model)")


def pack_lengths(lengths: list[int], max_length: int) -> list[list[int]]:
    """Group example indices into bins of at most ``max_length`` tokens, best fit decreasing: the
    longest example first, each into the fullest bin it fits (the earliest-filled among equally full
    ones), else a new bin. Same bins as TRL's ``pack_dataset(..., strategy="bfd")`` (which packs each
    map batch of 1000 rows on its own), but that packs token columns rather than indices, truncates
    what is longer than ``max_length`` (fatal for an image's tokens) and loses which rows went where;
    here an overlong example gets a bin of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep dataset order
    spaces: list[int] = []  # distinct free spaces of open bins, sorted
    by_space: dict[int, deque] = {}
    bins: list[list[int]] = []
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(spaces, n)
        if k == len(spaces):
            bins.append([i])
            b, free = len(bins) - 1, max_length - n
        else:
            space = spaces[k]
            b = by_space[space].popleft()
            if not by_space[space]:
                del by_space[space], spaces[k]
            bins[b].append(i)
            free = space - n
        if free > 0:
            if free not in by_space:
                by_space[free] = deque()
                bisect.insort(spaces, free)
            by_space[free].append(b)
    return bins


def padding_efficiency(lengths: list[int], batch_size: int, max_length: int | None, packed: bool) -> float:
    """Real tokens over the tokens a step's rows are sized for, over a whole epoch.

    ``packed=False`` (TRL's vision collator): consecutive groups of ``batch_size`` examples in the
    given order, each example truncated to ``max_length``, every row padded to the group's longest.
    ``packed=True``: examples grouped by ``pack_lengths`` into rows of ``max_length``, each row
    counted at ``max_length`` (the budget memory is sized for; the collator itself adds no padding,
    so the computed tokens are the real ones and the figure is how full the rows are); with
    ``max_length`` None a packed row is exactly its examples, so 1.0. ``batch_size`` only matters
    unpacked.
    """
    if not lengths:
        raise ValueError("no lengths")
    if max_length is not None:
        lengths = [min(n, max_length) for n in lengths]
    real = sum(lengths)
    if packed:
        return 1.0 if max_length is None else real / (len(pack_lengths(lengths, max_length)) * max_length)
    computed = sum(len(lengths[i:i + batch_size]) * max(lengths[i:i + batch_size])
                   for i in range(0, len(lengths), batch_size))
    return real / computed
