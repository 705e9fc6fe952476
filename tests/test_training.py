"""Training at cluster depth, on the CPU: a job killed mid-training resumes from its newest complete
checkpoint and ends where an uninterrupted run ends (same steps, same weights), a half-written
checkpoint is passed over; two processes (gloo) train as one with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmfr.provenance import checkpoint_dir
from mmfr.train import mark_complete, newest_complete

HERE = Path(__file__).resolve().parent


def test_newest_complete_passes_over_unsealed_and_damaged_checkpoints(tmp_path):
    for step in (2, 4, 6, 8):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 100)
        (folder / "trainer_state.json").write_text("{}")
        if step != 8:  # checkpoint-8: killed before its seal
            mark_complete(str(folder), step)
    (tmp_path / "checkpoint-6" / "model.safetensors").write_bytes(b"x" * 10)  # cut short after sealing
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()  # a file gone (a rotation cut short)
    assert newest_complete(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert newest_complete(str(tmp_path / "absent")) is None


def run_job(stage, model, shard, out, sleep=0.0, wait_for=None):
    cmd = [sys.executable, str(HERE / "train_job.py"), stage, str(model), str(shard), str(out), "--sleep", str(sleep)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    if wait_for is None:
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=900)
        return None
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        found = newest_complete(checkpoint_dir(str(out)))
        if found and int(found.rsplit("-", 1)[1]) >= wait_for:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return found
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{stage} job ended (rc {proc.returncode}) before a checkpoint at step {wait_for}")


def weights(out):
    return load_file(str(Path(out) / "model.safetensors"))


@pytest.mark.workflow
@pytest.mark.parametrize("stage", ["sft", "gspo"])
def test_a_killed_training_job_resumes_and_ends_as_an_uninterrupted_one(stage, tmp_path):
    from test_models import write_shard
    from mmfr.demo.models import build_tiny_model
    from test_models import CORPUS

    model = tmp_path / "tiny"
    build_tiny_model(str(model), {}, CORPUS, seed=0)
    shard = write_shard(tmp_path / "train.parquet")
    whole = tmp_path / "whole"
    run_job(stage, model, shard, whole)
    killed = tmp_path / "killed"
    at = run_job(stage, model, shard, killed, sleep=0.4, wait_for=4)
    assert not (killed / "model.safetensors").exists()  # killed before the end
    run_job(stage, model, shard, killed)  # Snakemake's retry: the same job again
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from"] == at and metrics["steps"] == 8
    assert json.loads((whole / "metrics.json").read_text())["steps"] == 8
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not os.path.exists(checkpoint_dir(str(killed)))  # removed once the model is saved


@pytest.mark.workflow
@pytest.mark.parametrize("sharding", [{}, {"fsdp": True, "fsdp_config": "envs/fsdp2.json", "save_steps": 2}],
                         ids=["ddp", "fsdp2"])
def test_two_processes_train_as_one_with_the_same_global_batch(sharding, tmp_path):
    """SFT with 2 processes of 2 samples (plain data parallel, and FSDP2 with the repository's config
    and a checkpoint on the way) against 1 process of 4: the same samples per step, so the
    losses agree (measured: to 1e-7, relative); not to the last bit, because the gradients are summed
    across processes in another order than within one. Tolerance: 1e-4, relative."""
    from test_models import CORPUS, write_shard
    from mmfr.demo.models import build_tiny_model
    from mmfr.train import run

    model = tmp_path / "tiny"
    build_tiny_model(str(model), {}, CORPUS, seed=0)
    shard = write_shard(tmp_path / "train.parquet")
    base = {"max_steps": 4, "logging_steps": 1, "learning_rate": 1e-3, "activation_checkpointing": False}
    one = run("sft", str(model), [shard], str(tmp_path / "one"), {**base, "per_device_train_batch_size": 4}, 0)
    two = run("sft", str(model), [shard], str(tmp_path / "two"),
              {**base, "per_device_train_batch_size": 2, **sharding}, 0, processes=2)
    assert one["steps"] == two["steps"] == 4
    losses = [(a["loss"], b["loss"]) for a, b in zip(one["log"], two["log"])]
    assert len(losses) == 4 and all(abs(a - b) <= 1e-4 * abs(a) for a, b in losses), losses
