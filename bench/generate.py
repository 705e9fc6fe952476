"""Throughput of the generation backends: requests/s and tokens/s.

  (a) transformers  the demo's tiny Qwen3-VL (random weights, built into a temp dir exactly as the
                    demo builds its base, or ``--model PATH``) on this machine's CPU, greedy, at
                    each ``--batch-sizes``; every request is the student prompt with a synthetic image
  (b) openai        the OpenAI-compatible HTTP backend against a stub server on loopback (its own
                    process) that answers each request after ``--latency-ms`` with ``--tokens``
                    tokens, at each ``--concurrency``: with the server's latency fixed, throughput
                    should grow with the number of requests in flight until the client or the stub
                    runs out of CPU. ``--base-url`` (+ ``--served-model``) measures a real server instead.
  (c) --gpu         on a GPU machine with vLLM installed (envs/vllm.yaml): the offline ``vllm``
                    backend with ``--model`` (a hub id or a local dir); without vLLM, prints how.

    .venv/bin/python bench/generate.py                    # (a) and (b), about 2 minutes on 2 cores
    .venv/bin/python bench/generate.py --skip-hf --concurrency 1,8,64,256
    python bench/generate.py --gpu --model Qwen/Qwen3-VL-2B-Instruct     # in the vllm environment

"CPU ms/req" is this process's CPU time per request (all threads): for (b), what the client itself
costs; for (a), the model's compute.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS: list[tuple] = []  # backend, setting, requests, errors, seconds, tokens, client cpu seconds


def synth_requests(n: int, seed: int = 1):
    """``n`` student-prompt requests, each with its own synthetic image (PNG), families interleaved."""
    from mmfr import prompts, schema
    from mmfr.demo import synth
    from mmfr.generate import Request

    per = (n + len(synth.FAMILIES) - 1) // len(synth.FAMILIES)
    records = [r for rows in zip(*(synth.generate(f, "test", per, seed) for f in synth.FAMILIES)) for r in rows][:n]
    return [Request(f"bench-{i}", tuple(prompts.student_messages(r["question"], r["choices"])), (r["image"],), 0,
                    schema.seed_for(seed, "bench", str(i))) for i, r in enumerate(records)]


def timed(backend, requests, name: str, setting: str) -> None:
    """Run all requests through ``backend.generate`` and record the figures."""
    keys = [f"k{i}" for i in range(len(requests))]
    cpu, start = time.process_time(), time.perf_counter()
    out = list(backend.generate(requests, keys))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert sorted(r.key for r in out) == sorted(keys), "a request got no response or two"
    errors = [r for r in out if r.finish_reason == "error"]
    if errors:
        print(f"  {len(errors)} errors, e.g. {errors[0].error}", file=sys.stderr)
    ROWS.append((name, setting, len(out), len(errors), seconds, sum(r.n_tokens for r in out), cpu))
    print(f"  {name} {setting}: {len(out) / seconds:.1f} req/s", file=sys.stderr, flush=True)


# (a) ------------------------------------------------------------------------------------------------

def demo_arch() -> dict:
    """The demo student's architecture, from the recipe, so this measures the model the demo uses."""
    import yaml

    with open(os.path.join(ROOT, "recipes", "demo.yaml"), encoding="utf-8") as f:
        students = yaml.safe_load(f)["students"]
    return next(s["build"] for s in students if "build" in s)


def bench_transformers(args) -> None:
    from mmfr.generate.hf import TransformersBackend

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if not model:
            from mmfr.demo.models import build_tiny_model, demo_corpus

            model = os.path.join(tmp, "tiny")
            print("building the demo's tiny model ...", file=sys.stderr, flush=True)
            build_tiny_model(model, demo_arch(), demo_corpus(args.seed), args.seed)
        requests = synth_requests(args.n_hf)
        sampling = {"temperature": 0.0, "max_new_tokens": args.max_new_tokens}
        for bs in args.batch_sizes:
            backend = TransformersBackend({"model": model, "batch_size": bs, "device": "cpu", "sampling": sampling})
            list(backend.generate(requests[:bs], [f"w{i}" for i in range(bs)]))  # warm-up, not timed
            timed(backend, requests, "transformers", f"batch {bs}")


# (b) ------------------------------------------------------------------------------------------------

