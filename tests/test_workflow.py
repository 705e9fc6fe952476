"""The workflow as a user runs it: dry runs of the full recipe, a reduced demo end to end,
no-op reruns, narrow reruns after a config change, and byte-identical data across clean runs."""

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import DEMO_CONFIGS, REPO, snakemake

pytestmark = pytest.mark.workflow  # runs the workflow with Snakemake: not in `make test-fast`


def job_counts(output: str) -> dict[str, int]:
    block = output.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+(\d+)$", block, re.M)}


def test_full_recipe_dry_run_lists_the_whole_dag_without_torch(tmp_path):
    # A `torch` that fails on import, first on the path: parsing must never import it.
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('torch imported at parse time')\n")
    proc = snakemake(tmp_path / "wd", "-n", "mfr123k_8b_scores", configs=(),
                     env={"PYTHONPATH": str(fake)})
    counts = job_counts(proc.stdout)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    n_shards = sum(s["shards"] for s in config["sources"])
    assert counts["standardise"] == len(config["sources"])
    assert counts["download_source"] == len(config["sources"])
    assert counts["dedup"] == 1
    for rule in ("clean", "caption", "trace", "verify", "pass_rate"):
        assert counts[rule] == n_shards, rule
    assert counts["evaluate"] == 3 * len(config["benchmarks"])  # base, SFT, GSPO
    # grouping.evaluate: one GPU job per model (base, SFT, GSPO) answers every benchmark
    assert counts["evaluate_generate"] == 3
    # and with evaluate.judge, one GPU job per model judges the answers every benchmark's rules call wrong
    assert counts["evaluate_judge"] == 3
    assert counts["download_benchmark"] == len(config["benchmarks"])
    assert counts["subset"] == 2  # mfr123k and the RL hold-out
    assert counts["sft"] == counts["gspo"] == counts["base_model"] == 1


def test_a_target_rule_for_every_subset_and_size(tmp_path):
    proc = snakemake(tmp_path, "--list-target-rules", configs=())
    targets = set(proc.stdout.split())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for subset in config["subsets"]:
        for student in config["students"]:
            assert f"{subset['name']}_{student['size']}_scores" in targets


def test_config_error_is_caught_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("subsets:\n  - {name: rl, where: 'pass_rate = 0'}\n")
    proc = snakemake(tmp_path / "wd", "-n", "all", configs=("recipes/demo.yaml", str(bad)), check=False)
    assert proc.returncode != 0
    assert "selection.rl.name" in proc.stderr + proc.stdout
    assert not (tmp_path / "wd" / "data").exists()


