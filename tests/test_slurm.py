"""The reduced demo on a real SLURM cluster: a single-node SLURM 22.05 with accounting and two fake
GPUs that tools/slurm/up.sh brings up on this machine, driven by snakemake-executor-plugin-slurm
through profiles/slurm-test.

One workdir tells one story, in the order a user may meet it (about 6 minutes on 2 cores):
1. the main Snakemake process is killed (SIGKILL) while `base_model` is half-way (its output
   directory exists), and the processes of its running jobs with it (kill -9, as when a node goes
   down; a plain scancel would let the job's own Snakemake remove the half-written output); its
   jobs are cancelled (`scancel --name <SLURM run ID>`) and the lock removed (`--unlock`);
2. the rerun does only what is left, redoes the half-written output (`--rerun-incomplete`, from the
   profile), and meets a fault: its cleaning jobs (`clean_generate_<group>`, which load the cleaning
   model for a group of shards) fail on SLURM (their model is not where the config says); it stops
   with a non-zero status naming the rule, the log, the SLURM job and its state, after finishing
   every job that does not depend on cleaning (keep-going);
3. with the fault removed, the rerun starts where that one stopped, and gets SIGTERM while jobs are
   in flight: Snakemake waits for them and leaves no lock and nothing incomplete;
4. the last rerun finishes the demo (`all`), doing exactly what is left. No artifact finished before
   a kill or a failure was made again; sacct has every job COMPLETED; provenance records name the
   SLURM job, and the rules that ask SLURM for a GPU saw one.

Skipped, with the reason, when not root, without apt-get/dpkg, with MMFR_SKIP_SLURM=1, or when the
cluster does not come up (then the reason carries the end of up.sh's log); in CI (MMFR_CI=1, set
by .ci/run) each of these is a failure instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, snakemake_command

pytestmark = pytest.mark.slurm  # brings up a real SLURM cluster: not in `make test-fast`

PROFILE = str(REPO / "profiles/slurm-test")
PREFIX = os.environ.get("MMFR_SLURM_PREFIX", "/tmp/mmfr-slurm")
DEMO = ("recipes/demo.yaml", "tests/tiny.yaml", "tests/slurm-small.yaml")  # one subset: every kind of job
# the cleaning jobs fail at run time: a local model path that does not exist on the node
FAULT = "models:\n  clean: {backend: transformers, model: /nonexistent/mmfr-cleaner, revision: v1}\n"
# artifacts of the rules that ask SLURM for a (fake) GPU in profiles/slurm-test
GPU_ARTIFACTS = ("data/passrate/", "models/mfr123k/tiny/sft")
LOCAL_RULES = {"list_shards"}  # the Snakefile's `localrules:`: they run in the submitting process, not in SLURM
HALF_WRITTEN = "models/base/tiny"  # base_model's output directory exists for ~20 s of its ~35 s


# ----------------------------------------------------------------------------- the cluster

# .ci/run sets MMFR_CI=1: CI runs as root on Debian, so there the cluster must come up, and a
# reason to skip is a failure
IN_CI = os.environ.get("MMFR_CI") == "1"


def _skip(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"SLURM test could not run in CI (MMFR_CI=1): {reason}")
    warnings.warn(f"SLURM test skipped: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster (tools/slurm/up.sh), stopped at the end (down.sh)."""
    if os.environ.get("MMFR_SKIP_SLURM") == "1":
        _skip("MMFR_SKIP_SLURM=1")
    if os.geteuid() != 0:
        _skip("tools/slurm/up.sh needs root (it installs SLURM and starts its daemons)")
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        _skip("tools/slurm/up.sh needs apt-get and dpkg (Debian/Ubuntu) to install SLURM")
    env = {**os.environ, "PREFIX": PREFIX}
    log = tmp_path_factory.mktemp("slurm-up") / "up.log"
    try:
        try:
            with open(log, "w") as f:
                rc = subprocess.run(["bash", str(REPO / "tools/slurm/up.sh")], stdout=f, stderr=subprocess.STDOUT,
                                    env=env, timeout=900).returncode
        except subprocess.TimeoutExpired:
            rc = "timed out after 900 s"
        if rc != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            _skip(f"the SLURM test cluster did not come up (tools/slurm/up.sh: {rc}); end of {log}:\n{tail}")
        yield
    finally:  # also after a failed up.sh: stop whatever it started
        subprocess.run(["bash", str(REPO / "tools/slurm/down.sh")], env=env, capture_output=True, timeout=120)


