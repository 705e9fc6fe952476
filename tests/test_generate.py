"""The generation interface: content keys, the journal, resume without regenerating."""

import json

from mmfr.generate import Journal, ModelRole, Request, Response, generate, request_key

SAMPLING = {"temperature": 1.0, "max_new_tokens": 8}


def role(sampling=SAMPLING, **changes) -> ModelRole:
    return ModelRole(**{"backend": "transformers", "model": "m", "revision": "r1", "sampling": sampling, **changes})


MODEL = role()


def req(i, text="How many?", image=b"img", index=0):
    messages = ({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},)
    return Request(f"s{i}", messages, (image,), index, seed=i)


class CountingBackend:
    """Echoes the request and counts every request it is asked to generate."""

    name = "counting"

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = [], fail_after

    def generate(self, requests, keys):
        for r, k in zip(requests, keys):
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.calls.append(k)
            yield Response(k, r.sample_id, r.sample_index, f"answer {r.sample_id}", "stop", 2)


def test_key_changes_when_and_only_when_content_changes():
    base = request_key(MODEL, req(1))
    assert base == request_key(MODEL, req(1))
    assert base == request_key(role(dict(reversed(list(SAMPLING.items())))), req(1))  # order-free
    assert base != request_key(role(revision="r2"), req(1))
    assert base != request_key(role(model="m2"), req(1))
    assert base != request_key(role({**SAMPLING, "temperature": 0.5}), req(1))
    assert base != request_key(MODEL, req(1, text="How many circles?"))
    assert base != request_key(MODEL, req(1, image=b"other"))
    assert base != request_key(MODEL, req(1, index=1))
    assert base != request_key(MODEL, req(1), prompt_version="abc")
    # the backend name and batch size are not content: switching them keeps the cache
    assert base == request_key(role(backend="vllm", batch_size=64), req(1))


def test_killed_job_resumes_without_regenerating(tmp_path):
    journal = str(tmp_path / "j.jsonl")
    reqs = [req(i) for i in range(10)]
    keys = [request_key(MODEL, r) for r in reqs]
    first = CountingBackend(fail_after=6)
    try:
        generate(first, reqs, keys, journal)
    except KeyboardInterrupt:
        pass
    with open(journal, "a") as f:
        f.write('{"key": "torn')  # a write cut short by the kill
    second = CountingBackend()
    out = generate(second, reqs, keys, journal)
    assert len(first.calls) == 6 and len(second.calls) == 4
    assert not set(first.calls) & set(second.calls)
    assert [out[k].text for k in keys] == [f"answer s{i}" for i in range(10)]
    done = Journal(journal).load()
    assert set(done) == set(keys)
    lines = [json.loads(x) for x in open(journal) if x.strip().endswith("}")]
    assert len(lines) == 10  # each request journaled exactly once


def test_identical_requests_are_generated_once(tmp_path):
    reqs = [req(1), req(1)]
    keys = [request_key(MODEL, r) for r in reqs]
    backend = CountingBackend()
    generate(backend, reqs, keys, None)
    assert len(backend.calls) == 1


class FlakyBackend(CountingBackend):
    """Fails the first request it sees once, as a backend error (not an exception)."""

    def generate(self, requests, keys):
        for r, k in zip(requests, keys):
            self.calls.append(k)
            if len(self.calls) == 1:
                yield Response(k, r.sample_id, r.sample_index, "", "error", 0, "CUDA OOM")
            else:
                yield Response(k, r.sample_id, r.sample_index, "ok", "stop", 1)


def test_failed_requests_are_not_journaled_and_are_retried(tmp_path):
    journal = str(tmp_path / "j.jsonl")
    reqs = [req(i) for i in range(3)]
    keys = [request_key(MODEL, r) for r in reqs]
    out = generate(FlakyBackend(), reqs, keys, journal)
    assert [out[k].finish_reason for k in keys] == ["error", "stop", "stop"]
    retry = CountingBackend()
    out = generate(retry, reqs, keys, journal)
    assert retry.calls == [keys[0]] and out[keys[0]].finish_reason == "stop"


def test_resharding_regenerates_nothing(tmp_path):
    """Responses are found in the other journals of the same stage and source, by index."""
    reqs = [req(i) for i in range(15)]
    keys = [request_key(MODEL, r) for r in reqs]
    old = [str(tmp_path / "traces/src" / f"0000{i}.parquet.jsonl") for i in range(2)]
    generate(CountingBackend(), reqs[0:6], keys[0:6], old[0])
    generate(CountingBackend(), reqs[6:10], keys[6:10], old[1])
    # now three shards instead of two: the first new shard takes requests 0-4 and 10-14
    backend = CountingBackend()
    new = str(tmp_path / "traces/src/00000-of-3.parquet.jsonl")
    out = generate(backend, reqs[0:5] + reqs[10:15], keys[0:5] + keys[10:15], new)
    assert sorted(backend.calls) == sorted(keys[10:15])
    assert [out[k].text for k in keys[0:5]] == [f"answer s{i}" for i in range(5)]
    assert set(Journal(new).load()) == set(keys[0:5] + keys[10:15])  # complete on its own
    # all found elsewhere: the backend factory is never called (no model load)
    called = []
    again = str(tmp_path / "traces/src/00001-of-3.parquet.jsonl")
    generate(lambda: called.append(1) or CountingBackend(), reqs[5:10], keys[5:10], again)
    assert called == []