def test_demo_end_to_end(demo_run):
    con = duckdb.connect(str(demo_run / "results/summary.duckdb"), read_only=True)
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert {"accounting", "drop_reasons", "cleaning", "stage_counts", "verdicts", "token_stats", "pass_rates",
            "subsets", "scores", "training", "provenance"} <= tables
    # accounting: raw = kept + quarantined + excluded + duplicate + contaminated, per source
    accounting = {r[0]: r[1:] for r in con.execute(
        "SELECT source, raw, kept, quarantined + excluded + duplicate + contaminated, balanced FROM accounting"
    ).fetchall()}
    assert {s: a[0] for s, a in accounting.items()} == {"synth_counting": 40, "synth_geometry": 40,
                                                         "synth_composed": 20}
    assert all(balanced and raw == kept + dropped for raw, kept, dropped, balanced in accounting.values())
    # the injected faults of synth_counting (a quarter of its rows) are each caught by the right step
    reasons = {(c, r) for c, r in con.execute(
        "SELECT category, reason FROM drop_reasons WHERE source = 'synth_counting'").fetchall()}
    assert accounting["synth_counting"][2] > 0 and reasons <= {
        ("quarantined", "image_truncated"), ("quarantined", "empty_question"), ("quarantined", "missing_answer"),
        ("excluded", "multi_image"), ("excluded", "unanswerable"), ("duplicate", "exact_duplicate"),
        ("duplicate", "near_duplicate"),
        ("contaminated", "bench_image"), ("contaminated", "bench_question")}
    cleaning = dict(con.execute("SELECT clean_status, sum(n) FROM cleaning GROUP BY ALL").fetchall())
    assert set(cleaning) <= {"cleaned", "unchanged"} and cleaning["unchanged"] > 0
    # the scripted teacher makes mistakes and verification catches them
    verdicts = dict(con.execute("SELECT verdict, sum(n) FROM verdicts GROUP BY verdict").fetchall())
    assert verdicts["correct"] > 0 and verdicts.get("wrong", 0) + verdicts.get("rejected", 0) > 0
    # token statistics from the real Qwen tokenizer
    mean_cot = con.execute("SELECT mean FROM token_stats WHERE kind = 'cot' AND source = '(all)'").fetchone()[0]
    assert mean_cot > 40
    # scores for base, SFT and GSPO on the benchmark
    stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM scores").fetchall()}
    assert stages == {"base", "sft", "gspo"}
    n_items = pq.ParquetFile(demo_run / "data/bench/demo_bench.parquet").metadata.num_rows
    assert n_items == 2 * 6 + 4
    # SFT and GSPO really trained: losses logged for each
    models = {r[0] for r in con.execute("SELECT DISTINCT model FROM training").fetchall()}
    assert {"mfr586k/tiny/sft", "mfr586k/tiny/gspo", "mfr123k/tiny/sft"} <= models
    # a provenance record for every data artifact, with hashes that match the files
    prov = dict(con.execute("SELECT artifact, sha256 FROM provenance").fetchall())
    shard = "data/verified/synth_counting/00000.parquet"
    assert prov[shard] == hashlib.sha256((demo_run / shard).read_bytes()).hexdigest()
    # subsets are loadable datasets, and the RL hold-out is disjoint from every SFT subset
    import datasets

    rl = datasets.load_dataset(str(demo_run / "data/subsets/rl"), split="train")
    sft = datasets.load_dataset(str(demo_run / "data/subsets/mfr586k"), split="train")
    assert len(rl) > 0 and len(sft) > 0
    assert not set(rl["id"]) & set(sft["id"])
    assert set(sft["verdict"]) == {"correct"}
    assert all(p < 1 for p in sft["pass_rate"])


def test_report_of_the_demo_build(demo_run, tmp_path):
    """`all` draws the report's plots and tables; `snakemake --report` packs them (about 10 s)."""
    import zipfile

    from mmfr.report import PLOTS, TABLES

    con = duckdb.connect(str(demo_run / "results/summary.duckdb"), read_only=True)
    # the histogram behind the token statistics counts every verified-correct trace once
    assert con.execute("SELECT sum(n) FROM token_lengths WHERE kind = 'cot'").fetchone() == \
        con.execute("SELECT n FROM token_stats WHERE kind = 'cot' AND source = '(all)'").fetchone()
    raw = dict(con.execute("SELECT source, raw FROM accounting").fetchall())
    yields = (demo_run / "results/report/yields.csv").read_text().splitlines()
    assert yields[0].startswith("source,raw,kept,") and len(yields) == len(raw) + 2  # + header, (all)
    assert yields[-1].startswith(f"(all),{sum(raw.values())},")
    snakemake(demo_run, "--report", str(tmp_path / "report.zip"), "all")
    names = {Path(n).name for n in zipfile.ZipFile(tmp_path / "report.zip").namelist()}
    tables = {n for n in TABLES if not n.startswith("release")}  # those need compare.release
    assert {f"{n}.svg" for n in PLOTS} | {f"{n}.html" for n in tables} | {"report.html"} <= names
    assert not {f"{n}.html" for n in TABLES} - {f"{n}.html" for n in tables} & names


