"""The ``openai`` backend: any OpenAI-compatible chat server (``vllm serve``, SGLang, TGI, ...).

Each request is one ``POST {base_url}/chat/completions`` (non-streaming, ``n=1``) sent from a pool
of ``concurrency`` worker threads, each with its own ``requests.Session`` (kept-alive connection).
Responses are yielded as they finish, in completion order, so the caller's journal advances one
response at a time and a killed job loses only the requests in flight.

Failures stay per request: 5xx, 408, 429 (``Retry-After`` honoured), timeouts, refused/reset/dropped
connections, a body cut short and a 200 whose body is not a chat completion are retried with
exponential backoff (``backoff_s``, doubling, jittered, at most ``max_backoff_s``) up to
``max_retries`` times; then, or at once for any other 4xx (bad request, unknown model, context too
long), the request yields an "error" response whose ``error`` says what happened. The generator never
raises for one request, so the others are still returned (and journaled by ``generate``).

Images travel inline as base64 data URLs (``to_vllm_messages``). Sampling is seeded per request
(``seed``), which vLLM and SGLang honour. A reasoning parser's separate ``reasoning_content`` (or
``reasoning``) is put back in front of the answer as ``<think>\\n…\\n</think>\\n`` so that verification
sees the same full trace as from the offline backends; a trace cut by ``max_tokens`` before its
``</think>`` is left unclosed, as the model wrote it.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Iterator

import requests as requests_lib

from mmfr.generate.core import Request, Response
from mmfr.generate.role import as_role, ModelRole
from mmfr.generate.vllm import to_vllm_messages

log = logging.getLogger(__name__)

STOP_REASONS = {"stop": "stop", "eos_token": "stop", "stop_sequence": "stop",  # TGI says eos_token/stop_sequence
                "length": "length", "max_tokens": "length"}
RETRY_STATUS = {408, 429}  # and every 5xx
MAX_WARNINGS = 20  # failures logged one by one; a dead server must not flood the log
RETRY_FINISH = {"abort"}  # vLLM aborted the request (e.g. engine restarting): worth another try


class _Retry(Exception):
    """A transient failure: worth another attempt (after ``retry_after`` seconds if the server said)."""

    retry_after: float | None = None


class _Fatal(Exception):
    """A failure another attempt would repeat (a 4xx other than 408/429, an unusable request)."""


def server_message(resp: requests_lib.Response) -> str:
    """The error message in a server's error body: OpenAI's ``{"error": {"message"}}``, vLLM's older
    ``{"message"}``, FastAPI's ``{"detail"}``, else the start of the raw body."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for value in (err, data.get("message"), data.get("detail")):
            if value:
                return str(value)
    text = resp.text.strip()
    return text[:500] if text else "(empty body)"


def join_reasoning(reasoning: str, content: str, finish_reason: str) -> str:
    """A reasoning parser's split put back together as the model wrote it: the think block, then the
    answer. A trace cut by the token limit before any answer was never closed and stays unclosed."""
    if not reasoning.strip():
        return content
    reasoning = reasoning.strip("\n")
    if finish_reason == "length" and not content.strip():
        return "<think>\n" + reasoning
    return "<think>\n" + reasoning + "\n</think>\n" + content.lstrip("\n")


