"""Counting: coloured circles, squares and triangles scattered without overlap.

Program: ``{"width", "height", "background", "shapes": [{"shape", "color", "x", "y", "r"}]}`` where
(x, y) is a shape's centre and r the radius of the circle it is drawn inside (circles never touch).
"""

from __future__ import annotations

import math
import random

from PIL import Image

from mmfr.demo.synth.draw import COLORS, canvas, canvas_size, shape
from mmfr.options import letter_of, lettered, number_options, plural

KINDS = ("count", "extreme", "relative", "nearest")
ANSWER_TYPES = {"count": "number", "extreme": "choice", "relative": "number", "nearest": "choice"}
DOMAIN = "general"
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"white": (255, 255, 255), "cream": (250, 246, 232), "grey": (236, 236, 236)}
TIE = 8  # px: centres closer than this along an axis are too close to order by eye
# extreme side -> (axis, sign: +1 when the smallest coordinate wins, wording)
EXTREMES = {
    "left": ("x", 1, "furthest to the left"),
    "right": ("x", -1, "furthest to the right"),
    "top": ("y", 1, "closest to the top edge"),
    "bottom": ("y", -1, "closest to the bottom edge"),
}
# relative side -> (axis, sign of (shape - reference) for members, wording)
SIDES = {
    "left": ("x", -1, "further left than"),
    "right": ("x", 1, "further right than"),
    "above": ("y", -1, "higher up than"),
    "below": ("y", 1, "lower down than"),
}


def _name(s: dict) -> str:
    return f"{s['color']} {s['shape']}"


def _at(s: dict) -> str:
    return f"({s['x']}, {s['y']})"


def _class_name(color: str | None, kind: str | None) -> str:
    """'red shapes', 'triangles' or 'red triangles'."""
    return f"{color + ' ' if color else ''}{kind or 'shape'}s"


def _matches(s: dict, color: str | None, kind: str | None) -> bool:
    return (color is None or s["color"] == color) and (kind is None or s["shape"] == kind)


def _count(shapes: list[dict], color: str | None = None, kind: str | None = None) -> int:
    return sum(_matches(s, color, kind) for s in shapes)


def _unique(shapes: list[dict]) -> list[int]:
    """Indices of shapes whose colour+shape name occurs once (so 'the red circle' is well defined)."""
    names = [_name(s) for s in shapes]
    return [i for i, n in enumerate(names) if names.count(n) == 1]


def _ordered(shapes: list[dict], side: str) -> list[dict]:
    axis, sign, _ = EXTREMES[side]
    return sorted(shapes, key=lambda s: sign * s[axis])


def _beyond(shapes: list[dict], ref: dict, side: str) -> list[dict] | None:
    """Shapes on ``side`` of ``ref`` by centre; None if any centre is within TIE of ref's on that axis."""
    axis, sign, _ = SIDES[side]
    others = [s for s in shapes if s is not ref]
    if any(abs(s[axis] - ref[axis]) < TIE for s in others):
        return None
    return [s for s in others if sign * (s[axis] - ref[axis]) > 0]


def _distances(shapes: list[dict], ref: dict) -> list[tuple[float, float, dict]]:
    """(centre distance, edge gap, shape) for every other shape, nearest centre first."""
    out = []
    for s in shapes:
        if s is not ref:
            d = math.hypot(s["x"] - ref["x"], s["y"] - ref["y"])
            out.append((d, d - s["r"] - ref["r"], s))
    return sorted(out, key=lambda t: t[0])


def _nearest(shapes: list[dict], ref: dict) -> dict | None:
    """The shape clearly nearest to ``ref`` by both centre distance and edge gap, else None."""
    by_centre = _distances(shapes, ref)
    if len(by_centre) < 2:
        return None
    by_gap = sorted(by_centre, key=lambda t: t[1])
    (d1, _, s1), (d2, _, _) = by_centre[:2]
    clear = d2 - d1 >= max(TIE, 0.15 * d1) and by_gap[1][1] - by_gap[0][1] >= TIE
    return s1 if clear and by_gap[0][2] is s1 else None


