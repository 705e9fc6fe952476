"""mmfr.demo.synth: determinism, record layout, answers recomputed from the scene program, disjoint
splits, composition, solutions and descriptions."""

from __future__ import annotations

import io
import json
import math
import re

import pytest
from math_verify import parse, verify
from PIL import Image

from mmfr.demo.synth import FAMILIES, compose, describe, generate, solution, split_of
from mmfr.demo.synth.puzzle import DIRECTIONS

N, SEED = 48, 7
KEYS = {"original_id", "question", "answer", "answer_type", "choices", "image", "metadata", "domain"}
POLYGONS = {3: "triangle", 4: "square", 5: "pentagon", 6: "hexagon", 7: "heptagon", 8: "octagon"}


@pytest.fixture(scope="module")
def train():
    return {f: generate(f, "train", N, SEED) for f in FAMILIES}


@pytest.fixture(scope="module")
def composed(train):
    return compose([r for f in FAMILIES for r in train[f]], 160, SEED)


def chosen(record: dict) -> str:
    """The option text the answer letter points at."""
    return record["choices"]["ABCD".index(record["answer"])]


def equivalent(a: str, b: str) -> bool:
    return verify(parse(f"${a}$"), parse(f"${b}$"))


def value_of(text: str) -> float:
    """Numeric value of an option such as '12', '7.5', '5√2', '12 + 5√2', '64π' or '110°'."""
    total = 0.0
    for term in text.replace("°", "").split(" + "):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)?(?:√(\d+)|(π))?", term)
        assert m and term, text
        total += (float(m[1]) if m[1] else 1.0) * (math.sqrt(int(m[2])) if m[2] else math.pi if m[3] else 1.0)
    return total


# ---- independent recomputation of simple answers


def beyond(shapes, ref, side):
    axis, sign = {"left": ("x", -1), "right": ("x", 1), "above": ("y", -1), "below": ("y", 1)}[side]
    return [s for s in shapes if s is not ref and sign * (s[axis] - ref[axis]) > 0]


def name(s):
    return f"{s['color']} {s['shape']}"


def check_counting(r):
    m = r["metadata"]
    shapes, q = m["program"]["shapes"], m["query"]
    for i, a in enumerate(shapes):  # no overlap, inside the canvas
        assert (
            a["r"] <= a["x"] <= m["program"]["width"] - a["r"] and a["r"] <= a["y"] <= m["program"]["height"] - a["r"]
        )
        for b in shapes[i + 1 :]:
            assert math.hypot(a["x"] - b["x"], a["y"] - b["y"]) >= a["r"] + b["r"]
    if m["kind"] == "count":
        expected = sum((q["color"] in (None, s["color"])) and (q["shape"] in (None, s["shape"])) for s in shapes)
        assert r["answer"] == str(expected)
    elif m["kind"] == "extreme":
        key = {
            "left": lambda s: s["x"],
            "right": lambda s: -s["x"],
            "top": lambda s: s["y"],
            "bottom": lambda s: -s["y"],
        }[q["side"]]
        assert chosen(r) == name(min(shapes, key=key))
    elif m["kind"] == "relative":
        assert r["answer"] == str(len(beyond(shapes, shapes[q["ref"]], q["side"])))
    else:
        ref = shapes[q["ref"]]
        nearest = min(
            (s for s in shapes if s is not ref), key=lambda s: math.hypot(s["x"] - ref["x"], s["y"] - ref["y"])
        )
        assert chosen(r) == name(nearest)
        assert [name(s) for s in shapes].count(name(ref)) == 1


def check_charts(r):
    m = r["metadata"]
    p, q = m["program"], m["query"]
    value = dict(zip(p["categories"], p["values"]))
    x0, y0, x1, y1 = p["plot"]
    for v, (_, y) in zip(p["values"], p["marks"]):  # marks drawn at the values, exactly readable
        assert 0 < v <= p["y_max"] and abs(y - (y1 - v * (y1 - y0) / p["y_max"])) <= 1
        assert p["value_labels"] or v % p["tick_step"] == 0
    if m["kind"] == "read":
        assert r["answer"] == str(value[q["category"]])
    elif m["kind"] == "extreme":
        best = (max if q["which"] == "largest" else min)(p["values"])
        assert p["values"].count(best) == 1 and value[chosen(r)] == best
    elif m["kind"] == "diff":
        assert r["answer"] == str(value[q["a"]] - value[q["b"]]) and int(r["answer"]) > 0
    else:
        assert r["answer"] == str(value[q["a"]] + value[q["b"]])