def serve_stub(latency_s: float, tokens: int, port_queue) -> None:
    """An OpenAI-compatible chat server that answers after ``latency_s`` with ``tokens`` tokens."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    completion = json.dumps({"object": "chat.completion", "model": "stub",
                             "choices": [{"index": 0, "finish_reason": "length",
                                          "message": {"role": "assistant", "content": "tok " * tokens}}],
                             "usage": {"prompt_tokens": 100, "completion_tokens": tokens}}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def log_message(self, *a):
            pass

        def do_POST(self):
            json.loads(self.rfile.read(int(self.headers["Content-Length"])))  # parse it, as a server would
            time.sleep(latency_s)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(completion)))
            self.end_headers()
            self.wfile.write(completion)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    server = Server(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def bench_openai(args) -> None:
    from mmfr.generate.openai import OpenAIBackend

    stub = None
    base_url, model = args.base_url, args.served_model
    if not base_url:
        ctx = multiprocessing.get_context("spawn")
        ports = ctx.Queue()
        stub = ctx.Process(target=serve_stub, args=(args.latency_ms / 1000, args.tokens, ports), daemon=True)
        stub.start()
        base_url, model = f"http://127.0.0.1:{ports.get(timeout=60)}/v1", "stub"
    try:
        sampling = {"temperature": 0.0, "max_new_tokens": args.tokens}
        sizes = {c: max(args.min_openai, args.per_slot * c) for c in args.concurrency}
        pool = synth_requests(max(sizes.values()))
        for c in args.concurrency:
            requests = pool[:sizes[c]]
            backend = OpenAIBackend({"model": model, "base_url": base_url, "concurrency": c, "timeout_s": 600,
                                     "sampling": sampling})
            timed(backend, requests, "openai" if args.base_url else "openai (stub)", f"concurrency {c}")
    finally:
        if stub is not None:
            stub.terminate()
            stub.join()


# (c) ------------------------------------------------------------------------------------------------

GPU_HOWTO = """\
vLLM is not importable here: the GPU figures need the vllm environment (envs/vllm.yaml), e.g.

  conda env create -f envs/vllm.yaml -n mmfr-vllm && conda activate mmfr-vllm
  # offline engine (backend: vllm), one GPU:
  python bench/generate.py --gpu --model Qwen/Qwen3-VL-2B-Instruct --n-gpu 2000 --max-new-tokens 256
  # the same model behind an OpenAI-compatible server (backend: openai):
  vllm serve Qwen/Qwen3-VL-2B-Instruct --port 8000 --max-model-len 8192 --limit-mm-per-prompt '{"image": 1}' &
  python bench/generate.py --skip-hf --base-url http://127.0.0.1:8000/v1 \\
      --served-model Qwen/Qwen3-VL-2B-Instruct --tokens 256 --concurrency 16,64,256 --per-slot 8

(no internet on the machine: pre-download the model with `hf download` elsewhere and pass --model DIR)"""


def bench_vllm(args) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        print(GPU_HOWTO)
        return
    from mmfr.generate.vllm import VLLMBackend

    if not args.model:
        raise SystemExit("--gpu needs --model (a hub id or a local model directory)")
    backend = VLLMBackend({"model": args.model, "max_model_len": 8192, "chunk_size": args.n_gpu,
                           "sampling": {"temperature": 0.0, "max_new_tokens": args.max_new_tokens}})
    requests = synth_requests(args.n_gpu)
    list(backend.generate(requests[:8], [f"w{i}" for i in range(8)]))  # warm-up (graphs, caches)
    timed(backend, requests, "vllm", f"{args.model} chunk {args.n_gpu}")


# ----------------------------------------------------------------------------------------------------

def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="(a)/(c): model directory or hub id [(a): build the demo's tiny model]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-hf", type=int, default=256, help="(a) requests per batch size")
    p.add_argument("--batch-sizes", type=ints, default=[8, 32])
    p.add_argument("--max-new-tokens", type=int, default=32, help="(a)/(c) tokens per answer at most")
    p.add_argument("--concurrency", type=ints, default=[1, 16, 64, 128])
    p.add_argument("--latency-ms", type=float, default=50.0, help="(b) the stub's time per request")
    p.add_argument("--tokens", type=int, default=64, help="(b) the stub's tokens per answer (max_tokens)")
    p.add_argument("--per-slot", type=int, default=20, help="(b) requests per concurrency slot")
    p.add_argument("--min-openai", type=int, default=60, help="(b) requests at least, per level")
    p.add_argument("--base-url", help="(b) a real OpenAI-compatible server instead of the stub")
    p.add_argument("--served-model", default="stub", help="(b) the model name the real server serves")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--skip-openai", action="store_true")
    p.add_argument("--gpu", action="store_true", help="(c) the vllm backend instead of (a) and (b)")
    p.add_argument("--n-gpu", type=int, default=1000, help="(c) requests")
    args = p.parse_args()

    start = time.time()
    if args.gpu:
        bench_vllm(args)
    else:
        if not args.skip_hf:
            bench_transformers(args)
        if not args.skip_openai:
            bench_openai(args)
    if not ROWS:
        return
    print(f"\n{'backend':<15} {'setting':<18} {'requests':>8} {'errors':>6} {'seconds':>8} {'req/s':>8} "
          f"{'tok/s':>9} {'CPU ms/req':>10}")
    for name, setting, n, errors, seconds, tokens, cpu in ROWS:
        print(f"{name:<15} {setting:<18} {n:>8} {errors:>6} {seconds:>8.2f} {n / seconds:>8.1f} "
              f"{tokens / seconds:>9.0f} {1000 * cpu / n:>10.2f}")
    print(f"(cpus: {os.cpu_count()}, total {time.time() - start:.0f}s)")


if __name__ == "__main__":
    main()
