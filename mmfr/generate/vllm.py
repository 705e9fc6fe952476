"""The ``vllm`` backend: vLLM's offline engine (``LLM.chat``) on one or more GPUs.

vLLM pins its own torch/transformers, so it lives in its own environment (``envs/vllm.yaml``) and is
imported only when the backend is built. Requests go to ``LLM.chat`` in chunks of ``chunk_size``;
each chunk's responses are yielded as soon as it finishes, so the journal advances per chunk and a
killed job loses at most one chunk. Sampling is seeded per request (``SamplingParams.seed``), so
results do not depend on chunking or on which requests were already journaled.
"""

from __future__ import annotations

import base64
import logging
from typing import Iterator

from mmfr.generate.core import Request, Response
from mmfr.generate.role import as_role, ModelRole
from mmfr.models import require_model

log = logging.getLogger(__name__)

_MAGIC = [(b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
          (b"BM", "image/bmp")]


def image_mime(data: bytes) -> str:
    """The MIME type of encoded image bytes, from their magic number (PNG when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if data.startswith(magic)), "image/png")


def to_vllm_messages(messages: list[dict] | tuple, images: tuple[bytes, ...] | list[bytes]) -> list[dict]:
    """Our chat layout to vLLM's OpenAI layout: the n-th ``{"type": "image"}`` part becomes an
    ``image_url`` part holding ``images[n]`` as a base64 data URL. Other parts and string contents
    are copied unchanged; a count mismatch between image parts and images is an error."""
    n_image = 0
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image":
                    if n_image >= len(images):
                        raise ValueError(f"{n_image + 1} image parts but only {len(images)} images")
                    data = images[n_image]
                    url = f"data:{image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                    n_image += 1
                else:
                    parts.append(dict(part))
            content = parts
        converted.append({**message, "content": content})
    if n_image != len(images):
        raise ValueError(f"{len(images)} images but only {n_image} image parts")
    return converted


def response_from_output(request: Request, key: str, output) -> Response:
    """A Response from a vLLM ``RequestOutput`` (its first completion)."""
    completion = output.outputs[0]
    text, reason = completion.text, completion.finish_reason
    if reason not in ("stop", "length"):
        return Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index, text=text,
                        finish_reason="error", n_tokens=len(completion.token_ids),
                        error=f"vllm finish_reason {reason!r}")
    return Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index, text=text,
                    finish_reason="empty" if not text.strip() else reason, n_tokens=len(completion.token_ids))


def _error(request: Request, key: str, e: Exception) -> Response:
    return Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index, text="",
                    finish_reason="error", error=f"{type(e).__name__}: {e}")


def is_multimodal(role: ModelRole) -> bool:
    """Does the model take images? From its Hugging Face config (a ``vision_config``), read from the
    local cache or directory; vLLM refuses ``limit_mm_per_prompt`` for a text-only model."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(role.model, revision=role.revision,
                                     trust_remote_code=bool(role.option("trust_remote_code", False)))
    return any(getattr(cfg, name, None) is not None for name in ("vision_config", "visual", "vision_tower"))


def engine_kwargs(role: ModelRole) -> dict:
    """The ``vllm.LLM`` arguments for a role. ``max_images`` caps images per prompt for an
    image-text model (default 1); a text-only model (``max_images: 0``, or no vision part in its
    config) gets no multimodal limit at all."""
    kwargs = {"model": role.model, "revision": role.revision, "tensor_parallel_size": role.tensor_parallel_size,
              "max_model_len": role.option("max_model_len"), "dtype": role.option("dtype", "auto"),
              "gpu_memory_utilization": float(role.option("gpu_memory_utilization", 0.9)),
              "seed": int(role.option("seed", 0))}
    images = role.option("max_images")
    if images is None:
        images = 1 if is_multimodal(role) else 0
    if int(images) > 0:
        kwargs["limit_mm_per_prompt"] = {"image": int(images)}
    return kwargs


class VLLMBackend:
    """Generation with ``vllm.LLM.chat``: the role's model, revision, ``tensor_parallel_size`` and
    sampling; options ``max_model_len`` [model's], ``gpu_memory_utilization`` [0.9], ``dtype``
    ["auto"], ``max_images`` [1 for an image-text model, 0 for a text-only one], ``seed`` [0],
    ``chunk_size`` [1024]."""

    name = "vllm"

    def __init__(self, role: ModelRole | dict):
        """Start the engine now (a local model path that does not exist is an error naming the
        role's config key)."""
        role = as_role(role, self.name)
        require_model(role.model, role.config_key("model"))
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError("the vllm backend needs the `vllm` package, which cannot share an environment with "
                              "the CPU training stack: run this rule in the envs/vllm.yaml environment "
                              "(snakemake --use-conda)") from e
        self.sampling = role.resolved_sampling()
        self.chunk_size = int(role.option("chunk_size", 1024))
        self.llm = LLM(**engine_kwargs(role))

    def close(self) -> None:
        """Free the GPUs so that the same process can load another model."""
        import gc

        import torch

        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except ImportError:  # an older or newer vLLM without these: dropping the engine is the best we can do
            pass
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _params(self, seed: int):
        from vllm import SamplingParams

        s = self.sampling
        return SamplingParams(n=1, temperature=s["temperature"], top_p=s["top_p"], top_k=s["top_k"] or -1,
                              max_tokens=s["max_new_tokens"], repetition_penalty=s["repetition_penalty"], seed=seed)

    def generate(self, requests: list[Request], keys: list[str]) -> Iterator[Response]:
        """Yield responses chunk by chunk; a request whose messages do not convert, or a chunk whose
        ``chat`` call raises, yields "error" responses and the rest go on."""
        pairs = list(zip(requests, keys))
        n_chunks = (len(pairs) + self.chunk_size - 1) // self.chunk_size
        for c in range(n_chunks):
            chunk = pairs[c * self.chunk_size:(c + 1) * self.chunk_size]
            ready, conversations = [], []
            for request, key in chunk:
                try:
                    conversations.append(to_vllm_messages(request.messages, request.images))
                    ready.append((request, key))
                except ValueError as e:
                    yield _error(request, key, ValueError(f"request {request.sample_id}: {e}"))
            log.info("chunk %d/%d: %d requests", c + 1, n_chunks, len(ready))
            if not ready:
                continue
            try:
                outputs = self.llm.chat(conversations, sampling_params=[self._params(r.seed) for r, _ in ready],
                                        use_tqdm=True)
            except Exception as e:  # noqa: BLE001 - one bad chunk must not lose the finished ones
                log.warning("chunk %d/%d failed: %s: %s", c + 1, n_chunks, type(e).__name__, e)
                yield from (_error(r, k, e) for r, k in ready)
                continue
            yield from (response_from_output(r, k, o) for (r, k), o in zip(ready, outputs))
