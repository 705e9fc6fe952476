"""The ``mmfr`` command: ``show`` (what a build made, and the scores), ``plan``, ``audit``, ``clean``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


# a subset's mean pass rate over its samples (the table holds one mean per source and domain)
SUBSETS = ("SELECT subset, sum(n) n, round(sum(n * mean_pass_rate) / sum(n), 3) mean_pass_rate FROM subsets "
           "GROUP BY subset ORDER BY subset")


def show(path: str) -> None:
    import duckdb

    if not os.path.exists(path):
        sys.exit(f"mmfr show: {path} does not exist; build it with `snakemake ... all`")
    con = duckdb.connect(path, read_only=True)

    def table(title: str, sql: str) -> None:
        rel = con.execute(sql)
        cols = [d[0] for d in rel.description]
        rows = rel.fetchall()
        print(f"\n## {title}")
        widths = [max(len(str(c)), *(len(_fmt(r[i])) for r in rows)) for i, c in enumerate(cols)]
        print("  ".join(str(c).ljust(w) for c, w in zip(cols, widths)))
        for r in rows:
            print("  ".join(_fmt(v).ljust(w) for v, w in zip(r, widths)))

    table("Samples per stage", "PIVOT stage_counts ON stage USING sum(n) GROUP BY source ORDER BY source")
    table("Sources: raw = kept + quarantined + excluded + duplicate + contaminated, beside the paper's counts "
          "(paper_raw: items it started from; expected: in its 1.8M)",
          "SELECT source, raw, kept, quarantined, excluded, duplicate, contaminated, balanced, paper_raw, expected "
          "FROM accounting ORDER BY source")
    table("Dropped, by reason", "SELECT category, reason, sum(n) n FROM drop_reasons GROUP BY ALL ORDER BY category, n DESC")
    table("Cleaning", "SELECT clean_status, answer_from, sum(n) n FROM cleaning GROUP BY ALL ORDER BY n DESC")
    table("Verdicts", "SELECT verdict, decided_by, sum(n) n FROM verdicts GROUP BY ALL ORDER BY n DESC")
    table("Tokens (Qwen3-VL tokenizer, verified traces)",
          "SELECT kind, n, round(mean, 1) mean, median, round(p95) p95, max, total FROM token_stats "
          "WHERE source = '(all)'")
    table("Pass rate of the proxy model", "SELECT pass_rate, sum(n) n FROM pass_rates GROUP BY ALL ORDER BY ALL")
    table("Subsets", SUBSETS)
    table("Scores (%; judged: items the answer judge decided; undecided: nobody could, judge_error included)",
          "SELECT coalesce(subset, '-') subset, size, stage, benchmark, round(accuracy, 2) score, n, judged, undecided "
          "FROM scores WHERE category = '(all)' ORDER BY size, subset NULLS FIRST, stage, benchmark")
    print("\nWhere things are:")
    print("  datasets   data/subsets/<subset>/  (datasets.load_dataset('data/subsets/<subset>'))")
    print("  models     models/<subset>/<size>/{sft,gspo,dpo}/  (transformers checkpoints)")
    print("  scores     results/scores/<subset>/<size>/scores.tsv, per-item answers beside them")
    print(f"  summary    {path}  (duckdb; tables: {', '.join(r[0] for r in con.execute('SHOW TABLES').fetchall())})")
    print("  provenance provenance/<artifact>.json")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def snakemake_summary(target: str | None, profile: str | None, configfiles: list[str] | None,
                      snakefile: str | None = None) -> str:
    """``snakemake --summary`` of ``target`` (the default target when None), as the build was run."""
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")
    command = [snakemake, *([target] if target else []), *(["-s", snakefile] if snakefile else []),
               *(["--profile", profile] if profile else []), "--summary",
               *(["--configfile", *configfiles] if configfiles else [])]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"mmfr: `{' '.join(command[1:])}` failed (run it where the Snakefile is, or give "
                 f"--snakefile):\n{proc.stderr[-3000:]}")
    return proc.stdout


def audit(target: str, configfiles: list[str] | None, check_code: bool, snakefile: str | None = None,
          show_chain: bool = False) -> int:
    """Print the audit of ``target`` (after its chain, with ``show_chain``); exit status 1 when
    anything does not match."""
    from mmfr.audit import audit as run, chain, params_changed, report

    if show_chain:
        print("\n".join(chain(target)) + "\n")
    changed = params_changed(snakemake_summary(None, None, configfiles, snakefile)) if configfiles else set()
    walked, findings = run(target, changed, check_code)
    print(report(target, walked, findings))
    return 1 if findings else 0


def clean(target: str, profile: str | None, configfiles: list[str] | None, dry_run: bool,
          snakefile: str | None = None) -> None:
    """Delete what the graph of ``target`` (under this profile and config) builds, and nothing else."""
    import shutil

    from mmfr.audit import build_files

    files = [f for f in build_files(snakemake_summary(target, profile, configfiles, snakefile)) if os.path.lexists(f)]
    for f in files:
        print(("would delete " if dry_run else "deleting ") + f)
        if not dry_run:
            shutil.rmtree(f) if os.path.isdir(f) and not os.path.islink(f) else os.remove(f)
    print(f"{len(files)} files and folders {'to delete' if dry_run else 'deleted'}")


def score(records: str, benchmark: str, configfiles: list[str], out: str, judge: bool) -> int:
    from mmfr.benchmarks import PROTOCOLS
    from mmfr.evaluate import rescore
    from mmfr.plan import load_config

    config = load_config(configfiles) if all(os.path.exists(p) for p in configfiles) else {}
    specs = {b["name"]: b for b in config.get("benchmarks") or []}
    if benchmark not in specs and benchmark not in PROTOCOLS:
        print(f"mmfr score: no benchmark {benchmark!r} in {', '.join(configfiles)} and no protocol of that name; "
              f"benchmarks: {', '.join(sorted(specs)) or 'none'}; protocols: {', '.join(sorted(PROTOCOLS))}",
              file=sys.stderr)
        return 2
    spec = specs.get(benchmark) or {"name": benchmark, "protocol": benchmark}
    model = (config.get("evaluate") or {}).get("judge") if judge else None
    if judge and not model:
        print("mmfr score: --judge needs evaluate.judge in the config", file=sys.stderr)
        return 2
    counts = rescore(records, spec, out, model, int(config.get("seed", 0)))
    print(f"accuracy: {counts['correct']}/{counts['lines']}")
    if counts["units"] != counts["lines"] - counts["unreadable"]:
        print(f"worst-case: {counts['units_correct']}/{counts['units']}")
    print("undecided: {undecided}, judge_error: {judge_error}, unreadable: {unreadable}".format(**counts))
    return 0


def _build_shards(command: str) -> dict[str, list[str]]:
    """A build directory's clean, captions, traces, verified and passrate shards."""
    import glob

    shards = {stage: sorted(glob.glob(f"data/{stage}/*/*.parquet")) for stage in
              ("clean", "captions", "traces", "verified", "passrate")}
    shards["clean"] = [p for p in shards["clean"] if not p.endswith(".dropped.parquet")]
    if missing := [stage for stage, paths in shards.items() if not paths]:
        raise SystemExit(f"{command}: no data/{missing[0]}/ shards here: run it in a build directory "
                         f"(after `snakemake datasets`)")
    return shards