def test_second_run_does_nothing(demo_run):
    proc = snakemake(demo_run, "-n", "all")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_a_subset_threshold_reruns_only_what_depends_on_it(demo_run, tmp_path):
    overlay = tmp_path / "threshold.yaml"
    overlay.write_text("subsets:\n  - {name: mfr586k, where: 'pass_rate < 0.75'}\n"
                       "  - {name: mfr123k, where: 'pass_rate = 0'}\n")
    proc = snakemake(demo_run, "-n", "all", configs=("recipes/demo.yaml", "tests/tiny.yaml", str(overlay)))
    counts = job_counts(proc.stdout)
    counts.pop("total")
    assert counts == {"subset": 1, "sft": 1, "gspo": 1, "evaluate": 2, "score_table": 1, "summary": 1,
                      "report_figures": 1, "all": 1, "evaluate_generate": 2}  # the new SFT and GSPO models
    models = re.findall(r"rule evaluate_generate:\n(?:    .*\n)*?    wildcards: model=(\S+)", proc.stdout)
    assert sorted(models) == ["mfr586k/tiny/gspo", "mfr586k/tiny/sft"]


def test_changing_a_shard_count_regenerates_nothing(demo_run, tmp_path):
    """Resharding a source reruns its jobs, and every response comes from the old shards' journals."""
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(demo_run, workdir, symlinks=True)
    tiny = yaml.safe_load((REPO / "tests/tiny.yaml").read_text())
    for source in tiny["sources"]:
        if source["name"] == "synth_counting":
            source["shards"] = 3
    overlay = tmp_path / "reshard.yaml"
    overlay.write_text(yaml.safe_dump({"sources": tiny["sources"]}))
    targets = [f"data/passrate/synth_counting/0000{i}.parquet" for i in range(3)]
    snakemake(workdir, *targets, configs=("recipes/demo.yaml", "tests/tiny.yaml", str(overlay)))
    logs = [workdir / f"logs/{stage}/synth_counting/0000{i}.log"
            for stage in ("clean", "caption", "trace", "pass_rate") for i in range(3)]
    groups = sorted((workdir / "logs/clean_generate").glob("synth_counting_*.log"))
    assert [p.name for p in groups] == ["synth_counting_00000.log"]  # 3 shards of ~13 rows: one cleaning job
    for path in logs + groups:
        log = path.read_text()
        assert ", 0 to generate" in log and not re.search(r", [1-9]\d* to generate", log), (path, log)


EXPAND = ("recipes/demo.yaml", "tests/tiny.yaml", "tests/expand.yaml")


def verify_inputs(output: str) -> list[str]:
    return re.findall(r"^rule verify:\n    input: (.*)$", output, re.M)


def test_expansion_overlay_puts_expand_jobs_before_verify(tmp_path):
    n_shards = sum(s["shards"] for s in yaml.safe_load((REPO / "tests/tiny.yaml").read_text())["sources"])
    on = snakemake(tmp_path / "on", "-n", "all", configs=EXPAND).stdout
    assert job_counts(on)["expand"] == job_counts(on)["verify"] == n_shards
    assert len(verify_inputs(on)) == n_shards
    assert all("data/expanded/" in i and "data/traces/" not in i for i in verify_inputs(on))
    off = snakemake(tmp_path / "off", "-n", "all").stdout  # models.expand null: the graph as it was
    assert "expand" not in job_counts(off) and len(verify_inputs(off)) == n_shards
    assert all("data/traces/" in i and "data/expanded/" not in i for i in verify_inputs(off))


def test_lgt_recipe_dry_run(tmp_path):
    proc = snakemake(tmp_path, "-n", "lgt_7b_scores", configs=("recipes/lgt.yaml",))
    counts = job_counts(proc.stdout)
    config = yaml.safe_load((REPO / "recipes/lgt.yaml").read_text())
    n_shards = sum(s["shards"] for s in config["sources"])
    assert counts["trace"] == counts["expand"] == counts["verify"] == n_shards
    assert len(verify_inputs(proc.stdout)) == n_shards
    assert all("data/expanded/" in i for i in verify_inputs(proc.stdout))