def angle_at(v, p, q):
    a = math.atan2(p[1] - v[1], p[0] - v[0]) - math.atan2(q[1] - v[1], q[0] - v[0])
    return math.degrees(abs((a + math.pi) % (2 * math.pi) - math.pi))


def check_geometry(r):
    m = r["metadata"]
    p, q = m["program"], m["query"]
    if m["kind"] == "triangle_angle":
        third = 180 - sum(p["marked"].values())
        assert r["answer"] == str(third) and third > 0
        vs = p["vertices"]
        for v, deg in {**p["marked"], p["unknown"]: third}.items():  # drawn to scale
            o1, o2 = (vs[o] for o in "ABC" if o != v)
            assert abs(angle_at(vs[v], o1, o2) - deg) < 2.5
    elif m["kind"] == "hypotenuse":
        a, b = p["legs"]["CA"], p["legs"]["CB"]
        assert equivalent(r["answer"], f"\\sqrt{{{a * a + b * b}}}")
        assert not equivalent(r["answer"], f"\\sqrt{{{a * a + b * b + 1}}}")
        assert (
            abs(
                math.dist(p["vertices"]["A"], p["vertices"]["B"]) ** 2
                - math.dist(p["vertices"]["C"], p["vertices"]["A"]) ** 2
                - math.dist(p["vertices"]["C"], p["vertices"]["B"]) ** 2
            )
            < 0.05 * math.dist(p["vertices"]["A"], p["vertices"]["B"]) ** 2
        )
    elif m["kind"] == "circle":
        rad = p["value"] if p["given"] == "radius" else p["value"] / 2
        truth = f"{rad * rad:g}\\pi" if q["ask"] == "area" else f"{2 * rad:g}\\pi"
        assert equivalent(r["answer"], truth) and equivalent(r["answer"], truth.replace("\\pi", "*\\pi"))
    else:
        w, h = p["sides"]["width"], p["sides"]["height"]
        assert r["answer"] == str(w * h if q["ask"] == "area" else 2 * (w + h))


def follows(rule, line, total):
    return {
        "sum": lambda: len(line) == 3 and line[0] + line[1] == line[2],
        "difference": lambda: len(line) == 3 and line[0] - line[1] == line[2],
        "product": lambda: len(line) == 3 and line[0] * line[1] == line[2],
        "arithmetic": lambda: all(b - a == line[1] - line[0] for a, b in zip(line, line[1:])),
        "constant_total": lambda: sum(line) == total,
    }[rule]()


def completed_grid(p, value):
    grid = [[value if v is None else v for v in row] for row in p["cells"]]
    return grid if p["rule"]["axis"] == "row" else [list(c) for c in zip(*grid)]


def sequence_content(rule, t):
    if rule["name"] == "count":
        n = rule["start"] + t * rule["step"]
        return f"{n} {rule['shape']}" + ("s" if n != 1 else "")
    if rule["name"] == "sides":
        return POLYGONS.get(rule["start"] + t, f"{rule['start'] + t}")
    if rule["name"] == "rotate":
        return f"arrow pointing {DIRECTIONS[(rule['start'] + t * rule['step']) % 360]}"
    return f"{rule['cycle'][t % len(rule['cycle'])]} {rule['shape']}"


def check_puzzle(r):
    p = r["metadata"]["program"]
    if p["puzzle"] == "grid":
        lines = completed_grid(p, int(r["answer"]))
        assert all(follows(p["rule"]["name"], line, sum(lines[0])) for line in lines)
        assert sum(v is None for row in p["cells"] for v in row) == 1
    else:
        rule = p["rule"]
        assert chosen(r) == sequence_content(rule, p["shown"])
        for t, panel in enumerate(p["panels"][:-1]):  # the drawn panels follow the rule
            c = panel["content"]
            drawn = {
                "count": lambda: f"{len(c['items'])} {rule['shape']}" + ("s" if len(c["items"]) != 1 else ""),
                "sides": lambda: POLYGONS[c["sides"]],
                "rotate": lambda: f"arrow pointing {DIRECTIONS[c['direction']]}",
                "color": lambda: f"{c['color']} {rule['shape']}",
            }[rule["name"]]()
            assert drawn == sequence_content(rule, t)
        assert p["panels"][-1]["content"] == {}


