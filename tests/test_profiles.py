"""Snakemake loads profiles/default as the workflow profile whatever --profile says, and its keys win:
so it may only set what every other profile of ours agrees with (cores aside)."""

import yaml

from conftest import REPO


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def test_the_workflow_profile_never_overrides_another_profile():
    default = load("default")
    for name in ("demo", "slurm", "slurm-test"):
        other = load(name)
        clash = {k: (v, other[k]) for k, v in default.items() if k in other and k != "cores" and other[k] != v}
        assert not clash, f"profiles/default overrides profiles/{name}: {clash}"
    assert set(default) <= {"cores", "keep-going", "rerun-incomplete", "rerun-triggers"}
