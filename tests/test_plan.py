"""``mmfr plan``: requests, tokens and GPU hours per stage, from the config alone."""

import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO
from mmfr.plan import load_config, render, stages


def test_plan_of_the_full_recipe():
    config = load_config([str(REPO / "config.yaml")])
    plan = {s.stage: s for s in stages(config)}
    assert list(plan) == ["clean", "extract", "caption", "trace", "judge", "pass_rate", "evaluate"]
    items = sum(s["paper_raw"] for s in config["sources"])
    assert items == 2_372_420  # the paper's Table 5 starting counts
    cot = config["plan"]["tokens"]["trace"]
    assert plan["trace"].requests == items
    assert plan["trace"].tokens == sum(s["paper_raw"] * cot[s["domain"]] for s in config["sources"])
    assert plan["trace"].tensor_parallel == 8 and plan["trace"].jobs == sum(s["shards"] for s in config["sources"])
    assert plan["pass_rate"].requests == 4 * sum(s["expected"] for s in config["sources"])
    # GPU hours: (tokens / rate + jobs x load time) x tensor parallel
    t = plan["trace"]
    assert abs(t.gpu_hours(2000, 6) - (t.tokens / 2000 / 3600 + t.jobs * 0.1) * 8) < 1e-6
    # cleaning loads its two models once per group of shards (grouping.clean_rows), captions and
    # the judge theirs (caption_rows, judge_rows), as the graph does; traces are long enough per shard
    assert plan["clean"].jobs == plan["extract"].jobs == 43 < plan["caption"].jobs == plan["judge"].jobs == 74
    assert plan["trace"].jobs == 188
    ungrouped = {s.stage: s for s in stages({**config, "grouping": {}})}
    assert {ungrouped[s].jobs for s in ("clean", "extract", "caption", "judge")} == {188}
    load = {s: 10 / 60 * p.jobs * p.tensor_parallel / p.gpu_hours(2500, 10) for s, p in plan.items()}
    assert max(load["caption"], load["judge"], load["clean"]) < 0.13


def test_overlays_merge_like_snakemake(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text(yaml.safe_dump({"annotate": {"traces_per_sample": 8}, "models": {"judge": None}}))
    config = load_config([str(REPO / "config.yaml"), str(overlay)])
    plan = {s.stage: s for s in stages(config)}
    assert "judge" not in plan and config["models"]["trace"]["tensor_parallel_size"] == 8
    assert plan["trace"].requests == 8 * sum(s["paper_raw"] for s in config["sources"])
    assert "trace" in render(list(plan.values()), 2500, 10)


def test_plan_command():
    out = subprocess.run([str(Path(sys.executable).parent / "mmfr"), "plan", "--configfile", str(REPO / "config.yaml"),
                          "--tokens-per-second", "3000"], capture_output=True, text=True, check=True).stdout
    assert "3,000 output tokens/s" in out and "Qwen/Qwen3-VL-235B-A22B-Thinking" in out


def test_openmmreasoner_is_config_not_code():
    config = load_config([str(REPO / "config.yaml"), str(REPO / "recipes/openmmreasoner.yaml")])
    plan = {s.stage: s for s in stages(config)}
    items = sum(s["paper_raw"] for s in config["sources"])
    assert plan["trace"].requests == 8 * items and config["models"]["trace"]["sampling"]["temperature"] == 1.0
    assert config["subsets"] == [{"name": "omr", "where": "true"}]