def _name_distractors(rng: random.Random, shapes: list[dict], exclude: set[str]) -> list[str]:
    """Names present in the scene first, then other colour+shape names."""
    present = [n for n in dict.fromkeys(_name(s) for s in shapes) if n not in exclude]
    absent = [f"{c} {k}" for c in COLORS for k in SHAPES if f"{c} {k}" not in exclude and f"{c} {k}" not in present]
    rng.shuffle(present)
    rng.shuffle(absent)
    return present + absent


def scene(rng: random.Random) -> dict:
    width, height = canvas_size(rng)
    palette = rng.sample(list(COLORS), rng.randint(2, 4))
    short = min(width, height)
    r_lo, r_hi = max(9, short // 18), max(12, short // 10)
    target = rng.randint(5, 12)
    shapes: list[dict] = []
    for _ in range(60 * target):
        if len(shapes) == target:
            break
        r = rng.randint(r_lo, r_hi)
        x, y = rng.randint(r + 4, width - r - 4), rng.randint(r + 4, height - r - 4)
        if all((x - s["x"]) ** 2 + (y - s["y"]) ** 2 >= (r + s["r"] + 6) ** 2 for s in shapes):
            shapes.append({"shape": rng.choice(SHAPES), "color": rng.choice(palette), "x": x, "y": y, "r": r})
    return {"width": width, "height": height, "background": rng.choice(list(BACKGROUNDS)), "shapes": shapes}


# ---- simple questions: each returns (query, options or None, question) or None if the scene is unfit


def _ask_count(rng, shapes):
    s = rng.choice(shapes)
    by = rng.choice(("color", "shape", "both"))
    query = {"color": s["color"] if by != "shape" else None, "shape": s["shape"] if by != "color" else None}
    return query, None, f"How many {_class_name(query['color'], query['shape'])} are there in the picture?"


def _ask_extreme(rng, shapes):
    side = rng.choice(list(EXTREMES))
    axis, _, wording = EXTREMES[side]
    first, second = _ordered(shapes, side)[:2]
    if abs(first[axis] - second[axis]) < TIE:
        return None
    options = lettered(rng, _name(first), _name_distractors(rng, shapes, {_name(first)}))
    return {"side": side}, options, f"Which shape is {wording} in the picture?"


def _ask_relative(rng, shapes):
    pairs = [(i, side) for i in _unique(shapes) for side in SIDES]
    rng.shuffle(pairs)
    for i, side in pairs:
        if _beyond(shapes, shapes[i], side) is not None:
            return (
                {"ref": i, "side": side},
                None,
                f"How many shapes are {SIDES[side][2]} the {_name(shapes[i])}? Compare the shapes' centres.",
            )
    return None


def _ask_nearest(rng, shapes):
    refs = _unique(shapes)
    rng.shuffle(refs)
    for i in refs:
        near = _nearest(shapes, shapes[i])
        if near is not None:
            exclude = {_name(near), _name(shapes[i])}
            options = lettered(rng, _name(near), _name_distractors(rng, shapes, exclude))
            return {"ref": i}, options, f"Which shape is closest to the {_name(shapes[i])}?"
    return None


_ASK = {"count": _ask_count, "extreme": _ask_extreme, "relative": _ask_relative, "nearest": _ask_nearest}


def sample(rng: random.Random, kind: str) -> tuple[dict, str]:
    """A scene and a question of ``kind`` that it answers unambiguously."""
    while True:
        program = scene(rng)
        asked = _ASK[kind](rng, program["shapes"])
        if asked:
            query, options, question = asked
            meta = {"program": program, "query": query}
            if options:
                meta["options"] = options
            return meta, question


def objects(program: dict) -> dict:
    """The scene's shapes as a detection dataset labels them (COCO layout): the bounding box
    ``[x, y, width, height]`` of each shape's circle, and its class ``"<colour> <shape>"``."""
    shapes = program["shapes"]
    return {"bbox": [[s["x"] - s["r"], s["y"] - s["r"], 2 * s["r"], 2 * s["r"]] for s in shapes],
            "category": [_name(s) for s in shapes]}


def render(program: dict) -> Image.Image:
    image, draw = canvas(program["width"], program["height"], BACKGROUNDS[program["background"]])
    for s in program["shapes"]:
        shape(draw, s["shape"], s["x"], s["y"], s["r"], COLORS[s["color"]])
    return image


# ---- composed questions: each returns (recipe, options, question) or None


def _classes(shapes: list[dict]) -> list[tuple[str | None, str | None]]:
    colors = [(c, None) for c in dict.fromkeys(s["color"] for s in shapes)]
    kinds = [(None, k) for k in dict.fromkeys(s["shape"] for s in shapes)]
    both = list(dict.fromkeys((s["color"], s["shape"]) for s in shapes))
    return colors + kinds + both


def _nested(a: tuple, b: tuple) -> bool:
    """One class contains the other ('red shapes' and 'red triangles')."""
    sa = {(k, v) for k, v in zip(("color", "shape"), a) if v}
    sb = {(k, v) for k, v in zip(("color", "shape"), b) if v}
    return sa <= sb or sb <= sa


def _compose_difference(rng, shapes):
    counts = {c: _count(shapes, *c) for c in _classes(shapes)}
    pairs = [(a, b) for a in counts for b in counts if counts[a] > counts[b] and not _nested(a, b)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    ca, cb = counts[a], counts[b]
    options = number_options(rng, ca - cb, [ca + cb, ca, cb])
    recipe = {
        "name": "count_difference",
        "more": {"color": a[0], "shape": a[1]},
        "fewer": {"color": b[0], "shape": b[1]},
    }
    return recipe, options, f"How many more {_class_name(*a)} than {_class_name(*b)} are there in the picture?"


def _compose_union(rng, shapes):
    colors = list(dict.fromkeys(s["color"] for s in shapes))
    kinds = list(dict.fromkeys(s["shape"] for s in shapes))
    color, kind = rng.choice(colors), rng.choice(kinds)
    cc, ck, both = _count(shapes, color), _count(shapes, None, kind), _count(shapes, color, kind)
    value = cc + ck - both
    if value == len(shapes):
        return None
    options = number_options(rng, value, [cc + ck, cc, ck, both, len(shapes)])
    recipe = {"name": "count_union", "color": color, "shape": kind}
    return recipe, options, f"How many shapes in the picture are {color} or are {kind}s (or both)?"


def _compose_relative(rng, shapes):
    pairs = [(i, side) for i in _unique(shapes) for side in SIDES]
    rng.shuffle(pairs)
    for i, side in pairs:
        ref = shapes[i]
        members = _beyond(shapes, ref, side)
        if members is None:
            continue
        color = rng.choice(list(dict.fromkeys(s["color"] for s in shapes)))
        value = _count(members, color)
        others = [s for s in shapes if s is not ref and s not in members]
        options = number_options(rng, value, [len(members), _count(others, color), _count(shapes, color)])
        recipe = {"name": "relative_filtered", "ref": i, "side": side, "color": color}
        question = f"How many {color} shapes are {SIDES[side][2]} the {_name(ref)}? Compare the shapes' centres."
        return recipe, options, question
    return None


_COMPOSE = {
    "count_difference": _compose_difference,
    "count_union": _compose_union,
    "relative_filtered": _compose_relative,
}


def compose(rng: random.Random, meta: dict) -> tuple[dict, list[str], str] | None:
    """A harder question about ``meta``'s scene merging two or more of its facts."""
    names = list(_COMPOSE)
    rng.shuffle(names)
    for name in names:
        made = _COMPOSE[name](rng, meta["program"]["shapes"])
        if made:
            return made
    return None


# ---- solutions


def _inventory(shapes: list[dict]) -> list[str]:
    ordered = sorted(shapes, key=lambda s: (s["x"], s["y"]))
    return [f"{len(shapes)} separate shapes are drawn; listed left to right with centre (x, y) in pixels:"] + [
        f"{_name(s)} at {_at(s)}" for s in ordered
    ]


def _tally(shapes: list[dict], color: str | None, kind: str | None) -> tuple[list[str], int]:
    hits = [s for s in shapes if _matches(s, color, kind)]
    steps = [
        f"{_class_name(color, kind)}: "
        + (", ".join(f"{_name(s)} at {_at(s)}" for s in hits) or "none")
        + f" -> {len(hits)}"
    ]
    return steps, len(hits)


def _solve_count(meta):
    shapes, q = meta["program"]["shapes"], meta["query"]
    cls = _class_name(q["color"], q["shape"])
    steps, n = _tally(shapes, q["color"], q["shape"])
    return {
        "facts": _inventory(shapes),
        "setup": f"Count the {cls}: go through every shape once and keep those that match.",
        "steps": steps + [f"Total number of {cls}: {n}."],
        "check": f"The other {len(shapes) - n} shapes do not match, and {n} + {len(shapes) - n} = "
        f"{len(shapes)} accounts for every shape in the picture.",
        "answer": str(n),
    }


def _solve_extreme(meta):
    shapes, side = meta["program"]["shapes"], meta["query"]["side"]
    axis, sign, wording = EXTREMES[side]
    order = _ordered(shapes, side)
    first, second = order[:2]
    letter = letter_of(meta["options"], _name(first))
    return {
        "facts": _inventory(shapes),
        "setup": f"The shape {wording} is the one with the {'smallest' if sign > 0 else 'largest'} "
        f"{axis}-coordinate of its centre; compare the centres and match it to an option.",
        "steps": [
            f"{axis}-coordinates from the {side}: " + ", ".join(f"{_name(s)} {s[axis]}" for s in order) + ".",
            f"The {_name(first)} ({axis} = {first[axis]}) comes first; the runner-up is the "
            f"{_name(second)} ({axis} = {second[axis]}).",
            f"'{_name(first)}' is option {letter}.",
        ],
        "check": f"The margin of {abs(first[axis] - second[axis])} px over the runner-up is clear, so the "
        f"{_name(first)} is {wording}.",
        "answer": letter,
    }


def _relative_steps(
    shapes: list[dict], ref: dict, side: str, color: str | None = None
) -> tuple[list[str], list[dict]]:
    axis, sign, wording = SIDES[side]
    members = _beyond(shapes, ref, side)
    hits = [s for s in members if color is None or s["color"] == color]
    steps = [
        f"{_name(s)} at {axis} = {s[axis]}: {'on that side' if s in members else 'not on that side'}"
        + (f", {'counts' if s in hits else 'not ' + color}" if color and s in members else "")
        for s in shapes
        if s is not ref
    ]
    return steps + [f"Count: {len(hits)}."], hits


def _solve_relative(meta):
    shapes, q = meta["program"]["shapes"], meta["query"]
    ref, (axis, sign, wording) = shapes[q["ref"]], SIDES[q["side"]]
    steps, hits = _relative_steps(shapes, ref, q["side"])
    n_other = len(shapes) - 1
    return {
        "facts": _inventory(shapes),
        "setup": f"The {_name(ref)} is centred at {_at(ref)}. Count the shapes {wording} it, i.e. whose "
        f"centre has {axis} {'<' if sign < 0 else '>'} {ref[axis]}.",
        "steps": steps,
        "check": f"{len(hits)} shapes on that side and {n_other - len(hits)} on the other make up the "
        f"{n_other} shapes besides the {_name(ref)}; none is level with it.",
        "answer": str(len(hits)),
    }


def _solve_nearest(meta):
    shapes = meta["program"]["shapes"]
    ref = shapes[meta["query"]["ref"]]
    ranked = _distances(shapes, ref)
    near = _nearest(shapes, ref)
    letter = letter_of(meta["options"], _name(near))
    return {
        "facts": _inventory(shapes),
        "setup": f"Measure the distance from the {_name(ref)} at {_at(ref)} to every other shape "
        f"(centre to centre) and take the smallest.",
        "steps": [f"{_name(s)}: {d:.0f} px" for d, _, s in ranked]
        + [f"The nearest is the {_name(near)}; '{_name(near)}' is option {letter}."],
        "check": f"The runner-up is {ranked[1][0] - ranked[0][0]:.0f} px farther, and edge to edge the "
        f"{_name(near)} is also nearest, so the answer does not depend on shape sizes.",
        "answer": letter,
    }


def _solve_difference(meta):
    shapes, r = meta["program"]["shapes"], meta["recipe"]
    a, b = (r["more"]["color"], r["more"]["shape"]), (r["fewer"]["color"], r["fewer"]["shape"])
    steps_a, ca = _tally(shapes, *a)
    steps_b, cb = _tally(shapes, *b)
    value = ca - cb
    letter = letter_of(meta["options"], str(value))
    return {
        "facts": _inventory(shapes),
        "setup": f"Count the {_class_name(*a)} and the {_class_name(*b)} separately, then subtract.",
        "steps": steps_a + steps_b + [f"{ca} - {cb} = {value}, which is option {letter}."],
        "check": f"Adding back: {cb} + {value} = {ca} {_class_name(*a)}.",
        "answer": letter,
    }


def _solve_union(meta):
    shapes, r = meta["program"]["shapes"], meta["recipe"]
    color, kind = r["color"], r["shape"]
    s1, cc = _tally(shapes, color, None)
    s2, ck = _tally(shapes, None, kind)
    s3, both = _tally(shapes, color, kind)
    value = cc + ck - both
    letter = letter_of(meta["options"], str(value))
    return {
        "facts": _inventory(shapes),
        "setup": f"Use inclusion-exclusion: |{color} or {kind}| = |{color}| + |{kind}s| - |{color} {kind}s|, "
        "so shapes that are both are not counted twice.",
        "steps": s1 + s2 + s3 + [f"{cc} + {ck} - {both} = {value}, which is option {letter}."],
        "check": f"Directly: {sum(s['color'] == color or s['shape'] == kind for s in shapes)} shapes are "
        f"{color} or {kind}s, matching {value}.",
        "answer": letter,
    }


def _solve_relative_filtered(meta):
    shapes, r = meta["program"]["shapes"], meta["recipe"]
    ref, (axis, sign, wording) = shapes[r["ref"]], SIDES[r["side"]]
    steps, hits = _relative_steps(shapes, ref, r["side"], r["color"])
    letter = letter_of(meta["options"], str(len(hits)))
    return {
        "facts": _inventory(shapes),
        "setup": f"The {_name(ref)} is centred at {_at(ref)}. Keep the shapes {wording} it (centre {axis} "
        f"{'<' if sign < 0 else '>'} {ref[axis]}), then count the {r['color']} ones among them.",
        "steps": steps + [f"{len(hits)} is option {letter}."],
        "check": f"Of the {_count(shapes, r['color'])} {r['color']} shapes in the picture, {len(hits)} "
        f"lie on that side; none is level with the {_name(ref)}.",
        "answer": letter,
    }


_SOLVE = {
    "count": _solve_count,
    "extreme": _solve_extreme,
    "relative": _solve_relative,
    "nearest": _solve_nearest,
    "count_difference": _solve_difference,
    "count_union": _solve_union,
    "relative_filtered": _solve_relative_filtered,
}


def solve(meta: dict) -> dict:
    """The worked solution of a simple or composed counting question."""
    return _SOLVE[meta["kind"]](meta)


def describe(program: dict) -> dict:
    """A structured caption of a shape scene."""
    shapes = program["shapes"]
    by_x = sorted(shapes, key=lambda s: s["x"])
    by_y = sorted(shapes, key=lambda s: s["y"])
    colors = {c: _count(shapes, c) for c in dict.fromkeys(s["color"] for s in shapes)}
    kinds = {k: _count(shapes, None, k) for k in dict.fromkeys(s["shape"] for s in shapes)}
    close = [
        f"The {_name(a)} and the {_name(b)} are almost level ({axis} = {a[axis]} and {b[axis]}), so their "
        f"{'left-right' if axis == 'x' else 'up-down'} order is hard to judge."
        for axis, order in (("x", by_x), ("y", by_y))
        for a, b in zip(order, order[1:])
        if b[axis] - a[axis] < TIE
    ]
    return {
        "category": "abstract shapes",
        "summary": f"{plural(len(shapes), 'coloured shape')} (circles, squares and triangles) scattered on a "
        f"{program['background']} {program['width']}x{program['height']} background, none overlapping.",
        "components": [f"{_name(s)} centred at {_at(s)}, about {2 * s['r']} px across" for s in shapes],
        "interactions": [
            "From left to right: " + ", ".join(_name(s) for s in by_x) + ".",
            "From top to bottom: " + ", ".join(_name(s) for s in by_y) + ".",
        ],
        "implicit": [
            f"{len(shapes)} shapes in total.",
            "By colour: " + ", ".join(f"{n} {c}" for c, n in colors.items()) + ".",
            "By shape: " + ", ".join(plural(n, k) for k, n in kinds.items()) + ".",
        ],
        "ambiguities": close or ["None: the shapes are separated and the colours are distinct."],
    }
