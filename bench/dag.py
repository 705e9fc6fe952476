"""What planning the full recipe costs: `snakemake -n` on our workflow against a bare Snakefile with
the same number of jobs, paired.

    .venv/bin/python bench/dag.py [--target mfr123k_8b_scores] [--scale 1,8] [--repeat 3]

For each ``--scale`` k, every source's ``shards`` is multiplied by k (an overlay config), and the
dry run of ``--target`` is timed in an empty working directory (every job needed). The bare
Snakefile has one rule with a wildcard and an aggregate, giving the same job count; a second bare
one spreads the same jobs over as many rules as ours has; a third has our graph itself (rules, jobs,
files, edges, temporary files, `script:`) and none of our Python (``same_graph_snakefile``), so
ours/same graph is what our code adds and same graph/bare what the graph's shape costs Snakemake.
Prints the job and rule
counts and the CPU seconds (user + system, the least of ``--repeat`` runs) of each, and the ratios:
what our rules, input functions and config checks add to Snakemake's own cost; and the parse
every cluster job does (``--mode remote -l``), ours against a bare Snakefile's. Also prints
the CPU of ``snakemake --version`` (interpreter and plugin start-up, paid by every job on a cluster).
This VM's CPU seconds vary by up to a third from run to run: run it twice. ``--calls`` also
counts the Python function calls of one dry run of each (cProfile), a figure the machine's load does
not move. A bench script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def cpu_of(cmd: list[str], cwd: str) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout + done.stderr


def jobs_of(output: str) -> int:
    found = re.findall(r"^total\s+(\d+)", output, re.M)
    if not found:
        raise SystemExit(f"no job count in the dry run's output:\n{output[-2000:]}")
    return int(found[-1])


def calls_of(cmd: list[str], cwd: str, profile: Path) -> int:
    """Python function calls of one run of the snakemake command ``cmd`` (under cProfile)."""
    import pstats

    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), *cmd], cwd=cwd, capture_output=True,
                   check=True)
    return pstats.Stats(str(profile)).total_calls


def best(cmd: list[str], cwd: str, repeat: int) -> tuple[float, str]:
    runs = [cpu_of(cmd, cwd) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[0][1]


def bare_snakefile(path: Path, jobs: int, rules: int = 1) -> None:
    """``jobs`` jobs: an aggregate over ``rules`` rules of one wildcard each, sharing the rest."""
    text = ("rule all:\n"
            f"    input: [f'out/r{{j % {rules}}}/{{j}}.txt' for j in range({jobs - 1})]\n\n")
    for r in range(rules):
        text += (f"rule step{r}:\n"
                 f"    output: 'out/r{r}/{{i}}.txt'\n"
                 f"    log: 'logs/r{r}/{{i}}.log'\n"
                 "    shell: 'touch {output}'\n\n")
    path.write_text(text)


def dry_run_jobs(output: str) -> list[dict]:
    """Every job of a dry run's printout: its rule, inputs, outputs and logs (a job per ``rule`` block)."""
    jobs = []
    for block in re.split(r"^\[[^\]]+\]\n", output, flags=re.M)[1:]:
        head = re.match(r"(?:local)?rule (\S+):\n", block)
        if not head:
            continue
        fields = dict(re.findall(r"^    (input|output|log): (.*)$", block, re.M))
        jobs.append({"rule": head[1], **{k: fields[k].split(", ") if k in fields else [] for k in
                                         ("input", "output", "log")}})
    return jobs


def same_graph_snakefile(folder: Path, output: str) -> int:
    """A Snakefile with our dry run's graph and none of our Python: a rule per rule of ours, a job per
    job, each with as many outputs, logs and input files, the same edges (file by file) and the same
    temporary files, `script:` as ours; a job's inputs come from a table (one small input function).
    What our dry run costs beyond it is our code: config checks, input functions, params."""
    jobs = dry_run_jobs(output)
    temp = set(re.findall(r"^Would remove temporary output (\S+)$", output, re.M))
    index, producer, graph, rules = {}, {}, {}, {}
    for job in jobs:
        i = index[job["rule"]] = index.get(job["rule"], -1) + 1
        for k, path in enumerate(job["output"]):
            producer[path] = f"sk/{job['rule']}/{i}.o{k}"
        rules.setdefault(job["rule"], job)
    for job in jobs:
        graph.setdefault(job["rule"], []).append([producer.get(p, f"given/{p}") for p in job["input"]])
    for path in {p for job in jobs for p in job["input"]} - set(producer):
        (folder / "given" / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / "given" / path).touch()
    (folder / "graph.json").write_text(json.dumps(graph))
    (folder / "noop.py").write_text("")
    text = "import json\n\nG = json.load(open('graph.json'))\n\n"
    target = jobs[-1]["rule"]  # the target: an aggregate with no outputs, printed last
    text += f"rule {target}:\n    input: G[{target!r}][0]\n\n"
    for name, job in rules.items():
        if name == target:
            continue
        outs = [f"'sk/{name}/{{i}}.o{k}'" for k in range(len(job["output"]))]
        outs = [f"temp({o})" if path in temp else o for o, path in zip(outs, job["output"])]
        text += (f"rule {name}:\n    input: lambda w: G[{name!r}][int(w.i)]\n"
                 f"    output: {', '.join(outs)}\n"
                 + "".join(f"    log: 'sk/logs/{name}/{{i}}.{k}.log'\n" for k in range(len(job["log"]))[:1])
                 + "    wildcard_constraints: i=r'\\d+'\n    script: 'noop.py'\n\n")
    (folder / "Snakefile").write_text(text)
    return len(jobs)


