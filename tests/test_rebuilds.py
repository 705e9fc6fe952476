"""Partial rebuilds, resumes and audits as a user meets them after a finished build: the same config
given another way plans nothing, the README's commands run as written, a missing artifact is
rebuilt, an edited journal is found, `make clean-demo` deletes only the demo's files, and a build
killed with kill -9 at three points resumes to the same bytes without generating anything twice."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import DEMO_CONFIGS, REPO, snakemake, snakemake_command

pytestmark = pytest.mark.workflow  # runs the workflow with Snakemake: not in `make test-fast`

BIN = Path(sys.executable).parent


def copy_of(demo_run: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "copy"
    shutil.copytree(demo_run, workdir, symlinks=True)
    return workdir


def planned(proc: subprocess.CompletedProcess) -> dict[str, int]:
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    block = out.split("Job stats:")[1].split("\n\n")[0]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+(\d+)$", block, re.M)}
    counts.pop("total", None)
    return counts


def reordered(value):
    """The same mapping with every key order reversed."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


# ---------------------------------------------------------------- 1. the same config, given another way

def test_the_same_config_in_another_key_order_plans_nothing(demo_run, tmp_path):
    tiny = yaml.safe_load((REPO / "tests/tiny.yaml").read_text())
    other = tmp_path / "tiny-reordered.yaml"
    other.write_text(yaml.safe_dump(reordered(tiny), sort_keys=False))
    assert yaml.safe_load(other.read_text()) == tiny
    assert planned(snakemake(demo_run, "-n", "all", configs=("recipes/demo.yaml", str(other)))) == {}
    # a value given again on the command line, after the overlays, is the same config too
    seed = yaml.safe_load((REPO / "recipes/demo.yaml").read_text()).get("seed", 0)
    again = snakemake(demo_run, "-n", "all", "--config", f"seed={seed}")
    assert planned(again) == {}


def test_regrouping_plans_nothing_and_a_rebuilt_shard_reruns_its_own_group_alone(demo_run, tmp_path):
    """The group jobs' markers are temporary, carry no content and are named by the shard alone; a
    group job's inputs are its source's (the std folder; the list of the source's clean shards), and
    its shards are those of its markers: packing the shards into jobs of another size finds every
    output of the build current. A clean shard rebuilt afterwards reruns its own caption job and that
    one's group job, not the other groups of its source (the list takes its shards `ancient`)."""
    overlay = tmp_path / "grouping.yaml"
    overlay.write_text("grouping: {clean_rows: 1, caption_rows: 1}\n")
    configs = ("recipes/demo.yaml", "tests/tiny.yaml", str(overlay))
    assert planned(snakemake(demo_run, "-n", "all", configs=configs)) == {}

    workdir = copy_of(demo_run, tmp_path)
    shard = workdir / "data/clean/synth_counting/00001.parquet"
    pq.write_table(pq.read_table(shard), shard, compression="gzip")  # other bytes, as a rebuild leaves
    jobs = planned(snakemake(workdir, "-n", "all", configs=configs))
    stage_jobs = {rule: n for rule, n in jobs.items() if rule.startswith(("clean", "caption", "list_shards"))}
    assert stage_jobs == {"caption_generate_synth_counting_00001": 1, "caption": 1}, jobs


# ---------------------------------------------------------------- 2. the README's commands