# ----------------------------------------------------------------------------- helpers

class Run:
    """One `snakemake --profile profiles/slurm-test` process; its output goes to a file."""

    def __init__(self, workdir: Path, name: str, *args: str, configs: tuple[str, ...] = DEMO):
        self.log = workdir.parent / f"{workdir.name}.{name}.log"
        cmd = snakemake_command(workdir, *args, "--profile", PROFILE, configs=configs)
        # only a GPU request may set CUDA_VISIBLE_DEVICES in a job (sbatch exports our environment)
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES" and not k.startswith("SLURM_")}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def explain(self) -> str:
        return f"(output in {self.log})\n{self.output[-5000:]}"

    def wait(self, timeout: float = 900) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"snakemake still running after {timeout:.0f}s {self.explain()}")

    @property
    def run_id(self) -> str | None:
        """The SLURM job name of this run's jobs (the plugin names them after its run ID)."""
        m = re.search(r"SLURM run ID: (\S+)", self.output)
        return m[1] if m else None

    @property
    def job_ids(self) -> dict[str, str]:
        """SLURM job id -> rule, for every job this run submitted."""
        out = self.output
        rules = {jobid: rule for rule, jobid in
                 re.findall(r"^(?:local)?rule (\S+):\n(?:    .*\n)*?    jobid: (\d+)$", out, re.M)}
        return {slurm: rules.get(job, "?") for job, slurm in
                re.findall(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", out, re.M)}

    def reasons(self) -> dict[str, str]:
        """Output -> why this run made it (the `reason:` of the job that has it among its outputs)."""
        out = {}
        for block in re.findall(r"^(?:local)?rule \S+:\n((?:    .*\n)+)", self.output, re.M):
            fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
            for path in fields.get("output", "").split(", "):
                out[path] = fields.get("reason", "")
        return out

    def planned(self) -> Counter:
        """Jobs per rule that this run set out to do (its "Job stats")."""
        block = self.output.split("Job stats:")[1].split("\n\n")[0]
        return Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+(\d+)$", block, re.M) if m[1] != "total"})

    def finished(self) -> Counter:
        """Jobs per rule that this run saw finish."""
        return Counter(re.findall(r"^Finished jobid: \d+ \(Rule: (\S+)\)", self.output, re.M))

    def signal_when(self, sig: int, ready, timeout: float = 300) -> list[str]:
        """Send ``sig`` to the main snakemake process once ``ready()`` holds while one of its jobs
        runs in SLURM; return the running jobs."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"snakemake ended before the signal {self.explain()}")
            if self.run_id and (running := squeue(self.run_id, "RUNNING")) and ready():
                self.proc.send_signal(sig)
                self.signalled_at = time.time()
                return running
            time.sleep(0.2)
        raise AssertionError(f"not ready for the signal after {timeout:.0f}s {self.explain()}")


def squeue(name: str, states: str = "PENDING,RUNNING,COMPLETING") -> list[str]:
    """The jobs named ``name`` (one run's jobs) in ``states``."""
    out = subprocess.run(["squeue", "-h", "--name", name, "-t", states, "-o", "%A"],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def sacct(job_ids) -> dict[str, dict]:
    """State and allocated resources of each job, once accounting has every one in a final state."""
    job_ids = sorted(set(job_ids), key=int)
    deadline = time.time() + 60
    while True:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,AllocTRES"],
                             capture_output=True, text=True, check=True).stdout
        rows = {j: {"state": s.split()[0], "tres": t} for j, s, t in (line.split("|") for line in out.splitlines())}
        final = all(r["state"] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED") for r in rows.values())
        if (set(job_ids) <= set(rows) and final) or time.time() > deadline:
            return rows
        time.sleep(1)


def incomplete(workdir: Path) -> set[str]:
    """The outputs Snakemake marked as in progress (.snakemake/incomplete holds them base64-encoded)."""
    root = workdir / ".snakemake/incomplete"
    return {base64.urlsafe_b64decode("".join(p.relative_to(root).parts)).decode()
            for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def finished_artifacts(workdir: Path) -> dict[str, tuple[str, int]]:
    """Artifact -> (SLURM job id of its provenance record, mtime) for every output of a finished job."""
    marked = incomplete(workdir)
    out = {}
    for rec in (workdir / "provenance").rglob("*.json"):
        art = json.loads(rec.read_text())
        if art["artifact"].endswith(".generated"):  # temporary: removed once its shards are cleaned
            continue
        if art["rule"] in LOCAL_RULES:
            continue
        path = workdir / art["artifact"]
        if art["artifact"] not in marked and path.exists():
            out[art["artifact"]] = (art["hardware"]["slurm_job_id"], path.stat().st_mtime_ns)
    return out


def kill_processes_of(job_ids: list[str]) -> None:
    """kill -9 every process of these jobs (all on this node) at once, as a crashed node would.

    Every process is stopped (SIGSTOP) before any is killed: killed one by one, the job's own
    Snakemake could see its script die first and clean up (unmark the output, empty it) before
    its own turn came, which a node that goes down never lets it do."""
    pids = []
    for job in job_ids:
        listing = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True).stdout
        pids += [int(pid) for pid in re.findall(r"^(\d+)\s", listing, re.M)]
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def wait_until_gone(run_id: str, timeout: float = 120) -> list[str]:
    deadline = time.time() + timeout
    while (left := squeue(run_id)) and time.time() < deadline:
        time.sleep(0.5)
    return left


class Runs(list):
    """The runs a fixture started, to stop any left running when it fails half-way."""

    def add(self, run: Run) -> Run:
        self.append(run)
        return run

    def stop(self) -> None:
        for run in self:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


# ----------------------------------------------------------------------------- the story

@pytest.fixture(scope="module")
def story(slurm_cluster, tmp_path_factory):
    """Runs steps 1-4 of the module docstring in one workdir and keeps what the tests check."""
    base = tmp_path_factory.mktemp("slurm")
    workdir = base / "demo"
    fault = base / "fault.yaml"
    fault.write_text(FAULT)
    s: dict = {"workdir": workdir, "t0": time.time()}
    runs = Runs()
    try:
        yield _story(s, workdir, fault, runs)
    finally:  # a step that failed may leave a snakemake process behind (its SLURM jobs: down.sh)
        runs.stop()


def _story(s: dict, workdir: Path, fault: Path, runs: Runs) -> dict:
    # 1. SIGKILL while base_model is half-way, and its running jobs die hard with it; unlock
    killed = runs.add(Run(workdir, "1-sigkill", "all"))

    def half_way() -> bool:  # the output directory is there, its provenance record (written last) not yet
        return (workdir / HALF_WRITTEN).is_dir() and not (workdir / "provenance" / f"{HALF_WRITTEN}.json").exists()

    s["running_at_kill"] = killed.signal_when(signal.SIGKILL, lambda: half_way() and killed.finished())
    kill_processes_of(squeue(killed.run_id, "RUNNING"))
    s["killed"], s["killed_rc"] = killed, killed.wait(60)
    subprocess.run(["scancel", "--name", killed.run_id], check=True)
    s["killed_left"] = wait_until_gone(killed.run_id)
    s["incomplete_after_kill"] = incomplete(workdir)
    s["half_written"] = {a for a in s["incomplete_after_kill"] if (workdir / a).exists()}
    s["after_kill"] = finished_artifacts(workdir)
    unlock = runs.add(Run(workdir, "1-unlock", "--unlock"))
    assert unlock.wait(120) == 0, unlock.explain()

    # 2. a rerun whose cleaning jobs fail on SLURM
    failed = runs.add(Run(workdir, "2-fault", "all", configs=(*DEMO, str(fault))))
    s["failed"], s["failed_rc"] = failed, failed.wait()
    # the rule logs as the failure left them (the next run writes them again)
    s["failed_logs"] = {str(p.relative_to(workdir)): p.read_text(errors="replace")
                        for p in (workdir / "logs").rglob("*.log")}
    s["after_failure"] = finished_artifacts(workdir)

    # 3. the fault removed; SIGTERM once two jobs are done and one runs
    termed = runs.add(Run(workdir, "3-sigterm", "all"))
    termed.signal_when(signal.SIGTERM, lambda: sum(termed.finished().values()) >= 2)
    s["termed"], s["termed_rc"] = termed, termed.wait()
    s["termed_left"] = {"queue": squeue(termed.run_id), "incomplete": incomplete(workdir),
                        "locks": sorted(p.name for p in (workdir / ".snakemake/locks").glob("*"))}
    s["after_sigterm"] = finished_artifacts(workdir)

    # 4. to the end
    final = runs.add(Run(workdir, "4-resume", "all"))
    s["final"], s["final_rc"] = final, final.wait()
    s["seconds"] = time.time() - s["t0"]
    print(f"\nSLURM story: {s['seconds']:.0f}s; logs in {workdir.parent}")
    return s


def test_a_killed_run_leaves_what_it_finished_and_the_rerun_redoes_the_half_written(story):
    assert story["killed_rc"] == -signal.SIGKILL, story["killed"].explain()
    assert story["running_at_kill"] and story["killed_left"] == []
    assert story["after_kill"], "nothing had finished before the kill"
    # base_model's directory (and maybe others) was there, half-written, and marked incomplete
    assert HALF_WRITTEN in story["half_written"], story["incomplete_after_kill"]
    rerun = story["failed"]
    # --rerun-incomplete (profile) makes them again; Snakemake calls that "Forced execution"
    # (without it, the rerun would stop at once with IncompleteFilesException)
    reasons = rerun.reasons()
    assert all(reasons.get(out) == "Forced execution" for out in story["half_written"]), reasons
    # the rerun plans no job the killed run saw finish (and those that ended unseen: not even those)
    planned, left = rerun.planned(), story["killed"].planned() - story["killed"].finished()
    assert all(planned[rule] <= left[rule] for rule in planned), (planned, left)
    assert planned["base_model"] == 1


def test_a_failed_slurm_job_names_rule_log_job_and_state(story):
    run = story["failed"]
    out = run.output
    assert story["failed_rc"] != 0, run.explain()
    errors = re.findall(r"^Error in rule (\S+):\n((?:    .*\n)+)", out, re.M)
    groups = {rule for rule, _ in errors}
    assert len(groups) == 3 and all(g.startswith("clean_generate_synth_") for g in groups), run.explain()
    block = errors[0][1]
    m = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: '(\w+)'", block)
    assert m and m[2] == "FAILED", block
    job = m[1]
    assert re.search(rf"^    external_jobid: {job}$", block, re.M), block
    logs = re.search(r"^    log: (.*) \(check log", block, re.M)[1].split(", ")
    assert re.fullmatch(r"logs/clean_generate/\w+_\d{5}\.log", logs[0]), logs
    assert "/nonexistent/mmfr-cleaner" in story["failed_logs"][logs[0]]  # the cause, in the rule's log
    assert logs[1].endswith(f"/{job}.log") and Path(logs[1]).exists()  # and SLURM's log of the job
    states = sacct(run.job_ids)
    assert states[job]["state"] == "FAILED"
    assert {states[j]["state"] for j, rule in run.job_ids.items() if rule in groups} == {"FAILED"}
    # keep-going: what does not depend on cleaning ran to the end; what does was never submitted
    done = {rule for j, rule in run.job_ids.items() if states[j]["state"] == "COMPLETED"}
    assert {"base_model", "evaluate"} <= done and not done & {"clean", "caption", "trace", "verify", "pass_rate"}, done


def test_each_rerun_does_exactly_what_the_previous_run_left(story):
    failed, termed, final = story["failed"], story["termed"], story["final"]
    assert termed.planned() == failed.planned() - failed.finished()
    assert final.planned() == termed.planned() - termed.finished()
    assert termed.planned()["clean"] == 4 and "base_model" not in termed.planned()
    assert sum(n for rule, n in termed.planned().items() if rule.startswith("clean_generate_")) == 3


def test_sigterm_waits_for_the_jobs_in_flight_and_leaves_a_clean_state(story):
    run = story["termed"]
    assert story["termed_rc"] != 0, run.explain()
    assert "Will exit after finishing currently running jobs" in run.output
    assert story["termed_left"] == {"queue": [], "incomplete": set(), "locks": []}, story["termed_left"]
    assert {r["state"] for r in sacct(run.job_ids).values()} == {"COMPLETED"}


def test_no_finished_artifact_is_made_again(story):
    assert story["final_rc"] == 0, story["final"].explain()
    now = finished_artifacts(story["workdir"])
    for stage in ("after_kill", "after_failure", "after_sigterm"):
        before = story[stage]
        assert before and {a: now.get(a) for a in before} == before, stage  # same file, same SLURM job
    # the half-written outputs were made again, by the first rerun
    assert all(now[a][0] in story["failed"].job_ids for a in story["half_written"] if a in now)
    assert HALF_WRITTEN in now
    assert not incomplete(story["workdir"])


def test_every_job_of_the_demo_completed_in_slurm_accounting(story):
    final = story["final"]
    assert story["final_rc"] == 0, final.explain()
    assert final.finished()["all"] == 1
    dry = subprocess.run(snakemake_command(story["workdir"], "-n", "all", configs=DEMO), capture_output=True, text=True)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    states = sacct(final.job_ids)
    assert {j: r["state"] for j, r in states.items()} == {j: "COMPLETED" for j in final.job_ids}
    # and every job that made an artifact the demo kept
    # a job the kill caught after it had sealed its outputs (provenance is written last) is FAILED in
    # SLURM's books while its artifacts are whole and rightly kept: only such a job may be not COMPLETED
    made = finished_artifacts(story["workdir"])
    makers = {job for job, _ in made.values()}
    killed_at = story["killed"].signalled_at
    sealed_before_kill = {job for artifact, (job, _) in made.items() if job in story["running_at_kill"]
                          and json.loads((story["workdir"] / "provenance" / f"{artifact}.json").read_text())["finished"] < killed_at}
    states = {j: r["state"] for j, r in sacct(makers).items()}
    assert {s for j, s in states.items() if j not in sealed_before_kill} == {"COMPLETED"}, states


def test_provenance_names_the_slurm_job_and_the_fake_gpu(story):
    workdir = story["workdir"]
    submitted = {j for k in ("killed", "failed", "termed", "final") for j in story[k].job_ids}
    records, generated_by, local = {}, {}, {}
    for p in (workdir / "provenance").rglob("*.json"):
        rec = json.loads(p.read_text())
        (local if rec["rule"] in LOCAL_RULES else records)[rec["artifact"]] = rec["hardware"]
        if rec["artifact"].startswith("results/scores/") and rec["artifact"].endswith(".parquet"):
            generated_by[rec["artifact"]] = rec["generated_by"][0]
    assert len([a for a in records if a.startswith("data/")]) > 40
    assert all(h["slurm_job_id"] in submitted for h in records.values()), records
    assert local and all(h["slurm_job_id"] is None for h in local.values()), local  # made by the submitting process
    # every evaluation: the model's answers from a GPU job (evaluate_generate), scored on a CPU
    assert len(generated_by) >= 3 and all(g["rule"] == "evaluate_generate" for g in generated_by.values())
    gpu = {a: h for a, h in records.items() if a.startswith(GPU_ARTIFACTS)}
    gpu.update({f"{a} (answers)": g["hardware"] for a, g in generated_by.items()})
    assert len(gpu) >= 8 and all(h["cuda_visible_devices"] not in (None, "") for h in gpu.values()), gpu
    assert all(h.get("gpu_count", 1) == 1 for h in gpu.values()), gpu
    # SLURM gave those jobs one GPU each; the jobs that asked for none see no CUDA_VISIBLE_DEVICES
    tres = sacct({h["slurm_job_id"] for h in gpu.values()})
    assert all("gres/gpu=1" in r["tres"] for r in tres.values()), tres
    # (the group jobs' temporary markers keep their records: each consumer copied it as generated_by)
    assert all(h["cuda_visible_devices"] is None for a, h in records.items()
               if a.startswith(("data/clean/", "results/scores/")) and not a.endswith(".generated"))
