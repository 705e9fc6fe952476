"""The ``transformers`` backend: batched ``generate`` with a local model on CPU or one GPU.

Requests are sorted by prompt length and batched with left padding. Sampling is seeded per batch
from the seeds of the requests in it, so results are deterministic for a given batch composition
(the same requests, batch size and model), not per request: changing ``batch_size`` or the set of
pending requests (e.g. resuming from a journal) can change sampled texts. Greedy decoding
(``temperature: 0``) does not depend on seeds, though padding may still shift float rounding.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from typing import Iterator

from mmfr.generate.core import Request, Response
from mmfr.generate.role import as_role, ModelRole
from mmfr.models import load_model, load_processor

log = logging.getLogger(__name__)

def batch_seed(requests: list[Request]) -> int:
    """One torch seed from the seeds of a batch's requests (order-independent)."""
    joined = ",".join(str(s) for s in sorted(r.seed for r in requests))
    return int(hashlib.sha256(joined.encode()).hexdigest()[:15], 16)


def chat_with_images(request: Request) -> list[dict]:
    """The request's messages with the n-th ``{"type": "image"}`` part carrying ``images[n]`` as PIL RGB."""
    from PIL import Image

    n_image = 0
    messages = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, list):
            content = [dict(part) for part in content]
            for part in content:
                if part.get("type") == "image":
                    if n_image >= len(request.images):
                        raise ValueError(f"request {request.sample_id} has more image parts than images")
                    try:
                        part["image"] = Image.open(io.BytesIO(request.images[n_image])).convert("RGB")
                    except Exception as e:
                        raise ValueError(f"request {request.sample_id}: image {n_image} does not decode "
                                         f"({type(e).__name__})") from e
                    n_image += 1
        messages.append({**message, "content": content})
    return messages


class TransformersBackend:
    """Generation with ``model.generate``. The role's ``batch_size`` [16] and sampling; options
    ``device`` ["cpu"] and ``dtype`` ["auto"]."""

    name = "transformers"

    def __init__(self, role: ModelRole | dict):
        """Load model and processor now (a local model path that does not exist is an error naming
        the role's config key)."""
        role = as_role(role, self.name)
        self.sampling = role.resolved_sampling()
        self.batch_size = int(role.batch_size or 16)
        self.device = role.option("device", "cpu")
        key = role.config_key("model")
        self.model = load_model(role.model, role.revision, self.device, role.option("dtype", "auto"), key)
        self.processor = load_processor(role.model, role.revision, key)
        self.processor.tokenizer.padding_side = "left"
        tokenizer = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = set(eos) | {tokenizer.eos_token_id}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]

    def _generate_kwargs(self) -> dict:
        s = self.sampling
        kwargs = {"max_new_tokens": s["max_new_tokens"], "repetition_penalty": s["repetition_penalty"],
                  "pad_token_id": self.pad_id, "eos_token_id": sorted(self.eos_ids)}
        if s["temperature"] > 0:
            return {**kwargs, "do_sample": True, "temperature": s["temperature"], "top_p": s["top_p"],
                    "top_k": s["top_k"]}
        return {**kwargs, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}

    def _run_batch(self, batch: list[Request], keys: list[str]) -> list[Response]:
        import torch

        inputs = self.processor.apply_chat_template(
            [chat_with_images(r) for r in batch], add_generation_prompt=True, tokenize=True, return_dict=True,
            return_tensors="pt", processor_kwargs={"padding": True}).to(self.device)
        torch.manual_seed(batch_seed(batch))
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self._generate_kwargs())
        responses = []
        for request, key, row in zip(batch, keys, out[:, inputs["input_ids"].shape[1]:].tolist()):
            end = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            text = self.processor.tokenizer.decode(row[:end], skip_special_tokens=True)
            reason = "empty" if not text.strip() else "length" if end is None else "stop"
            responses.append(Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index,
                                      text=text, finish_reason=reason,
                                      n_tokens=len(row) if end is None else end + 1))
        return responses

    def generate(self, requests: list[Request], keys: list[str]) -> Iterator[Response]:
        """Yield responses batch by batch; a batch that raises yields "error" responses and the rest go on."""
        order = sorted(range(len(requests)), key=lambda i: (self._prompt_length(requests[i]), i))
        n_batches = (len(order) + self.batch_size - 1) // self.batch_size
        for b in range(n_batches):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch, batch_keys = [requests[i] for i in idx], [keys[i] for i in idx]
            start = time.time()
            try:
                responses = self._run_batch(batch, batch_keys)
            except Exception as e:  # noqa: BLE001 - one bad batch must not lose the finished ones
                log.warning("batch %d/%d failed: %s: %s", b + 1, n_batches, type(e).__name__, e)
                responses = [Response(key=k, sample_id=r.sample_id, sample_index=r.sample_index, text="",
                                      finish_reason="error", error=f"{type(e).__name__}: {e}")
                             for r, k in zip(batch, batch_keys)]
            n_tokens = sum(r.n_tokens for r in responses)
            log.info("batch %d/%d: %d requests, %d tokens, %.1f tok/s", b + 1, n_batches, len(batch), n_tokens,
                     n_tokens / max(time.time() - start, 1e-9))
            yield from responses

    def _prompt_length(self, request: Request) -> int:
        """Characters of the rendered prompt text (images count as their placeholder), for batching."""
        text = self.processor.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        return len(text)
