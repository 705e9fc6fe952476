"""GPU check of student training throughput: a Qwen3-VL-2B-shaped model with random weights, built
from its config here (nothing is downloaded), trained for a few steps on rows of the recipe's
length packed from samples of trace-like lengths (positions restarting per sample, as
``mmfr.packing`` gives them, so attention stays within a sample), in bf16 with activation
checkpointing and AdamW; prints tokens/s and MFU.

    python bench/train_gpu.py                 # one H100/H200-class GPU, about 3 minutes
    python bench/train_gpu.py --attn flash_attention_2   # where flash-attn is installed
    python bench/train_gpu.py --tiny --steps 2   # the same code on a CPU, tiny shapes (a smoke test)

MFU = 6 * parameters * tokens/s / peak bf16 FLOP/s (989e12 for an H100/H200 SXM, dense), the
usual estimate without the attention term (which adds about 12 * layers * hidden * length per
token: printed beside it). Text tokens only: the vision tower is built and counted, not run.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

# Qwen3-VL-2B-Instruct's shapes (its config.json): text 28 layers of 2048, 16 heads (8 KV), MLP 6144;
# vision 24 blocks of 1024
TWO_B = {"text_config": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                         "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                         "vocab_size": 151936, "max_position_embeddings": 262144, "tie_word_embeddings": True,
                         "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                                          "mrope_interleaved": True}},
         "vision_config": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                           "out_hidden_size": 2048}}
TINY = {"text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024, "max_position_embeddings": 4096,
                        "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3],
                                         "mrope_interleaved": True}},
        "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true", help="tiny shapes on whatever device there is")
    p.add_argument("--length", type=int, default=32768, help="packed sequence length (the recipe's)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--sample", type=int, default=3000, help="mean tokens of a packed sample (a trace and its prompt)")
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa: a block-diagonal mask)")
    a = p.parse_args()
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    length = 256 if a.tiny else a.length
    config = Qwen3VLConfig(**(TINY if a.tiny else TWO_B))
    torch.manual_seed(0)
    config._attn_implementation = a.attn
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration(config).to(dtype)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    params = sum(p.numel() for p in model.parameters())
    text = config.text_config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
    ids = torch.randint(0, text.vocab_size, (1, length), device=device)
    # samples of 0.5x to 1.5x the mean length until the row is full; text positions restart per
    # sample (row 0) and, for text, the three rotary rows follow them
    rng = torch.Generator().manual_seed(0)
    sizes, mean = [], 64 if a.tiny else a.sample
    while sum(sizes) < length:
        sizes.append(min(length - sum(sizes), int(mean * (0.5 + torch.rand(1, generator=rng).item()))))
    positions = torch.cat([torch.arange(n) for n in sizes]).to(device).view(1, 1, -1).expand(4, 1, -1)
    times = []
    for step in range(a.warmup + a.steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, position_ids=positions, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= a.warmup:
            times.append(time.perf_counter() - start)
    per_step = sorted(times)[len(times) // 2]
    tokens_s = length / per_step
    flops_token = 6 * params
    attention = 12 * text.num_hidden_layers * text.hidden_size * sum(n * n for n in sizes) / length  # within samples
    peak = a.peak_tflops * 1e12
    print(f"device {torch.cuda.get_device_name() if cuda else 'cpu'}; {params / 1e9:.3f}B parameters; "
          f"packed length {length} ({len(sizes)} samples); attention {a.attn}; median step {per_step:.3f} s")
    print(f"tokens/s {tokens_s:,.0f}; MFU {100 * flops_token * tokens_s / peak:.1f}% "
          f"({100 * (flops_token + attention) * tokens_s / peak:.1f}% with attention)")
    if cuda:
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