CHECKS = {"counting": check_counting, "charts": check_charts, "geometry": check_geometry, "puzzle": check_puzzle}


# ---- tests


def test_deterministic(train):
    for family in FAMILIES:
        again = generate(family, "train", 12, SEED)
        assert again == train[family][:12]  # same seed: identical records, image bytes included
        other = generate(family, "train", 12, SEED + 1)
        assert [r["image"] for r in other] != [r["image"] for r in again]
        assert [r["question"] + r["answer"] for r in other] != [r["question"] + r["answer"] for r in again]


def test_record_layout(train):
    sizes = []
    for family in FAMILIES:
        records = train[family]
        assert len({r["original_id"] for r in records}) == N
        assert len({r["metadata"]["kind"] for r in records}) >= 2
        assert len({r["answer_type"] for r in records}) >= 2
        for i, r in enumerate(records):
            assert set(r) == KEYS
            assert r["original_id"] == f"{family}-train-{i:06d}"
            assert isinstance(r["question"], str) and r["question"] and isinstance(r["answer"], str) and r["answer"]
            assert r["answer_type"] in ("choice", "number", "expression")
            assert r["domain"] in ("math", "puzzle", "science", "general")
            assert isinstance(r["choices"], list) and all(isinstance(c, str) for c in r["choices"])
            if r["answer_type"] == "choice":
                assert len(r["choices"]) == 4 == len(set(r["choices"])) and r["answer"] in "ABCD"
                assert r["choices"] == r["metadata"]["options"]
            else:
                assert r["choices"] == []
            if r["answer_type"] == "number":
                float(r["answer"])
            m = r["metadata"]
            assert m["family"] == family and json.loads(json.dumps(m)) == m
            image = Image.open(io.BytesIO(r["image"]))
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == (m["program"]["width"], m["program"]["height"])
            assert 224 <= max(image.size) <= 640
            sizes.append(max(image.size))
    assert any(s > 512 for s in sizes) and any(s <= 512 for s in sizes)


@pytest.mark.parametrize("family", FAMILIES)
def test_answers_recomputed(train, family):
    for r in train[family]:
        CHECKS[family](r)


def test_splits_disjoint(train):
    for family in FAMILIES:
        test = generate(family, "test", N, SEED)
        assert all(r["original_id"].startswith(f"{family}-test-") for r in test)
        problems = [
            {json.dumps([r["question"], r["answer"], r["metadata"]["program"]], sort_keys=True) for r in rs}
            for rs in (train[family], test)
        ]
        assert not problems[0] & problems[1]
        assert not {r["image"] for r in train[family]} & {r["image"] for r in test}
        # disjoint by construction: a scene's program decides its split, whatever the seed
        assert all(split_of(r["metadata"]["program"]) == "train" for r in train[family])
        assert all(split_of(r["metadata"]["program"]) == "test" for r in test)
        for r in test:
            CHECKS[family](r)


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate("counting", "validation", 1, 0)
    with pytest.raises(ValueError):
        generate("nope", "train", 1, 0)