def test_expanded_traces_are_what_verify_reads(tmp_path):
    """A real run up to one verified shard with the expansion on (about 10 s)."""
    shard = "synth_geometry/00000.parquet"
    snakemake(tmp_path, f"data/verified/{shard}", configs=EXPAND)
    traces = pq.read_table(tmp_path / "data/traces" / shard).to_pylist()
    expanded = pq.read_table(tmp_path / "data/expanded" / shard).to_pylist()
    verified = pq.read_table(tmp_path / "data/verified" / shard).to_pylist()
    stop = [(t, e) for t, e in zip(traces, expanded) if t["finish_reason"] == "stop"]
    assert stop and all(e["finish_reason"] == "stop" and "\n\nWait, " in e["response"] for _, e in stop)
    assert sorted((v["id"], v["sample_index"], v["response"]) for v in verified) == \
        sorted((e["id"], e["sample_index"], e["response"]) for e in expanded)
    assert sum(v["verdict"] == "correct" for v in verified) > len(verified) / 2
    assert (tmp_path / "data/journal/expanded" / f"{shard}.jsonl").stat().st_size > 0


def test_audit_names_a_tampered_intermediate_shard(demo_run, tmp_path):
    import shutil
    import subprocess
    import sys

    workdir = tmp_path / "copy"
    shutil.copytree(demo_run, workdir, symlinks=True)
    mmfr = [str(Path(sys.executable).parent / "mmfr"), "audit", "data/subsets/mfr123k", "--no-code"]
    clean = subprocess.run(mmfr, cwd=workdir, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
    assert "0 findings" in clean.stdout and "data/raw/synth_counting/data.parquet" not in clean.stdout
    shard = workdir / "data/clean/synth_counting/00000.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.slice(1), shard)  # one record quietly removed
    tampered = subprocess.run(mmfr, cwd=workdir, capture_output=True, text=True)
    assert tampered.returncode == 1
    lines = tampered.stdout.splitlines()
    assert any(line.split()[:2] == ["content", "data/clean/synth_counting/00000.parquet"] for line in lines)
    # the artifacts built from it are named as built from another version of it
    assert any(line.split()[:2] == ["stale_input", "data/traces/synth_counting/00000.parquet"] for line in lines)


def test_audit_names_the_artifact_whose_params_the_config_changes(demo_run, tmp_path):
    """`mmfr audit --configfile ...` asks Snakemake which outputs the config now gives other params."""
    import subprocess
    import sys

    overlay = tmp_path / "threshold.yaml"
    overlay.write_text("subsets:\n  - {name: mfr586k, where: 'pass_rate < 0.75'}\n"
                       "  - {name: mfr123k, where: 'pass_rate = 0'}\n")
    configs = [str(REPO / p) for p in ("config.yaml", *DEMO_CONFIGS)] + [str(overlay)]
    mmfr = [str(Path(sys.executable).parent / "mmfr"), "audit", "results/summary.duckdb", "--no-code",
            "--snakefile", str(REPO / "Snakefile"), "--configfile", *configs]
    proc = subprocess.run(mmfr, cwd=demo_run, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the lineage of the summary holds both subsets: only the one whose filter changed is named
    assert [line.split()[:2] for line in proc.stdout.splitlines()[1:]] == [["params", "data/subsets/mfr586k"]]


def dry_run_jobs(workdir, *configs: str) -> list[tuple[str, str, str]]:
    """(rule, wildcards, resources) of every job in a dry run of mfr123k_8b_scores with profiles/slurm."""
    proc = snakemake(workdir, "-n", "mfr123k_8b_scores", "--profile", str(REPO / "profiles/slurm"), configs=configs)
    jobs = []
    for block in proc.stdout.split("\nrule ")[1:]:
        fields = {k: re.search(rf"^    {k}: (.*)", block, re.M) for k in ("wildcards", "resources")}
        jobs.append((block.split(":")[0].strip(), *(m.group(1) if m else "" for m in fields.values())))
    return jobs


def dry_run_resources(workdir, *configs: str) -> dict[str, str]:
    """Rule -> the resources of its first job in a dry run of mfr123k_8b_scores with profiles/slurm."""
    jobs = {}
    for name, _, resources in dry_run_jobs(workdir, *configs):
        jobs.setdefault(name, resources)
    return jobs


def test_cluster_resources_follow_the_recipe_and_the_site_overlay(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("cluster: {partition: cpu, gpu_partition: gpu, account: lab, gpu_model: h100}\n")
    every = dry_run_jobs(tmp_path / "wd", str(site))
    jobs = {}
    for name, _, resources in every:
        jobs.setdefault(name, resources)
    assert "gpu=8," in jobs["trace"] and "slurm_partition=gpu" in jobs["trace"] and "gpu_model=h100" in jobs["trace"]
    assert "runtime=2880" in jobs["trace"] and "gpu=1," in jobs["pass_rate"]
    assert "gpu=" not in jobs["dedup"] and "slurm_partition=cpu" in jobs["dedup"] and "slurm_account=lab" in jobs["dedup"]
    # cleaning, captions and judge: a GPU job per group of a source's shards (the profile's
    # <stage>_generate resources), then a CPU job per shard that reads the journals
    for stage, shard_rule, gpus, n in [("clean", "clean", 2, 19), ("caption", "caption", 8, 43),
                                       ("judge", "verify", 2, 43)]:
        groups = [name for name in jobs if name.startswith(f"{stage}_generate_mmr1_")]
        # 127 shards of ~12,600 rows: 7 to a job of 100,000 rows (clean), 3 to one of 50,000
        assert len(groups) == n, stage
        step = 7 if stage == "clean" else 3
        assert sorted(groups) == [f"{stage}_generate_mmr1_{i:05d}" for i in range(0, 127, step)], stage
        assert all(f"gpu={gpus}," in jobs[g] and "runtime=720" in jobs[g] and "slurm_partition=gpu" in jobs[g]
                   for g in groups), stage
        assert "gpu=" not in jobs[shard_rule] and "slurm_partition=cpu" in jobs[shard_rule], shard_rule
        assert "runtime=60" in jobs[shard_rule] or "runtime=120" in jobs[shard_rule], shard_rule
    answers = [r for name, _, r in every if name == "evaluate_generate"]
    assert len(answers) == 3 and all("gpu=1," in r and "runtime=720" in r for r in answers)
    assert "gpu=" not in jobs["evaluate"] and "runtime=60" in jobs["evaluate"]
    # not grouped: the shard job runs the model itself, sized as the group job would be
    ungrouped = tmp_path / "ungrouped.yaml"
    ungrouped.write_text("grouping: {clean_rows: null, caption_rows: null, judge_rows: null, evaluate: false}\n")
    jobs = dry_run_resources(tmp_path / "wd", str(site), str(ungrouped))
    assert not [name for name in jobs if "_generate" in name]
    for shard_rule, gpus, mem in [("clean", 2, 128000), ("caption", 8, 512000), ("verify", 2, 128000),
                                  ("evaluate", 1, 64000)]:
        assert f"gpu={gpus}," in jobs[shard_rule] and f"mem_mb={mem}," in jobs[shard_rule], jobs[shard_rule]
        assert "runtime=720" in jobs[shard_rule] and "slurm_partition=gpu" in jobs[shard_rule]


def test_lgt_demo_trains_dpo_on_pairs_and_scores_it(lgt_run):
    """The Long Grounded Thoughts demo overlay end to end: several traces per question, pairs of a
    right and a wrong one, SFT then DPO from the SFT model, and the DPO model scored beside the base
    and SFT models (GSPO is not in this recipe's stages)."""
    tmp_path = lgt_run
    pairs = pq.read_table(tmp_path / "data/pairs/lgt/data").to_pylist()
    subset = pq.read_table(tmp_path / "data/subsets/lgt/data").to_pylist()
    verified = {(v["id"], v["response"]): v for v in pq.read_table(tmp_path / "data/verified").to_pylist()}
    assert pairs, "the demo teacher's mistakes give some questions a right and a wrong trace"
    assert {(r["id"], r["chosen"]) for r in pairs} <= {(r["id"], r["response"]) for r in subset}
    assert all(verified[(r["id"], r["rejected"])]["verdict"] == "wrong" for r in pairs)
    card = json.loads((tmp_path / "data/pairs/lgt/README.md").read_text().split("```json\n")[1].split("```")[0])
    assert card["pairs"] == len(pairs)
    dpo = json.loads((tmp_path / "models/lgt/tiny/dpo/metrics.json").read_text())
    assert card["questions_with_pairs"] > card["questions"] / 3
    assert dpo["stage"] == "dpo" and dpo["steps"] == 3 and dpo["n_rows"] == len(pairs)
    prov = json.loads((tmp_path / "provenance/models/lgt/tiny/dpo.json").read_text())
    assert prov["rule"] == "dpo" and "models/lgt/tiny/sft" in json.dumps(prov["inputs"])
    table = (tmp_path / "results/scores/lgt/tiny/scores.tsv").read_text().splitlines()
    header = table[0].split("\t")
    assert {"base", "sft", "dpo"} <= set(header) and "gspo" not in header
    assert (tmp_path / "results/scores/lgt/tiny/dpo").is_dir() and not (tmp_path / "models/lgt/tiny/gspo").exists()


def test_lgt_demo_writes_questions_from_dense_captions(lgt_run):
    """Long Grounded Thoughts' caption path in the build: rule write_questions answers every image of
    the download in its two parts (journaled, with provenance), standardise keeps the questions that
    pass and counts the writer's faults by reason, and the questions go on to verified traces and
    the subset like the box questions."""
    tmp_path = lgt_run
    parts = [tmp_path / f"data/raw/synth_captioned/questions/{p:05d}.parquet" for p in range(2)]
    replies = [r for p in parts for r in pq.read_table(p).to_pylist()]
    assert [r["index"] for r in replies] == list(range(10)) and {r["finish_reason"] for r in replies} == {"stop"}
    prov = json.loads((tmp_path / "provenance/data/raw/synth_captioned/questions/00001.parquet.json").read_text())
    assert prov["rule"] == "write_questions" and prov["wildcards"] == {"source": "synth_captioned", "part": "00001"}
    assert prov["journals"] and "mmfr-scripted-question-writer" in json.dumps(prov["params"])
    counts = json.loads((tmp_path / "data/std/synth_captioned.counts.json").read_text())
    dropped = pq.read_table(tmp_path / "data/std/synth_captioned.dropped.parquet").to_pylist()
    assert counts["raw"] == counts["kept"] + len(dropped) and counts["kept"] > 20
    std = pq.read_table(tmp_path / "data/std/synth_captioned/00000.parquet").to_pylist()
    kinds = Counter(json.loads(r["metadata"])["lgt_kind"] for r in std)
    assert kinds["caption"] > kinds["caption+caption"] > 0 and set(kinds) == {"caption", "caption+caption"}
    verified = pq.read_table(tmp_path / "data/verified/synth_captioned/00000.parquet").to_pylist()
    assert {v["id"] for v in verified} <= {r["id"] for r in std} and any(v["verdict"] == "correct" for v in verified)
    subset = pq.read_table(tmp_path / "data/subsets/lgt/data").to_pylist()
    assert {"synth_grounded", "synth_captioned"} <= {r["source"] for r in subset}
