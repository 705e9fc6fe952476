import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


DEMO_CONFIGS = ("recipes/demo.yaml", "tests/tiny.yaml")


def snakemake_command(workdir: Path, *args: str, configs: tuple[str, ...] = DEMO_CONFIGS) -> list[str]:
    """The command line that runs the workflow in ``workdir`` with the given overlays (paths relative
    to the repo); ``args`` are targets and options (``--profile``, ``-n``, ...)."""
    # targets first: --rerun-triggers and --configfile each take several values
    return [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            *args, "--cores", "2", "--rerun-triggers", "mtime", "params", "input", "code",
            # with -d, the Snakefile's own `configfile:` would be looked up in the workdir
            "--configfile", str(REPO / "config.yaml"),
            *[str(p if Path(p).is_absolute() else REPO / p) for p in configs]]


def snakemake(workdir: Path, *args: str, configs: tuple[str, ...] = DEMO_CONFIGS,
              env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` with the given overlays (paths relative to the repo)."""
    cmd = snakemake_command(workdir, *args, configs=configs)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """One reduced end-to-end run of the demo graph, shared by the workflow tests."""
    workdir = tmp_path_factory.mktemp("demo")
    snakemake(workdir, "all")
    return workdir


LGT_CONFIGS = ("recipes/demo.yaml", "tests/tiny.yaml", "recipes/lgt-demo.yaml", "tests/lgt-tiny.yaml")


@pytest.fixture(scope="session")
def lgt_run(tmp_path_factory) -> Path:
    """One reduced run of the Long Grounded Thoughts demo (SFT then DPO, scored with the answer judge)."""
    workdir = tmp_path_factory.mktemp("lgt")
    snakemake(workdir, "lgt_tiny_scores", configs=LGT_CONFIGS)
    return workdir
