"""The ``openai`` backend against a real HTTP server on loopback that misbehaves on cue.

The server reads a command from the last text part of the request, ``<mode>[:<n>] <id>``, and keeps a
count per prompt, so "fail the first two times, then answer" is per request and the test can check
exactly how many times each request reached the server.
"""

import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mmfr.generate import Journal, ModelRole, Request, generate, request_key
from mmfr.generate.openai import OpenAIBackend

ERROR_400 = "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens."


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 64+ clients connect at once

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.hits: dict[str, int] = {}  # prompt -> requests received
        self.bodies: list[dict] = []
        self.headers_seen: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.healed = False  # "fail" requests answer normally once set

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def prompt_of(body):
    texts = [p["text"] for m in body["messages"] if isinstance(m["content"], list)
             for p in m["content"] if p.get("type") == "text"]
    return texts[-1] if texts else body["messages"][-1]["content"]


def completion(content, finish="stop", reasoning=None, tokens=None):
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"id": "cmpl-1", "object": "chat.completion", "model": "served",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "total_tokens": 0,
                      "completion_tokens": len((content or "").split()) if tokens is None else tokens}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args):
        pass

    def send_json(self, status, data, extra_headers=()):
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def drop(self):
        """Close the connection without a word."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def do_POST(self):
        srv: Server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":
            return self.send_json(404, {"error": {"message": f"no route {self.path}"}})
        prompt = prompt_of(body)
        with srv.lock:
            srv.hits[prompt] = n = srv.hits.get(prompt, 0) + 1
            srv.bodies.append(body)
            srv.headers_seen.append(dict(self.headers))
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self.behave(srv, body, prompt, n)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up on us (a stall past its timeout)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def behave(self, srv, body, prompt, n):
        mode, _, count = prompt.split()[0].partition(":")
        times = int(count or 0)
        failing = n <= times and not srv.healed
        if mode == "fail500" and failing:
            return self.send_json(500, {"error": {"message": "engine hiccup", "type": "InternalServerError"}})
        if mode == "busy429" and failing:
            return self.send_json(429, {"error": {"message": "too many requests"}}, [("Retry-After", "0")])
        if mode == "wait429" and failing:
            return self.send_json(429, {"error": {"message": "slow down"}}, [("Retry-After", "0.3")])
        if mode == "abort" and failing:
            return self.send_json(200, completion("", "abort"))
        if mode == "stall" and failing:
            time.sleep(1.0)  # past the client's 0.5 s timeout
        elif mode == "drop" and failing:
            return self.drop()
        elif mode == "partial" and failing:  # headers and half a body, then gone
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"choices": [{"mess')
            self.wfile.flush()
            return self.drop()
        elif mode == "badjson" and failing:
            raw = b"<html>502 Bad Gateway</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            return self.wfile.write(raw)
        if mode == "bad400":
            # vLLM's older error layout: {"object": "error", "message": ...}
            return self.send_json(400, {"object": "error", "message": ERROR_400, "type": "BadRequestError"})
        if mode == "nomodel":
            return self.send_json(404, {"error": {"message": f"The model `{body['model']}` does not exist.",
                                                  "type": "NotFoundError", "code": 404}})
        if mode == "dead" and not srv.healed:
            return self.send_json(503, {"error": {"message": "model is loading"}})
        if mode == "slow":
            time.sleep(times / 1000)
        if mode == "length":
            return self.send_json(200, completion("<think> a b c d", "length", tokens=5))
        if mode == "empty":
            return self.send_json(200, completion("  \n ", "stop", tokens=1))
        if mode == "reasoning":
            return self.send_json(200, completion("\n\n<answer>4</answer>", "stop", reasoning="\nTwo and two.\n",
                                                  tokens=9))
        if mode == "reasoning_cut":
            return self.send_json(200, completion(None, "length", reasoning="Two and", tokens=3))
        if mode == "tgi":
            return self.send_json(200, completion("done", "eos_token"))
        if mode == "filtered":
            return self.send_json(200, completion("partial", "content_filter"))
        images = [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
                  for p in m["content"] if p.get("type") == "image_url"]
        self.send_json(200, completion(f"echo {prompt} seed={body.get('seed')} images={len(images)}"))


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def png(colour=(200, 30, 30)):
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(out, "PNG")
    return out.getvalue()


def req(text, i=0, image=None, seed=None):
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]
    return Request(f"s{i}", ({"role": "system", "content": "Be brief."}, {"role": "user", "content": content}),
                   (image,) if image else (), 0, seed=i if seed is None else seed)


def backend(server, **overrides):
    spec = {"backend": "openai", "model": "served", "revision": "r1", "base_url": server.base_url,
            "concurrency": 8, "timeout_s": 0.5, "max_retries": 3, "backoff_s": 0.01,
            "sampling": {"temperature": 0.6, "max_new_tokens": 64}, **overrides}
    return OpenAIBackend(spec)


def run(b, reqs):
    keys = [f"k{i}" for i in range(len(reqs))]
    out = {r.key: r for r in b.generate(reqs, keys)}
    assert sorted(out) == sorted(keys)
    return [out[k] for k in keys]


def test_answer_maps_text_tokens_and_sampling(server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    b = backend(server, api_key_env="MY_KEY", sampling={"temperature": 0.6, "top_p": 0.95, "top_k": 20,
                                                         "max_new_tokens": 128, "repetition_penalty": 1.05})
    (r,) = run(b, [req("ok what is 2+2", i=3, seed=77)])
    assert (r.text, r.finish_reason, r.n_tokens, r.error) == ("echo ok what is 2+2 seed=77 images=0", "stop", 7, "")
    assert (r.key, r.sample_id) == ("k0", "s3")
    (body,) = server.bodies
    assert body["model"] == "served" and body["seed"] == 77 and body["n"] == 1
    assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"], body["repetition_penalty"]) \
        == (0.6, 0.95, 20, 128, 1.05)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert server.headers_seen[0]["Authorization"] == "Bearer sk-test"


def test_default_sampling_sends_only_openai_fields(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run(backend(server, sampling={"temperature": 0.0}), [req("ok plain")])
    (body,) = server.bodies
    assert "top_k" not in body and "repetition_penalty" not in body and body["temperature"] == 0.0
    assert "Authorization" not in server.headers_seen[0]


def test_image_arrives_as_data_url(server):
    image = png()
    (r,) = run(backend(server), [req("ok describe", image=image)])
    assert r.text.endswith("images=1")
    parts = server.bodies[0]["messages"][1]["content"]
    assert parts[0]["type"] == "image_url" and parts[1] == {"type": "text", "text": "ok describe"}
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == image


@pytest.mark.parametrize("mode", ["fail500:2", "busy429:2", "stall:1", "drop:2", "partial:1", "badjson:1", "abort:1"])
def test_transient_failures_are_retried(server, mode):
    (r,) = run(backend(server), [req(f"{mode} x")])
    assert r.finish_reason == "stop" and r.text.startswith(f"echo {mode} x"), r.error
    assert server.hits[f"{mode} x"] == int(mode.split(":")[1]) + 1


def test_retry_after_is_honoured(server):
    start = time.time()
    (r,) = run(backend(server), [req("wait429:1 x")])
    assert r.finish_reason == "stop" and time.time() - start >= 0.3


def test_client_error_is_not_retried_and_says_why(server):
    bad, missing = run(backend(server), [req("bad400 long"), req("nomodel x")])
    assert bad.finish_reason == "error" and ERROR_400 in bad.error and "HTTP 400" in bad.error
    assert "not retried" in bad.error and server.base_url in bad.error
    assert missing.finish_reason == "error" and "HTTP 404" in missing.error
    assert "`served` does not exist" in missing.error
    assert server.hits == {"bad400 long": 1, "nomodel x": 1}


def test_exhausted_retries_give_an_error_and_spare_the_others(server):
    reqs = [req("dead x", 0)] + [req(f"ok {i}", i) for i in range(1, 6)] + [req("fail500:1 y", 6)]
    out = run(backend(server, max_retries=2), reqs)
    dead = out[0]
    assert dead.finish_reason == "error" and dead.text == ""
    assert "HTTP 503" in dead.error and "model is loading" in dead.error and "3 attempts" in dead.error
    assert server.base_url + "/chat/completions" in dead.error
    assert server.hits["dead x"] == 3
    assert [r.finish_reason for r in out[1:]] == ["stop"] * 6


def test_timeouts_and_refused_connections_give_errors(server):
    (r,) = run(backend(server, max_retries=1), [req("stall:5 z")])
    assert r.finish_reason == "error" and "timed out after 0.5s" in r.error and "2 attempts" in r.error
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (r,) = run(backend(server, base_url=f"http://127.0.0.1:{port}/v1", max_retries=1), [req("ok x")])
    assert r.finish_reason == "error" and "connection failed" in r.error and str(port) in r.error


def test_finish_reasons_and_reasoning(server):
    length, empty, reasoning, cut, tgi, filtered = run(backend(server), [
        req("length x"), req("empty x"), req("reasoning x"), req("reasoning_cut x"), req("tgi x"), req("filtered x")])
    assert (length.finish_reason, length.text, length.n_tokens) == ("length", "<think> a b c d", 5)
    assert empty.finish_reason == "empty"
    assert reasoning.finish_reason == "stop" and reasoning.n_tokens == 9
    assert reasoning.text == "<think>\nTwo and two.\n</think>\n<answer>4</answer>"
    from mmfr.verify import split_response

    assert split_response(reasoning.text) == ("Two and two.", "4")
    assert cut.finish_reason == "length" and cut.text == "<think>\nTwo and"  # never closed by the model
    assert tgi.finish_reason == "stop"
    assert filtered.finish_reason == "error" and "'content_filter'" in filtered.error
    assert server.hits["filtered x"] == 1


def test_bad_request_layout_is_an_error_not_an_exception(server):
    broken = Request("s9", ({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "ok"}]},), ())
    (r,) = run(backend(server), [broken])
    assert r.finish_reason == "error" and "image parts" in r.error and server.bodies == []


def test_many_concurrent_requests_each_answered_once(server):
    n = 80
    reqs = [req(f"slow:200 q{i}", i, image=png((i, 0, 0))) for i in range(n)]
    start = time.time()
    out = run(backend(server, concurrency=64, timeout_s=5), reqs)
    elapsed = time.time() - start
    assert [r.text.split(" seed")[0] for r in out] == [f"echo slow:200 q{i}" for i in range(n)]
    assert all(r.finish_reason == "stop" for r in out)
    assert len(server.bodies) == n and set(server.hits.values()) == {1}
    assert server.max_in_flight >= 32, server.max_in_flight
    assert elapsed < n * 0.2 / 8, elapsed  # far quicker than one at a time


def test_closing_early_drops_the_queue(server):
    b = backend(server, concurrency=2)
    gen = b.generate([req(f"slow:100 q{i}", i) for i in range(40)], [f"k{i}" for i in range(40)])
    next(gen)
    gen.close()
    assert len(server.bodies) <= 6


def test_journal_keeps_successes_and_a_rerun_regenerates_only_failures(server, tmp_path):
    b = backend(server, max_retries=1)
    reqs = [req(f"ok {i}", i) for i in range(10)] + [req(f"dead {i}", i) for i in range(10, 13)]
    keys = [request_key(ModelRole("openai", "served", "r1", sampling=b.sampling), r) for r in reqs]
    journal = str(tmp_path / "j.jsonl")
    out = generate(b, reqs, keys, journal)
    assert [out[k].finish_reason for k in keys] == ["stop"] * 10 + ["error"] * 3
    assert set(Journal(journal).load()) == set(keys[:10])
    server.healed, first_hits = True, dict(server.hits)
    out = generate(b, reqs, keys, journal)
    assert all(out[k].finish_reason == "stop" for k in keys)
    again = {p: n - first_hits.get(p, 0) for p, n in server.hits.items() if n != first_hits.get(p, 0)}
    assert again == {f"dead {i}": 1 for i in range(10, 13)}
    assert set(Journal(journal).load()) == set(keys)


def test_settings_are_checked_at_construction(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        OpenAIBackend({"model": "m"})
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1/")
    assert OpenAIBackend({"model": "m"}).url == "http://127.0.0.1:1/v1/chat/completions"
    with pytest.raises(ValueError, match="api_key_env"):
        OpenAIBackend({"model": "m", "api_key": "sk-oops"})
    with pytest.raises(ValueError, match="unknown sampling keys"):
        OpenAIBackend({"model": "m", "sampling": {"max_tokens": 5}})
    with pytest.raises(ValueError, match="http://"):
        OpenAIBackend({"model": "m", "base_url": "127.0.0.1:8000/v1"})
