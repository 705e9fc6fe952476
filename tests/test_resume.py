"""Kill -9 a generation job at random points, resume it, and check the journal's promise: no
request missing, none duplicated, none regenerated.

The job (tests/resume_job.py) runs ``trace_shard`` in a subprocess with a scripted teacher that
takes a few milliseconds per request and logs every request it generates (one key per line,
flushed) just before the response goes to the journal. So, for each run:

* a key in the run's log that was already in the journal when the run started was regenerated
  (never allowed);
* a key in the log but not in the journal after the kill was generated and lost in flight: the
  scripted backend yields one response at a time, so at most one per kill, and that is the only
  way a request may be generated twice overall;
* a key new in the journal but not in the log came from nowhere (never allowed).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmfr import schema
from mmfr.demo import synth
from mmfr.demo.sources import synthetic_rows
from mmfr.generate import Journal
from mmfr.sources import ImagePolicy, to_canonical

pytestmark = pytest.mark.workflow  # kills and resumes generation jobs in subprocesses: not in `make test-fast`

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "tests" / "resume_job.py"
PER_FAMILY = 38  # 4 families: 152 records, 304 requests with two traces each
N_SAMPLES = 2
LATENCY = 0.005  # seconds per request: about 1.5 s of generation for the whole shard
KEY_LINE = 65  # a log line: a sha256 hex key and a newline
DEADLINE = 60  # seconds any one run may take before the test gives up on it
SEED = int(os.environ.get("MMFR_RESUME_SEED", "20240611"))  # other kill points: set another seed


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> tuple[str, set[tuple[str, int]]]:
    """A shard of synthetic canonical records (the scripted teacher needs their scene programs)
    and the (id, sample_index) pairs a trace job over it must produce."""
    rows = [r for family in synth.FAMILIES
            for r in synthetic_rows({"kind": "synthetic", "family": family, "n": PER_FAMILY}, 11)]
    # sorted by id, as shards are: the families (and traces with non-ASCII text) are mixed
    records = sorted((to_canonical(r, "synthetic", "CC0-1.0", ImagePolicy()) for r in rows), key=lambda r: r["id"])
    path = tmp_path_factory.mktemp("shard") / "00000.parquet"
    schema.write_table(pa.Table.from_pylist(records, schema=schema.RECORD), str(path))
    return str(path), {(r["id"], i) for r in records for i in range(N_SAMPLES)}


class Job:
    """One working directory in which the job is started, killed and resumed."""

    def __init__(self, root: Path, shard: str):
        self.root, self.shard = root, shard
        self.journal = str(root / "journal" / "00000.parquet.jsonl")  # alone in its folder
        self.out = str(root / "traces" / "00000.parquet")
        os.makedirs(root / "traces", exist_ok=True)
        os.makedirs(root / "logs", exist_ok=True)
        self.runs = 0

    def start(self) -> tuple[subprocess.Popen, str]:
        self.runs += 1
        log = str(self.root / "logs" / f"run{self.runs}.log")
        stderr = open(self.root / "logs" / f"run{self.runs}.stderr", "wb")
        env = {**os.environ, "MMFR_SCRIPTED_LOG": log,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, str(JOB), self.shard, self.out, "--journal", self.journal,
                                 "--n-samples", str(N_SAMPLES), "--latency", str(LATENCY)],
                                cwd=REPO, env=env, stdout=stderr, stderr=stderr)
        stderr.close()
        return proc, log

    def stderr(self) -> str:
        return (self.root / "logs" / f"run{self.runs}.stderr").read_text(errors="replace")[-3000:]

    def run(self) -> list[str]:
        """Run to completion; return the keys this run generated."""
        proc, log = self.start()
        assert proc.wait(timeout=DEADLINE) == 0, self.stderr()
        return generated(log)


def generated(log: str) -> list[str]:
    if not os.path.exists(log):
        return []
    lines = Path(log).read_text(encoding="ascii").split("\n")
    assert lines[-1] == "", "a log line is written and flushed in one go"
    return lines[:-1]


def journal_entries(path: str, check_load: bool = True) -> tuple[dict[str, dict], list[bytes]]:
    """The complete entries of a journal by key, asserting that no key is there twice, and the
    torn fragments (lines cut short by a kill, later closed off by a resumed run). With
    ``check_load``, ``Journal.load`` must read the same keys."""
    entries, torn = {}, []
    if not os.path.exists(path):
        return entries, torn
    data = Path(path).read_bytes()
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            torn.append(line)
            continue
        assert entry["key"] not in entries, f"key {entry['key']} journaled twice"
        entries[entry["key"]] = entry
    if check_load:  # the journal's own reading agrees with ours
        assert set(Journal(path).load()) == set(entries)
    return entries, torn


def kill_at(proc: subprocess.Popen, log: str, how: str, rng: random.Random, lines: tuple[int, int] = (1, 30)) -> None:
    """SIGKILL the job at a random point of the kind ``how`` names (after ``lines`` generations,
    a random number in that range, for "random" and "mid-write")."""
    if how == "early":  # while it imports or reads the shard: nothing generated yet
        time.sleep(rng.uniform(0.0, 0.05))
    elif how == "timed":  # a plain random delay from the start: anywhere in startup or generation
        time.sleep(rng.uniform(0.1, 0.9))  # at most 180 requests of generation
    else:  # after a random number of generations, then somewhere within the next request
        target, deadline = rng.randint(*lines) * KEY_LINE, time.monotonic() + DEADLINE
        while (os.path.getsize(log) if os.path.exists(log) else 0) < target:
            assert proc.poll() is None, f"job ended before it could be killed:\n{proc.args}"
            assert time.monotonic() < deadline, "job made no progress"
            if how == "random":
                time.sleep(0.0005)
            # "mid-write": spin, and kill the moment a response is logged, when its journal line
            # is about to be written
        if how == "random":
            time.sleep(rng.uniform(0.0, LATENCY))
    assert proc.poll() is None, "job finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=DEADLINE) == -signal.SIGKILL


def check_output(out: str, journal: str, expected: set[tuple[str, int]]) -> None:
    """Each (id, sample_index) exactly once, and each row is the journaled response."""
    rows = pq.read_table(out).to_pylist()
    pairs = [(r["id"], r["sample_index"]) for r in rows]
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected
    entries, _ = journal_entries(journal)
    by_pair = {(e["sample_id"], e["sample_index"]): e for e in entries.values()}
    assert len(by_pair) == len(entries) == len(expected)
    for r in rows:
        e = by_pair[(r["id"], r["sample_index"])]
        assert (r["response"], r["finish_reason"], r["n_tokens"], r["error"]) == \
            (e["text"], e["finish_reason"], e["n_tokens"], e["error"])


@pytest.fixture(scope="module")
def reference(shard, tmp_path_factory) -> bytes:
    """The output of an uninterrupted run in a fresh directory."""
    job = Job(tmp_path_factory.mktemp("reference"), shard[0])
    keys = job.run()
    assert len(keys) == len(set(keys)) == len(shard[1])
    check_output(job.out, job.journal, shard[1])
    return Path(job.out).read_bytes()


# ---------------------------------------------------------------- tests

def test_kill_9_at_random_points_then_resume(shard, reference, tmp_path):
    path, expected = shard
    job = Job(tmp_path, path)
    rng = random.Random(SEED)
    plan = ["early", "timed", "mid-write", "random", "mid-write", "random"]
    logs, lost_in_flight, torn_seen = [], 0, 0
    for how in plan:
        before, _ = journal_entries(job.journal)
        left = len(expected) - len(before)
        assert left > 10, "the kills so far left too little for this one to land mid-job"
        proc, log = job.start()
        kill_at(proc, log, how, rng, lines=(1, min(30, left - 10)))
        after, torn = journal_entries(job.journal)
        keys = generated(log)
        logs.append(keys)
        new = set(after) - set(before)
        assert set(before) <= set(after), "a kill never loses what was journaled"
        assert len(keys) == len(set(keys)), f"{how}: a request generated twice in one run"
        assert not set(keys) & set(before), f"{how}: journaled requests were generated again"
        assert new <= set(keys), f"{how}: journal entries this run did not generate"
        in_flight = set(keys) - set(after)
        assert len(in_flight) <= 1, f"{how}: {len(in_flight)} generated requests lost (one at most is in flight)"
        lost_in_flight += len(in_flight)
        torn_seen = len(torn)
        if how == "early":
            assert keys == [] and after == before
    # the resumed run generates exactly what is missing, and finishes the job
    before, _ = journal_entries(job.journal)
    assert 0 < len(before) < len(expected), "the kills landed mid-job"
    last = job.run()
    assert len(last) == len(set(last))
    after, torn = journal_entries(job.journal)
    assert set(last) == set(after) - set(before), "the completing run generated only what was missing"
    assert len(torn) == torn_seen <= len(plan), "fragments torn by kills stay closed off, no new ones"
    assert all(not t.endswith(b"}") for t in torn)
    # over all runs: every request generated once, apart from at most one lost in flight per kill
    counts = collections.Counter(k for keys in logs + [last] for k in keys)
    assert set(counts) == set(after) and len(after) == len(expected)
    twice = {k: c for k, c in counts.items() if c > 1}
    assert sum(c - 1 for c in twice.values()) == lost_in_flight <= len(plan)
    check_output(job.out, job.journal, expected)
    assert Path(job.out).read_bytes() == reference
    # one more run: nothing to generate, the same bytes, the journal untouched
    journal_bytes = Path(job.journal).read_bytes()
    assert job.run() == []
    assert Path(job.out).read_bytes() == reference and Path(job.journal).read_bytes() == journal_bytes
    print(f"\nkills: {len(plan)}, generated per run: {[len(k) for k in logs + [last]]}, "
          f"lost in flight: {lost_in_flight}, torn lines: {len(torn)}")


def _cut_mid_json(line: bytes) -> bytes:
    return line[: len(line) // 2]


def _cut_inside_a_character(line: bytes) -> bytes:
    """Cut between the bytes of a multi-byte UTF-8 character (traces hold °, π, √, ...)."""
    for i, b in enumerate(line):
        if b >= 0xC0:  # the lead byte of a multi-byte character
            return line[: i + 1]
    raise AssertionError("no multi-byte character in this line")


def _cut_newline_only(line: bytes) -> bytes:
    return line  # the whole JSON object made it to disk, only its newline did not


@pytest.mark.parametrize("cut, regenerated", [
    (_cut_mid_json, True), (_cut_inside_a_character, True), (_cut_newline_only, False)],
    ids=["mid-json", "inside-a-utf8-character", "before-the-newline"])
def test_resume_repairs_a_journal_line_torn_by_the_kill(shard, reference, tmp_path, cut, regenerated):
    """A job dies while a journal line is being written. SIGKILL alone does not split one write()
    to a local file, but a full disk, a crash of the machine or a network filesystem can leave a
    partial last line; so: kill the job, cut the journal short inside a line, and resume."""
    path, expected = shard
    job = Job(tmp_path, path)
    proc, log = job.start()
    kill_at(proc, log, "random", random.Random(7), lines=(40, 60))
    entries, torn = journal_entries(job.journal)
    assert entries and not torn
    data = Path(job.journal).read_bytes()
    lines = data.split(b"\n")[:-1]
    # the victim: the last line, or for the multi-byte cut the last line holding such a character
    # (the lines after it are dropped: they had not been written yet)
    at = next(i for i in range(len(lines) - 1, -1, -1)
              if cut is not _cut_inside_a_character or any(b >= 0xC0 for b in lines[i]))
    victim = json.loads(lines[at])["key"]
    fragment = cut(lines[at])
    Path(job.journal).write_bytes(b"".join(x + b"\n" for x in lines[:at]) + fragment)
    before = set(journal_entries(job.journal, check_load=False)[0])  # the resumed job reads it
    assert (victim not in before) == regenerated
    resumed = job.run()
    after, torn = journal_entries(job.journal)
    assert set(resumed) == set(after) - before and len(resumed) == len(set(resumed))
    assert (victim in resumed) == regenerated
    assert torn == ([fragment] if regenerated else [])  # kept, but closed off by a newline
    if regenerated:
        assert Path(job.journal).read_bytes().startswith(b"".join(x + b"\n" for x in lines[:at]) + fragment + b"\n")
    check_output(job.out, job.journal, expected)
    assert Path(job.out).read_bytes() == reference
