"""A training job that tests/test_train_resume.py kills with SIGKILL and runs again.

    python tests/train_job.py {sft,gspo} MODEL SHARD OUT --max-steps 8 --save-steps 2 [--sleep 0.4]

``--sleep`` slows each step down so that a kill lands mid-training; it changes no result."""

from __future__ import annotations

import argparse
import time

from transformers import TrainerCallback

import mmfr.train as train

SETTINGS = {
    "sft": {"per_device_train_batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3,
            "lr_scheduler_type": "cosine", "warmup_steps": 0.1, "activation_checkpointing": False},
    "gspo": {"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 8, "logging_steps": 1,
             "learning_rate": 1e-4, "activation_checkpointing": False},
}


class Slow(TrainerCallback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        print(f"step {state.global_step}", flush=True)
        time.sleep(self.seconds)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stage", choices=["sft", "gspo"])
    p.add_argument("model")
    p.add_argument("shard")
    p.add_argument("out")
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--save-steps", type=int, default=2)
    p.add_argument("--sleep", type=float, default=0.0)
    a = p.parse_args()
    if a.sleep:
        run = train._train

        def slowed(trainer, out_dir):
            trainer.add_callback(Slow(a.sleep))
            return run(trainer, out_dir)

        train._train = slowed
    cfg = {**SETTINGS[a.stage], "max_steps": a.max_steps, "save_steps": a.save_steps}
    getattr(train, a.stage)(a.model, [a.shard], a.out, cfg, seed=0)


if __name__ == "__main__":
    main()