class OpenAIBackend:
    """Generation through an OpenAI-compatible HTTP server: the role's model (its revision is recorded
    only) and sampling; options ``base_url`` [$OPENAI_BASE_URL], ``api_key_env`` ["OPENAI_API_KEY"],
    ``concurrency`` [64], ``timeout_s`` [600], ``max_retries`` [5], ``backoff_s`` [1.0],
    ``max_backoff_s`` [60]. ``max_retries`` counts retries: at most ``1 + max_retries`` attempts per request. ``timeout_s`` bounds the connect and the wait for the response (the server
    sends nothing until a non-streamed completion is done)."""

    name = "openai"

    def __init__(self, role: ModelRole | dict):
        """Check the settings now (no request is sent). An API key in the config is refused by
        ``ModelRole.from_config``."""
        role = as_role(role, self.name)
        self.model = role.model
        base_url = role.option("base_url") or os.environ.get("OPENAI_BASE_URL", "")
        if not base_url:
            raise ValueError(f"the openai backend of model {self.model!r} needs a server: set 'base_url' in its "
                             "config block (e.g. http://127.0.0.1:8000/v1) or the OPENAI_BASE_URL environment variable")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} of model {self.model!r} must start with http:// or https://")
        self.url = base_url.rstrip("/") + "/chat/completions"
        key_env = role.option("api_key_env") or "OPENAI_API_KEY"
        api_key = os.environ.get(key_env, "")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.concurrency = int(role.option("concurrency", 64))
        self.timeout_s = float(role.option("timeout_s", 600))
        self.max_retries = int(role.option("max_retries", 5))
        self.backoff_s = float(role.option("backoff_s", 1.0))
        self.max_backoff_s = float(role.option("max_backoff_s", 60.0))
        if self.concurrency < 1 or self.timeout_s <= 0 or self.max_retries < 0 or self.backoff_s < 0:
            raise ValueError(f"model {self.model!r}: need concurrency >= 1, timeout_s > 0, max_retries >= 0 "
                             "and backoff_s >= 0")
        self.sampling = role.resolved_sampling()

    def payload(self, request: Request) -> dict:
        """The JSON body for one request. ``top_k`` and ``repetition_penalty`` are not OpenAI fields
        (vLLM, SGLang and TGI accept them): sent only when they change anything, so a strict server
        still takes the default sampling."""
        s = self.sampling
        body = {"model": self.model, "messages": to_vllm_messages(request.messages, request.images), "n": 1,
                "temperature": s["temperature"], "top_p": s["top_p"], "max_tokens": s["max_new_tokens"],
                "seed": request.seed}
        if s["top_k"] and s["top_k"] > 0:
            body["top_k"] = s["top_k"]
        if s["repetition_penalty"] != 1.0:
            body["repetition_penalty"] = s["repetition_penalty"]
        return body

    def _response(self, request: Request, key: str, data) -> Response:
        """A Response from a chat completion body; a body that is not one raises ``_Retry``."""
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
            content = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
            raw_reason = choice.get("finish_reason")
            usage = data.get("usage") or {}
            n_tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            raise _Retry(f"HTTP 200 but not a chat completion ({type(e).__name__}: {e}): {str(data)[:200]}") from e
        if raw_reason in RETRY_FINISH:
            raise _Retry(f"server finished the request with finish_reason {raw_reason!r}")
        reason = STOP_REASONS.get(raw_reason)
        text = join_reasoning(str(reasoning), str(content), reason or "")
        if reason is None:
            return Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index, text=text,
                            finish_reason="error", n_tokens=n_tokens,
                            error=f"server finish_reason {raw_reason!r} from {self.url}")
        return Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index, text=text,
                        finish_reason="empty" if not text.strip() else reason, n_tokens=n_tokens)

    def _attempt(self, session: requests_lib.Session, body: dict, request: Request, key: str) -> Response:
        """One POST; raises ``_Retry`` or ``_Fatal`` when it did not give a response."""
        try:
            resp = session.post(self.url, json=body, headers=self.headers, timeout=self.timeout_s)
        except requests_lib.Timeout as e:
            raise _Retry(f"timed out after {self.timeout_s:g}s ({type(e).__name__})") from e
        except requests_lib.ConnectionError as e:
            raise _Retry(f"connection failed ({type(e).__name__}: {e})") from e
        except (requests_lib.exceptions.ChunkedEncodingError, requests_lib.exceptions.ContentDecodingError) as e:
            raise _Retry(f"response cut short ({type(e).__name__}: {e})") from e
        except requests_lib.RequestException as e:
            raise _Retry(f"{type(e).__name__}: {e}") from e
        if resp.status_code == 200:
            try:
                data = resp.json()
            except ValueError as e:
                raise _Retry(f"HTTP 200 with a body that is not JSON: {resp.text[:200]!r}") from e
            return self._response(request, key, data)
        detail = f"HTTP {resp.status_code}: {server_message(resp)}"
        if resp.status_code in RETRY_STATUS or resp.status_code >= 500:
            err = _Retry(detail)
            err.retry_after = _retry_after(resp)
            raise err
        raise _Fatal(detail + " (not retried)")

    def _delay(self, retry: int, err: _Retry) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): doubling from ``backoff_s`` with
        jitter in [50%, 100%], capped, but never less than the server's ``Retry-After`` (capped too)."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1))
        delay = base * (0.5 + 0.5 * random.random())
        if err.retry_after is None:
            return delay
        return max(delay, min(err.retry_after, self.max_backoff_s))

    def _one(self, session: requests_lib.Session, request: Request, key: str, stop: threading.Event) -> Response:
        """The response to one request, after retries; never raises."""
        def error(text: str) -> Response:
            return Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index, text="",
                            finish_reason="error", error=text)

        try:
            body = self.payload(request)
        except ValueError as e:
            return error(f"request {request.sample_id}: {e}")
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._attempt(session, body, request, key)
            except _Fatal as e:
                return error(f"{e} [POST {self.url}, model {self.model!r}, attempt {attempts}]")
            except _Retry as e:
                if attempts > self.max_retries or stop.is_set():
                    why = "gave up" if not stop.is_set() else "stopped"
                    return error(f"{e} [POST {self.url}, model {self.model!r}; {why} after {attempts} attempts]")
                delay = self._delay(attempts, e)
                log.debug("request %s: %s; retry %d/%d in %.2fs", request.sample_id, e, attempts,
                          self.max_retries, delay)
                if stop.wait(delay):
                    return error(f"{e} [POST {self.url}; stopped after {attempts} attempts]")

    def generate(self, requests: list[Request], keys: list[str]) -> Iterator[Response]:
        """Yield one response per request as each finishes. At most ``2 * concurrency`` requests are
        queued at a time, so closing the generator early (a killed job) drops the queued ones and stops
        retries at once; requests already in flight finish or time out."""
        if not requests:
            return
        local, sessions, lock = threading.local(), [], threading.Lock()
        stop = threading.Event()

        def work(request: Request, key: str) -> Response:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests_lib.Session()
                with lock:
                    sessions.append(session)
            return self._one(session, request, key, stop)

        todo = iter(zip(requests, keys))
        pending: dict[Future, tuple[Request, str]] = {}
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)), thread_name_prefix="openai")

        def refill() -> None:
            while len(pending) < 2 * self.concurrency:
                item = next(todo, None)
                if item is None:
                    return
                pending[pool.submit(work, *item)] = item

        start, last_log, n_done, n_tokens, n_errors = time.time(), time.time(), 0, 0, 0
        try:
            refill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                finished = [(f, pending.pop(f)) for f in done]
                refill()  # keep the workers busy while the caller journals these
                for future, (request, key) in finished:
                    try:
                        resp = future.result()
                    except Exception as e:  # noqa: BLE001 - a bug in one request must not lose the others
                        resp = Response(key=key, sample_id=request.sample_id, sample_index=request.sample_index,
                                        text="", finish_reason="error", error=f"{type(e).__name__}: {e}")
                    n_done += 1
                    n_tokens += resp.n_tokens
                    n_errors += resp.finish_reason == "error"
                    if resp.finish_reason == "error" and n_errors <= MAX_WARNINGS:
                        log.warning("request %s failed: %s%s", request.sample_id, resp.error,
                                    " (further failures are only counted)" if n_errors == MAX_WARNINGS else "")
                    yield resp
                if time.time() - last_log > 30 or not pending:
                    last_log, elapsed = time.time(), max(time.time() - start, 1e-9)
                    log.info("%d/%d requests, %d errors, %.1f req/s, %.0f tok/s", n_done, len(requests),
                             n_errors, n_done / elapsed, n_tokens / elapsed)
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for session in sessions:
                session.close()


def _retry_after(resp: requests_lib.Response) -> float | None:
    """The ``Retry-After`` header in seconds, when it is a number."""
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None