def export_release(out: str, subsets: list[str]) -> None:
    """``mmfr export-release OUT`` in a build directory: its stage shards, in the release's layout."""
    from mmfr.release import export

    shards = _build_shards("export-release")
    counts = export(shards["clean"], shards["captions"], shards["traces"], shards["verified"], shards["passrate"], out,
                    [f"data/subsets/{name}" for name in subsets] or None)
    print(f"{sum(counts.values())} rows in {len(counts)} sources written to {out}")


def compare_release(release: str, revision: str | None, pairs: list[str], out: str, distance: int) -> None:
    """``mmfr compare RELEASE``: the build beside the release (``mmfr.release.compare``), printed and in ``out``."""
    import os

    from mmfr.release import compare

    shards = _build_shards("compare")
    released = dict(pair.split("=", 1) for pair in pairs)
    subsets = {name: f"data/subsets/{name}" for name in released}
    if absent := [name for name, folder in subsets.items() if not os.path.isdir(folder)]:
        raise SystemExit(f"compare: no subset {absent[0]!r} in this build (data/subsets/)")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    result = compare(shards, subsets, release, revision, released, out, distance)
    for name, rows in (("Sources", result["sources"]), ("Subsets", result["subsets"])):
        print(f"## {name}")
        if rows:
            print("\t".join(rows[0]))
            for row in rows:
                print("\t".join("" if v is None else str(v) for v in row.values()))
    print(f"tables release_sources and release_subsets in {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mmfr")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("show", help="print the summary of a build")
    p.add_argument("summary", nargs="?", default="results/summary.duckdb")
    p = sub.add_parser("plan", help="requests, tokens and GPU hours per generation stage, from the config")
    p.add_argument("--configfile", nargs="+", default=["config.yaml"], help="config.yaml, then overlays")
    p.add_argument("--tokens-per-second", type=float, default=2500.0, help="output tokens/s of one engine")
    p.add_argument("--load-minutes", type=float, default=10.0, help="minutes to load a model, per job")
    p = sub.add_parser("audit", help="check an artifact's lineage against its provenance records")
    p.add_argument("target", help="an artifact path, e.g. data/subsets/mfr123k or results/summary.duckdb")
    p.add_argument("--configfile", nargs="+", help="also ask Snakemake which artifacts' params changed")
    p.add_argument("--no-code", action="store_true", help="do not report artifacts built by other code")
    p.add_argument("--chain", action="store_true", help="first print the lineage: each artifact's rule, models, "
                                                        "the journals of responses it read and the jobs that made them")
    p.add_argument("--snakefile", help="the workflow's Snakefile, when the build directory is not the repo "
                                       "(then give config.yaml first in --configfile)")
    p = sub.add_parser("clean", help="delete what one target's graph builds (outputs, logs, provenance, journals)")
    p.add_argument("target", help="a target of the Snakefile, e.g. all")
    p.add_argument("--profile", help="the profile the graph was built with, e.g. profiles/demo")
    p.add_argument("--configfile", nargs="+", help="config.yaml, then overlays (as the build was given)")
    p.add_argument("-n", "--dry-run", action="store_true", help="list what would be deleted")
    p.add_argument("--snakefile", help="the workflow's Snakefile, when the build directory is not the repo")
    p = sub.add_parser("score", help="score a model's outputs on a benchmark, as the pipeline's evaluation does")
    p.add_argument("records", help="JSONL: a record in the benchmark's published layout plus `response` per line")
    p.add_argument("--benchmark", required=True, help="a benchmark of the config, or a protocol's name")
    p.add_argument("--configfile", nargs="+", default=["config.yaml"], help="config.yaml, then overlays")
    p.add_argument("--out", required=True, help="JSONL: id, extracted, verdict, decided_by, correct per line")
    p.add_argument("--judge", action="store_true", help="also ask the config's evaluate.judge about what the "
                                                        "rules call wrong or cannot decide")
    p = sub.add_parser("export-release", help="write this build's records, captions, first traces, pass rates "
                                              "and verdicts in the layout of the published MMFineReason-Full-2.3M")
    p.add_argument("out", help="the folder to write (one sub-folder per source, and release.json)")
    p.add_argument("--subset", action="append", default=[], help="only the samples of this subset (data/subsets/NAME)")
    p = sub.add_parser("compare", help="set this build beside a published release: matched records, answers, "
                                       "verdicts, pass rates, lengths, and the overlap of subsets")
    p.add_argument("release", help="the release: a Hub dataset id or a folder of parquet files")
    p.add_argument("--revision", help="the release's commit (Hub)")
    p.add_argument("--subset", action="append", default=[], metavar="NAME=RELEASED",
                   help="compare our subset NAME with a released set (Hub id or folder), e.g. "
                        "mfr123k=OpenDataArena/MMFineReason-SFT-123K-Qwen3-VL-235B-Thinking")
    p.add_argument("--out", default="results/release_compare.duckdb", help="duckdb file with the two tables")
    p.add_argument("--phash-distance", type=int, default=4, help="a record whose image bytes differ from the "
                   "release's matches the same question with an image this many bits of perceptual hash away")
    args = parser.parse_args(argv)
    if args.command == "export-release":
        return export_release(args.out, args.subset)
    if args.command == "compare":
        return compare_release(args.release, args.revision, args.subset, args.out, args.phash_distance)
    if args.command == "score":
        sys.exit(score(args.records, args.benchmark, args.configfile, args.out, args.judge))
    if args.command == "clean":
        return clean(args.target, args.profile, args.configfile, args.dry_run, args.snakefile)
    if args.command == "audit":
        sys.exit(audit(args.target, args.configfile, not args.no_code, args.snakefile, args.chain))
    if args.command == "show":
        show(args.summary)
    elif args.command == "plan":
        from mmfr.plan import load_config, render, stages

        print(render(stages(load_config(args.configfile)), args.tokens_per_second, args.load_minutes))


if __name__ == "__main__":
    main()