def rule_count(listing: str) -> int:
    return len([line for line in listing.splitlines() if re.fullmatch(r"[A-Za-z_][\w]*", line.strip())])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="mfr123k_8b_scores")
    ap.add_argument("--configfile", default="config.yaml")
    ap.add_argument("--scale", default="1,8", help="factors on every source's shards, comma separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--calls", action="store_true", help="also count Python calls (cProfile) of ours and bare")
    args = ap.parse_args()
    config = yaml.safe_load((ROOT / args.configfile).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        start, _ = best([SNAKEMAKE, "--version"], tmp, args.repeat)
        print(f"snakemake --version: {start:.2f} s CPU (start-up, every job pays it)")
        # a cluster job's own parse (--mode remote: not the main process), against the bare one's
        job_dir = Path(tmp) / "job"
        job_dir.mkdir()
        bare_snakefile(job_dir / "Snakefile", 2)
        ours_job, _ = best([SNAKEMAKE, "--mode", "remote", "-l", "-s", str(ROOT / "Snakefile"), "-d", str(job_dir),
                            "--configfile", str(ROOT / args.configfile)], str(ROOT), args.repeat)
        bare_job, _ = best([SNAKEMAKE, "--mode", "remote", "-l"], str(job_dir), args.repeat)
        print(f"a job's parse (--mode remote -l): ours {ours_job:.2f} s CPU, bare {bare_job:.2f} s, "
              f"ours/bare {ours_job / bare_job:.2f}")
        print(f"{'scale':>5} {'jobs':>6} {'rules':>6} {'ours s':>8} {'bare s':>8} {'ours/bare':>9} "
              f"{'ours - start':>12} {'bare - start':>12} {'ratio':>6} {'bare, as many rules s':>22} {'ours/it':>8} "
              f"{'same graph s':>13} {'ours/it':>8}")
        for k in (int(x) for x in args.scale.split(",")):
            overlay = Path(tmp) / f"scale{k}.yaml"
            sources = [{**s, "shards": s.get("shards", 1) * k} for s in config["sources"]]
            overlay.write_text(yaml.safe_dump({"sources": sources}))
            work = Path(tmp) / f"ours{k}"
            work.mkdir()
            ours, ours_out = best([SNAKEMAKE, "-n", args.target, "-s", str(ROOT / "Snakefile"), "-d", str(work),
                              "--configfile", str(ROOT / args.configfile), str(overlay)], str(ROOT), args.repeat)
            jobs = jobs_of(ours_out)
            bare_dir = Path(tmp) / f"bare{k}"
            bare_dir.mkdir()
            bare_snakefile(bare_dir / "Snakefile", jobs)
            bare, out = best([SNAKEMAKE, "-n", "-c1"], str(bare_dir), args.repeat)
            assert jobs_of(out) == jobs, (jobs_of(out), jobs)
            _, listing = cpu_of([SNAKEMAKE, "-l", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--configfile",
                                 str(ROOT / args.configfile), str(overlay)], str(ROOT))
            rules = rule_count(listing)
            wide_dir = Path(tmp) / f"wide{k}"
            wide_dir.mkdir()
            bare_snakefile(wide_dir / "Snakefile", jobs, rules - 1)
            wide, out = best([SNAKEMAKE, "-n", "-c1"], str(wide_dir), args.repeat)
            graph_dir = Path(tmp) / f"graph{k}"
            graph_dir.mkdir()
            assert same_graph_snakefile(graph_dir, ours_out) == jobs
            graph, out = best([SNAKEMAKE, "-n", "-c1"], str(graph_dir), args.repeat)
            assert jobs_of(out) == jobs, (jobs_of(out), jobs)
            print(f"{k:>5} {jobs:>6} {rules:>6} {ours:>8.2f} {bare:>8.2f} {ours / bare:>9.2f} {ours - start:>12.2f} "
                  f"{bare - start:>12.2f} {(ours - start) / (bare - start):>6.2f} {wide:>22.2f} {ours / wide:>8.2f} "
                  f"{graph:>13.2f} {ours / graph:>8.2f}", flush=True)
            if args.calls:
                shutil.rmtree(work / ".snakemake", ignore_errors=True)
                ours_calls = calls_of([SNAKEMAKE, "-n", args.target, "-s", str(ROOT / "Snakefile"), "-d", str(work),
                                       "--configfile", str(ROOT / args.configfile), str(overlay)], str(ROOT),
                                      Path(tmp) / "ours.prof")
                bare_calls = calls_of([SNAKEMAKE, "-n", "-c1"], str(bare_dir), Path(tmp) / "bare.prof")
                graph_calls = calls_of([SNAKEMAKE, "-n", "-c1"], str(graph_dir), Path(tmp) / "graph.prof")
                print(f"      Python calls: ours {ours_calls / 1e6:.2f}M, bare {bare_calls / 1e6:.2f}M, "
                      f"ours/bare {ours_calls / bare_calls:.2f}, same graph {graph_calls / 1e6:.2f}M, "
                      f"ours/same graph {ours_calls / graph_calls:.2f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