def append(journal: Journal, responses: list[Response]) -> None:
    with journal.writer() as write:
        for r in responses:
            write(r)


def test_index_lookup_reads_by_offset_and_skips_torn_lines(tmp_path):
    journal = Journal(str(tmp_path / "j.jsonl"))
    responses = [Response(f"k{i}", f"s{i}", 0, f"text ünïcode {i}", "stop", 3) for i in range(5)]
    append(journal, responses[:3])
    with open(journal.path, "ab") as f:
        f.write(b'{"key": "k3", "torn')
    append(journal, responses[3:])
    found = journal.lookup({"k1", "k3", "k4", "missing"})
    assert {k: r.text for k, r in found.items()} == {"k1": "text ünïcode 1", "k3": "text ünïcode 3",
                                                      "k4": "text ünïcode 4"}
    assert set(journal.load()) == {f"k{i}" for i in range(5)}


def test_a_thinking_template_s_open_think_tag_is_restored(tmp_path):
    class Thinking(CountingBackend):
        def generate(self, requests, keys):
            for r, k in zip(requests, keys):
                yield Response(k, r.sample_id, r.sample_index, "I count 3.\n</think>\n<answer>3</answer>", "stop", 9)

    out = generate(Thinking(), [req(1)], [request_key(MODEL, req(1))], str(tmp_path / "j.jsonl"))
    (resp,) = out.values()
    assert resp.text.startswith("<think>\nI count 3.") and Journal(str(tmp_path / "j.jsonl")).load()[resp.key].text == resp.text


def test_an_index_cut_short_by_a_kill_is_rebuilt(tmp_path):
    journal = Journal(str(tmp_path / "j.jsonl"))
    responses = [Response(f"k{i}", f"s{i}", 0, f"t{i}", "stop", 1) for i in range(4)]
    append(journal, responses[:2])
    with open(journal.path, "ab") as f:  # killed after the journal line, before its index line
        f.write((responses[2].to_json() + "\n").encode())
    with open(journal.index_path, "a") as idx:  # ... or in the middle of an index line
        idx.write("k2 12")
    append(journal, responses[3:])
    assert set(journal.lookup({"k0", "k1", "k2", "k3"})) == {"k0", "k1", "k2", "k3"}
    assert all(len(line.split()) == 3 for line in open(journal.index_path))


def test_reopening_a_whole_journal_adds_nothing_and_keeps_its_index(tmp_path):
    """A journal that ends in a newline is not torn: reopening it twice adds no blank line, and its
    index (complete) is not rebuilt."""
    journal = Journal(str(tmp_path / "j.jsonl"))
    append(journal, [Response("k0", "s0", 0, "t0", "stop", 1)])
    index_mtime = (tmp_path / "j.jsonl.idx").stat().st_mtime_ns
    for _ in range(2):
        with journal.writer():
            pass
    assert open(journal.path, "rb").read().count(b"\n") == 1
    assert (tmp_path / "j.jsonl.idx").stat().st_mtime_ns == index_mtime
    append(journal, [Response("k1", "s1", 0, "t1", "stop", 1)])
    lines = open(journal.path, "rb").read().split(b"\n")
    assert len(lines) == 3 and lines[-1] == b"" and all(lines[:2])
    assert len(open(journal.index_path).readlines()) == 2


def test_an_edited_journal_line_is_refused_and_named(tmp_path):
    """Every line carries a sha256 of its response: an edit is found on load (the request is
    generated again, nothing edited flows on) and by check_lines (which the audit runs)."""
    from mmfr.generate import check_lines

    path = str(tmp_path / "j.jsonl")
    reqs = [req(i) for i in range(3)]
    keys = [request_key(MODEL, r) for r in reqs]
    generate(CountingBackend(), reqs, keys, path)
    assert check_lines(path) == []
    text = open(path, encoding="utf-8").read()
    open(path, "w", encoding="utf-8").write(text.replace("answer s1", "answer 42"))
    assert [n for n, _ in check_lines(path)] == [2]
    assert set(Journal(path).load()) == {keys[0], keys[2]}
    again = CountingBackend()
    out = generate(again, reqs, keys, path)
    assert again.calls == [keys[1]] and out[keys[1]].text == "answer s1"
    # a line without its seal (written by hand) is named too, though still read
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"key": "k9", "sample_id": "s9", "sample_index": 0, "text": "x",
                            "finish_reason": "stop"}) + "\n")
    assert [why for _, why in check_lines(path)][-1] == "no sha256"


