"""Agreement of `mmfr score` (rules only) with the official verdicts that benchmarks publish for real
model outputs (tests/fixtures/scoring, origins in its README). Prints, per benchmark and model file,
the share of items where our verdict equals the official one, and every disagreement.

    python bench/scoring_agreement.py [--show N]

Each published output file is turned into records in the benchmark's layout plus `response`, and
scored by the same code as `mmfr score --benchmark <protocol>` (mmfr.evaluate.rescore)."""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

from mmfr.evaluate import rescore

HERE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "scoring"


def mathvista():
    for path in sorted((HERE / "mathvista").glob("testmini_output_*.json")):
        data = json.loads(path.read_text())
        yield path.name, "mathvista", [(rec, bool(rec["true_false"])) for rec in data.values()]


def mmmu_pro():
    """Records whose response names no option are left out: there the official parser drew a
    random option (the README lists them), which no scorer can reproduce."""
    from mmfr.answers import as_choices
    from mmfr.benchmarks.rules import mmmu_pro_choice

    for path in sorted((HERE / "mmmu_pro").glob("*.jsonl")):
        cases = []
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if mmmu_pro_choice(rec["response"], as_choices(rec["options"])) is None:
                continue
            cases.append((rec, rec["if_right"] in (True, "True")))
        yield path.name, "mmmu_pro", cases


def mmmu():
    verdicts = json.loads((HERE / "mmmu" / "derived_verdicts_official_code.json").read_text())
    for model in ("qwen_vl", "llava1.5_13b"):
        cases = []
        for out in json.loads((HERE / "mmmu" / f"{model}_output_subset.json").read_text()):
            official = verdicts[model][out["id"]]["judge_from_response"]
            if official is None:  # the official parser drew a random option: not reproducible
                continue
            rec = {"id": out["id"], "question": "(see image)", "answer": out["answer"],
                   "question_type": out["question_type"], "response": out["response"]}
            if out["question_type"] == "multiple-choice":
                rec["options"] = str([out["index2ans"][c] for c in out["all_choices"]])
            cases.append((rec, official == "Correct"))
        yield f"{model} (derived with the official code)", "mmmu", cases


def mathvision():
    gold = {r["id"]: r for r in map(json.loads, (HERE / "mathvision" / "test_items_subset.jsonl").read_text().splitlines())}
    for path in sorted((HERE / "mathvision").glob("*-CoT.subset.jsonl")):
        cases = []
        for out in map(json.loads, path.read_text().splitlines()):
            item = dict(gold[out["id"]])
            item["options"] = ast.literal_eval(item["options"]) if isinstance(item["options"], str) else item["options"]
            cases.append(({**item, "response": out["response"]}, out["correct"] in (True, "True")))
        yield path.name, "mathvision", cases


def logicvista():
    items = json.loads((HERE / "logicvista" / "dataset_fields_subset.json").read_text())
    for path in sorted((HERE / "logicvista").glob("*-accuracy-results.csv")):
        model = path.name.split("-")[0]
        cases = []
        for row in csv.DictReader(path.open()):
            item = items.get(row["id"])
            if item is None:
                continue
            raw = row[f"{model} answer raw"]
            cases.append(({"id": row["id"], **item, "response": raw}, row["match?"] == "1"))
        yield path.name, "logicvista", cases


SETS = {"mathvista": mathvista, "mmmu": mmmu, "mmmu_pro": mmmu_pro, "mathvision": mathvision,
        "logicvista": logicvista}


def agreement(name: str, protocol: str, cases: list[tuple[dict, bool]], show: int = 0) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        records, out = os.path.join(tmp, "records.jsonl"), os.path.join(tmp, "verdicts.jsonl")
        with open(records, "w") as f:
            for rec, _ in cases:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        rescore(records, {"name": protocol, "protocol": protocol}, out)
        ours = [json.loads(x) for x in open(out)]
    agree = 0
    for (rec, official), mine in zip(cases, ours):
        if mine["correct"] == official:
            agree += 1
        elif show:
            show -= 1
            print(f"    {rec.get('id') or rec.get('pid')}: official {official}, ours {mine['verdict']} "
                  f"({mine['decided_by']}; read {str(mine['extracted'])[:60]!r}; gold {rec.get('answer')!r}); "
                  f"response tail {str(rec['response'])[-120:]!r}")
    return agree, len(cases)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--show", type=int, default=5, help="disagreements to print per file")
    parser.add_argument("--only", nargs="*", default=list(SETS))
    args = parser.parse_args(argv)
    for bench in args.only:
        total = [0, 0]
        for name, protocol, cases in SETS[bench]():
            agree, n = agreement(name, protocol, cases, args.show)
            total[0] += agree
            total[1] += n
            print(f"  {bench:11s} {name:55s} {agree}/{n} = {100 * agree / max(1, n):.1f}%")
        print(f"{bench:13s} agreement {total[0]}/{total[1]} = {100 * total[0] / max(1, total[1]):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