def expected_option(m) -> str | float:
    """The right option of a composed question, recomputed from the parent's program."""
    p, recipe = m["program"], m["recipe"]
    name_ = recipe["name"]
    if m["parent_family"] == "counting":
        shapes = p["shapes"]

        def count(c):
            return sum(c["color"] in (None, s["color"]) and c["shape"] in (None, s["shape"]) for s in shapes)

        if name_ == "count_difference":
            return count(recipe["more"]) - count(recipe["fewer"])
        if name_ == "count_union":
            return sum(s["color"] == recipe["color"] or s["shape"] == recipe["shape"] for s in shapes)
        members = beyond(shapes, shapes[recipe["ref"]], recipe["side"])
        return sum(s["color"] == recipe["color"] for s in members)
    if m["parent_family"] == "charts":
        vals = sorted(p["values"])
        if name_ == "sum_top2":
            return vals[-1] + vals[-2]
        if name_ == "range":
            return vals[-1] - vals[0]
        v = p["values"][p["categories"].index(recipe["category"])]
        return sum(x > v for x in vals)
    if m["parent_family"] == "geometry":
        if p["figure"] == "triangle":
            angles = {**p["marked"], p["unknown"]: 180 - sum(p["marked"].values())}
            if name_ == "angle_compare":
                (x, y), z = recipe["pair"], recipe["single"]
                s = angles[x] + angles[y]
                return f"∠{x} + ∠{y}" if s > angles[z] else f"∠{z}" if s < angles[z] else "They are equal"
            if name_ == "largest_angle":
                return f"∠{max(angles, key=angles.get)}"
            return 180 - angles[recipe["vertex"]]
        if p["figure"] == "right_triangle":
            a, b = p["legs"]["CA"], p["legs"]["CB"]
            return a + b + math.hypot(a, b) if name_ == "right_perimeter" else a * b / 2
        if p["figure"] == "circle":
            rad = p["value"] if p["given"] == "radius" else p["value"] / 2
            return 4 * math.pi * rad * rad if name_ == "doubled_area" else rad / 2
        w, h = p["sides"]["width"], p["sides"]["height"]
        return ((w + h) / 2) ** 2 if name_ == "square_same_perimeter" else math.hypot(w, h)
    if p["puzzle"] == "grid":
        answer = solution({"family": "puzzle", "kind": "grid", "program": p, "query": {}})["answer"]
        lines = completed_grid(p, int(answer))
        assert all(follows(p["rule"]["name"], line, sum(lines[0])) for line in lines)
        if name_ == "grid_total":
            return sum(map(sum, lines))
        k = p["missing"][0] if p["rule"]["axis"] == "row" else p["missing"][1]
        return sum(lines[k])
    rule, t = p["rule"], recipe["panel"] - 1
    if rule["name"] == "count":
        return rule["start"] + t * rule["step"]
    if rule["name"] == "sides":
        return rule["start"] + t
    return sequence_content(rule, t)


def test_compose(train, composed):
    parents = {r["original_id"]: r for f in FAMILIES for r in train[f]}
    assert len(composed) == 160
    assert compose(list(parents.values()), 10, SEED) == composed[:10]
    assert len({r["original_id"] for r in composed}) == 160
    assert {r["metadata"]["parent_family"] for r in composed} == set(FAMILIES)
    for r in composed:
        m = r["metadata"]
        assert set(r) == KEYS and r["answer_type"] == "choice" and m["family"] == "composed"
        assert len(r["choices"]) == 4 == len(set(r["choices"])) and r["answer"] in "ABCD"
        parent = parents[m["parent_id"]]
        assert m["program"] == parent["metadata"]["program"] and r["image"] == parent["image"]
        assert m["recipe"]["name"] == m["kind"] and json.loads(json.dumps(m)) == m
        expected = expected_option(m)
        if isinstance(expected, str):
            assert chosen(r) == expected, (m, r["choices"])
        else:  # numeric: the chosen option has the value, and no other option does
            values = [value_of(c) for c in r["choices"]]
            assert math.isclose(value_of(chosen(r)), expected, rel_tol=1e-9), (m, r["choices"])
            assert sum(math.isclose(v, expected, rel_tol=1e-9) for v in values) == 1


def test_solution_and_describe(train, composed):
    for r in [r for f in FAMILIES for r in train[f]] + composed:
        s = solution(r["metadata"])
        assert set(s) == {"facts", "setup", "steps", "check", "answer"}
        assert s["answer"] == r["answer"]
        assert s["facts"] and s["steps"] and all(isinstance(x, str) and x for x in s["facts"] + s["steps"])
        assert isinstance(s["setup"], str) and s["setup"] and isinstance(s["check"], str) and s["check"]
        d = describe(r["metadata"])
        assert set(d) == {"category", "summary", "components", "interactions", "implicit", "ambiguities"}
        assert d["category"] and d["summary"]
        for key in ("components", "interactions", "implicit", "ambiguities"):
            assert d[key] and all(isinstance(x, str) and x for x in d[key])