def test_a_local_model_is_keyed_by_what_determines_its_outputs(tmp_path):
    """Metrics, logs and training state do not change a checkpoint's key; weights, config and
    tokenizer files do."""
    from mmfr.generate import resolve_model

    model = tmp_path / "models/sft"
    model.mkdir(parents=True)
    for name, data in [("model.safetensors", b"weights"), ("config.json", b"{}"), ("tokenizer.json", b"{}"),
                       ("metrics.json", b'{"train_time_s": 12.5}'), ("training_args.bin", b"runs/Dec02_12-48"),
                       ("checkpoint-10/model.safetensors", b"old")]:
        (model / name).parent.mkdir(exist_ok=True)
        (model / name).write_bytes(data)
    key = resolve_model(ModelRole("transformers", str(model))).revision
    assert key.startswith("sha256:")
    (model / "metrics.json").write_bytes(b'{"train_time_s": 13.1}')
    (model / "checkpoint-10/model.safetensors").write_bytes(b"older")
    (model / "trainer_log.txt").write_bytes(b"step 1")
    (model / "training_args.bin").write_bytes(b"runs/Dec02_12-55")
    assert resolve_model(ModelRole("transformers", str(model))).revision == key
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        before = (model / name).read_bytes()
        (model / name).write_bytes(before + b" ")
        assert resolve_model(ModelRole("transformers", str(model))).revision != key, name
        (model / name).write_bytes(before)
    assert resolve_model(ModelRole("transformers", str(model), "pinned")).revision == "pinned"


def test_a_model_role_is_built_once_from_its_block_and_names_its_key():
    import pytest

    from mmfr.generate import RoleError

    block = {"backend": "vllm", "model": "Qwen/Qwen3-VL-8B-Instruct", "revision": "abc", "tensor_parallel_size": 8,
             "sampling": {"temperature": 0.6, "max_new_tokens": 100}, "batch_size": 64, "dtype": "bfloat16"}
    r = ModelRole.from_config(block, "models.trace")
    assert (r.backend, r.model, r.revision, r.tensor_parallel_size, r.batch_size) == \
        ("vllm", "Qwen/Qwen3-VL-8B-Instruct", "abc", 8, 64)
    assert r.options == {"dtype": "bfloat16"} and r.config_key("model") == "models.trace.model"
    assert r.resolved_sampling()["top_p"] == 1.0 and r.sampling == block["sampling"]
    assert ModelRole.from_config(r) is r and ModelRole.from_config(r, "models.judge").key == "models.judge"
    # the key a request gets is the same whichever way the block was given
    assert request_key(r, req(1)) == request_key(ModelRole.from_config(dict(reversed(list(block.items())))), req(1))
    for bad, named in [({**block, "backend": "tgi"}, "models.trace.backend: unknown backend 'tgi'"),
                       ({**block, "sampling": {"temprature": 1}}, "models.trace.sampling: unknown sampling keys"),
                       ({**block, "api_key": "sk-x"}, "never put an API key in the config"),
                       ({"backend": "vllm"}, "models.trace: a model block needs 'backend' and 'model'")]:
        with pytest.raises(RoleError, match=named.replace("(", r"\(").replace(")", r"\)")):
            ModelRole.from_config(bad, "models.trace")


def test_a_teacher_is_sent_its_image_in_the_configured_format_and_the_key_follows_it():
    """image_format: a stored JPEG goes to a png teacher re-encoded (pixels unchanged), a stored PNG as
    it is (same key as with `stored`); jpeg at a quality re-encodes a PNG. The key follows the bytes sent."""
    import io

    from PIL import Image

    from mmfr.annotate import _requests

    def encoded(fmt: str) -> bytes:
        out = io.BytesIO()
        Image.linear_gradient("L").convert("RGB").resize((64, 48)).save(out, fmt)
        return out.getvalue()

    records = [{"id": f"r{fmt}", "image": {"bytes": encoded(fmt)}, "image_phash": None, "metadata": "{}",
                "answer": "1", "answer_type": "number", "choices": None, "original_question": "q"}
               for fmt in ("PNG", "JPEG")]

    def sent(**options):
        role = ModelRole.from_config({"backend": "scripted", "model": "m", **options}, "models.trace")
        reqs = _requests(records, "trace", lambda r: "q", 1, 0, role)
        return [r.images[0] for r in reqs], [request_key(role, r) for r in reqs]

    (png, jpeg), keys = sent()
    (png2, as_png), keys_png = sent(image_format="png")
    assert png2 == png and keys_png[0] == keys[0]
    assert Image.open(io.BytesIO(as_png)).format == "PNG" and keys_png[1] != keys[1]
    assert list(Image.open(io.BytesIO(as_png)).getdata()) == list(Image.open(io.BytesIO(jpeg)).convert("RGB").getdata())
    (low, same_jpeg), _ = sent(image_format="jpeg", image_quality=20)
    assert Image.open(io.BytesIO(low)).format == "JPEG" and same_jpeg == jpeg