def readme_commands() -> list[str]:
    """Every command the README gives: the lines of its ```bash blocks, and each inline
    `snakemake ...` span (which may wrap across lines)."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    inline = [" ".join(span.split()) for span in re.findall(r"(?<!`)`(snakemake [^`]+)`", text)]
    return [*blocks, *inline]


def test_every_readme_command_runs_as_written(tmp_path):
    """In a fresh copy of the repository, each command runs as written: snakemake as a dry run (its
    options and targets as given, `-n` added; `--report` left out), make as `make -n`."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    repo = tmp_path / "repo"
    for name in files:
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    (repo / "my.yaml").write_text("seed: 0\n")  # the README's "your own overlay"
    shims = tmp_path / "shims"
    shims.mkdir()
    # a report needs a finished build (test_workflow makes one from the demo run): here its command
    # is checked as a dry run of the same profile, config and targets
    (shims / "snakemake").write_text(
        "#!/bin/bash\nargs=()\nwhile [ $# -gt 0 ]; do\n"
        '  if [ "$1" = --report ]; then shift 2; continue; fi\n  args+=("$1"); shift\ndone\n'
        f'exec "{BIN}/snakemake" "${{args[@]}}" -n\n')
    make = shutil.which("make")
    assert make, "make is needed for the README's first commands"
    (shims / "make").write_text(f'#!/bin/sh\nexec "{make}" -n "$@"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}:{BIN}:{os.environ['PATH']}"}
    commands = readme_commands()
    assert len(commands) >= 6
    assert any("--configfile config.yaml recipes/demo.yaml recipes/lgt-demo.yaml" in c for c in commands)

    def run(command):  # dry runs take no lock: two at a time (each is mostly one core parsing)
        return command, subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=repo, env=env,
                                       capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        for command, proc in pool.map(run, dict.fromkeys(commands)):
            assert proc.returncode == 0, \
                f"README command failed:\n{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


# ---------------------------------------------------------------- 4. config errors, before any job

@pytest.mark.parametrize("overlay, named", [
    ("sede: 99\n", "sede: unknown key (did you mean 'seed'?"),
    ("verify: {min_cot_wrds: 10}\n", "verify.min_cot_wrds: unknown key (did you mean 'min_cot_words'?"),
    ("subsets:\n  - {name: mfr123k, where: 'pass_rat = 0'}\n", "subsets[0].where (mfr123k)"),
    ("benchmarks:\n  - {name: mine, kind: hf, adapter: mathvista, hf_id: ./nowhere/mathvista, split: testmini,"
     " license: x}\n", "benchmarks[0].hf_id (mine): the local path './nowhere/mathvista' does not exist"),
])
def test_a_config_error_stops_the_build_before_any_job_naming_the_key(tmp_path, overlay, named):
    bad = tmp_path / "bad.yaml"
    bad.write_text(overlay)
    workdir = tmp_path / "wd"
    proc = snakemake(workdir, "-n", "all", configs=(*DEMO_CONFIGS, str(bad)), check=False)
    assert proc.returncode != 0 and named in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert not (workdir / "data").exists()


# ---------------------------------------------------------------- 3. a missing artifact

def test_a_missing_intermediate_artifact_is_rebuilt(demo_run, tmp_path):
    workdir = copy_of(demo_run, tmp_path)
    shard = "data/verified/synth_geometry/00000.parquet"
    before = hashlib.sha256((workdir / shard).read_bytes()).hexdigest()
    subset = {p.name: p.read_bytes() for p in (workdir / "data/subsets/mfr586k").glob("*.parquet")}
    (workdir / shard).unlink()
    plan = planned(snakemake(workdir, "-n", "datasets"))
    assert plan["verify"] == 1 and plan["pass_rate"] == 1 and plan["subset"] >= 1, plan
    assert "verify" in planned(snakemake(workdir, "-n", "all"))
    snakemake(workdir, "datasets")
    assert hashlib.sha256((workdir / shard).read_bytes()).hexdigest() == before
    assert {p.name: p.read_bytes() for p in (workdir / "data/subsets/mfr586k").glob("*.parquet")} == subset


# ---------------------------------------------------------------- 6. journals under audit

def test_an_edited_journal_is_found_by_the_audit_and_not_used(demo_run, tmp_path):
    workdir = copy_of(demo_run, tmp_path)
    trace = "data/traces/synth_geometry/00000.parquet"
    journal = workdir / "data/journal/traces/synth_geometry/00000.parquet.jsonl"
    audit = [str(BIN / "mmfr"), "audit", trace, "--no-code"]
    assert subprocess.run(audit, cwd=workdir, capture_output=True, text=True).returncode == 0
    record = json.loads((workdir / "provenance" / (trace + ".json")).read_text())
    assert [j["path"] for j in record["journals"]] == [str(journal.relative_to(workdir))]
    cleaned = json.loads((workdir / "provenance/data/clean/synth_geometry/00000.parquet.json").read_text())
    assert "00000.parquet.clean.jsonl" in [Path(j["path"]).name for j in cleaned["journals"]]
    lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
    first = json.loads(lines[0])
    original = first["text"]
    first["text"] = original.replace("<answer>", "<answer>42 ", 1)  # a quiet edit of an answer
    lines[0] = json.dumps(first, sort_keys=True, ensure_ascii=False) + "\n"
    journal.write_text("".join(lines), encoding="utf-8")
    found = subprocess.run(audit, cwd=workdir, capture_output=True, text=True)
    assert found.returncode == 1
    assert any(line.split()[:2] == ["journal", trace] and "line 1" in line for line in found.stdout.splitlines()), \
        found.stdout
    # a rerun of the trace job regenerates that response: nothing edited reaches the traces
    table = pq.read_table(workdir / trace).to_pylist()
    snakemake(workdir, trace, "-R", "trace")
    assert pq.read_table(workdir / trace).to_pylist() == table
    # an edit whose line is sealed again is still found: the journal no longer begins with the bytes
    # the rebuilt traces were built from
    from mmfr.generate import content_sha256

    lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
    edited = json.loads(lines[0])
    edited.pop("sha256")
    edited["sha256"] = content_sha256(edited)
    lines[0] = json.dumps(edited, sort_keys=True, ensure_ascii=False) + "\n"
    journal.write_text("".join(lines), encoding="utf-8")
    resealed = subprocess.run(audit, cwd=workdir, capture_output=True, text=True)
    findings = [line.split(None, 2) for line in resealed.stdout.splitlines()[1:]]
    assert resealed.returncode == 1 and [f[:2] for f in findings] == [["journal", trace]], resealed.stdout
    assert "bytes" in findings[0][2] and "line" not in findings[0][2].split(":")[0]


def test_the_audit_shows_the_chain_from_a_score_file_to_the_model_call(lgt_run):
    """`mmfr audit --chain`: the score file's rule, the model, the journal of answers it read, the
    jobs that generated them and judged them, and on down to the checkpoint and the benchmark's
    download (in the build that runs the answer judge)."""
    demo_run = lgt_run
    score = "results/scores/base/tiny/demo_bench.parquet"
    proc = subprocess.run([str(BIN / "mmfr"), "audit", score, "--chain", "--no-code"], cwd=demo_run,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{score}  <- rule evaluate bench=demo_bench model=base/tiny"
    assert re.fullmatch(r"    model \(generation\): transformers models/base/tiny@sha256:[0-9a-f]{12}", lines[1])
    assert re.fullmatch(r"    model \(judge\): transformers models/base/tiny@sha256:[0-9a-f]{12}", lines[2])
    n = pq.ParquetFile(demo_run / score).metadata.num_rows
    journal = re.fullmatch(rf"    journal data/journal/{score}\.jsonl: (\d+) responses, sha256 [0-9a-f]{{12}}", lines[3])
    assert journal and int(journal[1]) >= n  # the model's answers, and the judge's verdicts on some of them
    assert lines[4].startswith("    generated by rule evaluate_generate model=base/tiny on ")
    assert lines[5].startswith("    generated by rule evaluate_judge model=base/tiny on ")
    assert "models/base/tiny  <- rule base_model size=tiny" in lines
    assert "data/raw/bench/demo_bench.parquet  <- rule download_benchmark bench=demo_bench" in lines


# ---------------------------------------------------------------- 9. cleaning the demo

def test_clean_demo_deletes_only_what_the_demo_built(demo_run, tmp_path):
    workdir = copy_of(demo_run, tmp_path)
    theirs = ["data/clean/mmr1/00000.parquet", "data/journal/traces/mmr1/00000.parquet.jsonl",
              "models/mfr123k/8b/sft/model.safetensors", "provenance/data/clean/mmr1/00000.parquet.json",
              "logs/trace/mmr1/00000.log"]
    for name in theirs:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text("another recipe's\n")
    configs = [str(REPO / p) for p in ("config.yaml", *DEMO_CONFIGS)]
    proc = subprocess.run([str(BIN / "mmfr"), "clean", "all", "--snakefile", str(REPO / "Snakefile"),
                           "--configfile", *configs], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all((workdir / name).exists() for name in theirs)
    for gone in ("data/subsets/mfr123k", "data/traces/synth_geometry/00000.parquet", "models/base/tiny",
                 "data/journal/traces/synth_geometry/00000.parquet.jsonl", "results/summary.duckdb",
                 "provenance/data/traces/synth_geometry/00000.parquet.json", "logs/trace/synth_geometry/00000.log"):
        assert not (workdir / gone).exists(), gone
    left = [str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.is_file()
            and p.parts[len(workdir.parts)] in ("data", "models", "results", "provenance")]
    assert sorted(left) == sorted(n for n in theirs if not n.startswith("logs/")), left


# ---------------------------------------------------------------- 8. and the acceptance: kill -9 three times

def journal_keys(workdir: Path) -> dict[str, collections.Counter]:
    counts = {}
    for path in (workdir / "data/journal").rglob("*.jsonl"):
        keys = collections.Counter()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                keys[json.loads(line)["key"]] += 1
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a line torn by the kill
        counts[str(path.relative_to(workdir))] = keys
    return counts


FINAL = ("data/std", "data/dedup", "data/clean", "data/captions", "data/traces", "data/verified",
         "data/passrate", "data/subsets", "data/bench", "results/scores")


def final_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in FINAL for p in sorted((root / folder).rglob("*")) if p.is_file()}


def kill_when(workdir: Path, ready, what: str, timeout: float = 900) -> bool:
    """Run `snakemake all` in its own process group and kill -9 the whole group once ``ready()``;
    False when the build finished first."""
    proc = subprocess.Popen(snakemake_command(workdir, "all", "--rerun-incomplete"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    assert proc.poll() is not None, f"the build did not reach {what} in {timeout} s"
    return False


def test_a_build_killed_at_three_points_resumes_to_the_same_bytes(demo_run, tmp_path):
    """kill -9 (every process of the build) while generating traces, while training, and while
    writing the summary; after each, the README's recovery (unlock, run again). The final artifacts
    equal an uninterrupted build's, and no journal holds a request twice. (Being a second build
    from nothing, it also shows that two builds give byte-identical data, stage by stage.)"""
    workdir = tmp_path / "killed"

    def journal_lines(stage):
        return sum(p.stat().st_size > 0 for p in (workdir / "data/journal" / stage).rglob("*.jsonl")) \
            if (workdir / "data/journal" / stage).exists() else 0

    points = {
        "generation": lambda: journal_lines("traces") >= 1,
        "training": lambda: any((workdir / "logs/sft").rglob("*.log")) if (workdir / "logs/sft").exists() else False,
        "summary": lambda: (workdir / "logs/summary.log").exists(),
    }
    killed = []
    for what, ready in points.items():
        if kill_when(workdir, ready, what):
            killed.append(what)
            snakemake(workdir, "all", "--unlock")  # what the README says to do after a crash
    assert killed == list(points), killed
    assert "all --unlock" in (REPO / "README.md").read_text()
    snakemake(workdir, "all", "--rerun-incomplete")
    assert planned(snakemake(workdir, "-n", "all")) == {}
    expected, got = final_digests(demo_run), final_digests(workdir)
    assert len(expected) > 40 and got == expected, sorted(set(expected.items()) ^ set(got.items()))[:6]
    twice = {path: [k for k, n in keys.items() if n > 1] for path, keys in journal_keys(workdir).items()}
    assert not {p: k for p, k in twice.items() if k}
