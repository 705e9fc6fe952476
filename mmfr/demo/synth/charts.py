"""Charts: bar and line charts of integer values with axes, gridlines, ticks and labels drawn.

Program: ``{"width", "height", "chart" ("bar"|"line"), "title", "x_name", "categories", "values",
"tick_step", "y_max", "value_labels", "color", "font", "plot": [x0, y0, x1, y1], "ticks": [[value, y]],
"marks": [[x, y]] (top centre of each bar or each line point), "bar_width", "label_at": [[x, y]]
(centres of the printed values; empty without value labels)}``. Without value labels every value is a
multiple of the tick step, so it ends exactly on a gridline and reads exactly.
"""

from __future__ import annotations

import random

from PIL import Image

from mmfr.demo.synth.draw import COLORS, GRID, INK, canvas, canvas_size, font_size, label, text_width
from mmfr.options import letter_of, lettered, number_options, plural

KINDS = ("read", "extreme", "diff", "sum")
ANSWER_TYPES = {"read": "number", "extreme": "choice", "diff": "number", "sum": "number"}
DOMAIN = "math"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
THEMES = {
    "bar": (
        ("Fruit sold (kg)", "fruit", ("Apple", "Pear", "Plum", "Kiwi", "Mango", "Lime", "Fig", "Peach")),
        ("Books read", "student", ("Ana", "Ben", "Cleo", "Dev", "Eli", "Finn", "Gus", "Hana")),
        ("Animals at the shelter", "animal", ("Cats", "Dogs", "Fish", "Birds", "Mice", "Frogs", "Hens")),
        ("Goals scored", "team", ("Lions", "Bears", "Owls", "Foxes", "Hawks", "Wolves", "Crows")),
    ),
    "line": (
        ("Rainfall (mm)", "month", MONTHS),
        ("Visitors per day", "day", DAYS),
        ("Trees planted", "year", tuple(str(y) for y in range(2005, 2025))),
    ),
}
TICK_STEPS = (1, 2, 5, 10, 20, 25, 50)


def _series(rng: random.Random, chart: str, pool: tuple[str, ...], n: int) -> list[str]:
    """Bar charts pick any categories; line charts a consecutive run (months, days, years)."""
    if chart == "bar":
        return rng.sample(pool, n)
    start = rng.randint(0, len(pool) - n)
    return list(pool[start : start + n])


def _crosses(box: tuple[float, float, float, float], a: list[int], b: list[int]) -> bool:
    """Whether segment a-b meets the axis-aligned ``box`` (Liang-Barsky clipping)."""
    (ax, ay), dx, dy = a, b[0] - a[0], b[1] - a[1]
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, ax - box[0]), (dx, box[2] - ax), (-dy, ay - box[1]), (dy, box[3] - ay)):
        if p == 0:
            if q < 0:
                return False
        elif p < 0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
        if t0 > t1:
            return False
    return True


def _label_spots(
    chart: str, marks: list[list[int]], values: list[int], fs: int, area: tuple[float, float, float, float]
) -> list[list[int]]:
    """Where each value is printed: above a bar; next to a line point, away from the line and other labels."""
    if chart == "bar":
        return [[x, round(y - 0.9 * fs)] for x, y in marks]
    segments, placed, spots = list(zip(marks, marks[1:])), [], []
    for (x, y), value in zip(marks, values):
        half_w, half_h = text_width(str(value), fs) / 2 + 4, fs / 2 + 3
        for dx, dy in ((0, -0.9), (0, 0.9), (1, -0.6), (-1, -0.6), (1, 0.6), (-1, 0.6)):
            cx, cy = x + dx * (half_w + 4), y + dy * fs
            box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
            inside = area[0] <= box[0] and area[1] <= box[1] and box[2] <= area[2] and box[3] <= area[3]
            if (
                inside
                and not any(_crosses(box, a, b) for a, b in segments)
                and not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in placed)
            ):
                break
        else:
            cx, cy, box = x, y - 0.9 * fs, (x - half_w, y - 0.9 * fs - half_h, x + half_w, y - 0.9 * fs + half_h)
        placed.append(box)
        spots.append([round(cx), round(cy)])
    return spots


def _scene(rng: random.Random) -> dict | None:
    """A chart with its full layout, or None when the drawn canvas cannot fit four categories."""
    width, height = canvas_size(rng, aspect=(0.6, 0.9), landscape=True)
    fs = font_size(width, height, 24)
    chart = rng.choice(list(THEMES))
    title, x_name, pool = rng.choice(THEMES[chart])
    step, n_ticks = rng.choice(TICK_STEPS), rng.randint(4, 8)
    y_max = step * n_ticks
    value_labels = rng.random() < 0.5
    x0, x1 = round(text_width(str(y_max), fs)) + 14, width - 14
    y0, y1 = round(fs * (3.4 if value_labels else 2.6)), height - round(fs * 2)
    slot_min = max(text_width(c, fs) for c in pool) + 8
    n_max = min(8, len(pool), int((x1 - x0) // slot_min))
    if n_max < 4:
        return None
    categories = _series(rng, chart, pool, rng.randint(4, n_max))
    if value_labels:
        values = [rng.randint(1, y_max) for _ in categories]
    else:
        values = [step * rng.randint(1, n_ticks) for _ in categories]
    slot = (x1 - x0) / len(categories)
    marks = [[round(x0 + slot * (i + 0.5)), round(y1 - v * (y1 - y0) / y_max)] for i, v in enumerate(values)]
    ticks = [[k * step, round(y1 - k * (y1 - y0) / n_ticks)] for k in range(n_ticks + 1)]
    label_at = _label_spots(chart, marks, values, fs, (x0, 2 * fs, width, y1)) if value_labels else []
    return {
        "width": width,
        "height": height,
        "chart": chart,
        "title": title,
        "x_name": x_name,
        "categories": categories,
        "values": values,
        "tick_step": step,
        "y_max": y_max,
        "value_labels": value_labels,
        "color": rng.choice(list(COLORS)),
        "font": fs,
        "plot": [x0, y0, x1, y1],
        "ticks": ticks,
        "marks": marks,
        "bar_width": round(0.6 * slot),
        "label_at": label_at,
    }


def render(program: dict) -> Image.Image:
    p = program
    image, draw = canvas(p["width"], p["height"])
    fs, (x0, y0, x1, y1), color = p["font"], p["plot"], COLORS[p["color"]]
    label(draw, (p["width"] / 2, fs * 1.1), p["title"], fs + 1)
    for value, y in p["ticks"]:
        draw.line((x0, y, x1, y), fill=GRID, width=1)
        draw.line((x0 - 4, y, x0, y), fill=INK, width=1)
        label(draw, (x0 - 7, y), str(value), fs, anchor="rm")
    if p["chart"] == "bar":
        half = p["bar_width"] / 2
        for x, y in p["marks"]:
            draw.rectangle((x - half, y, x + half, y1), fill=color, outline=INK, width=1)
    else:
        draw.line([tuple(m) for m in p["marks"]], fill=color, width=3)
        for x, y in p["marks"]:
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=color, outline=INK)
    draw.line((x0, y0 - fs // 2, x0, y1), fill=INK, width=2)
    draw.line((x0, y1, x1, y1), fill=INK, width=2)
    for (x, _), category in zip(p["marks"], p["categories"]):
        label(draw, (x, y1 + fs), category, fs)
    for xy, value in zip(p["label_at"], p["values"]):
        label(draw, xy, str(value), fs)
    return image


def _where(p: dict) -> str:
    return f'In the {p["chart"]} chart "{p["title"]}"'


def _ask(rng: random.Random, kind: str, p: dict) -> tuple[dict, list[str] | None, str] | None:
    cats, vals = p["categories"], p["values"]
    if kind == "read":
        c = rng.choice(cats)
        return {"category": c}, None, f"{_where(p)}, what value is shown for {c}?"
    if kind == "extreme":
        which = rng.choice(("largest", "smallest"))
        best = (max if which == "largest" else min)(vals)
        if vals.count(best) > 1:
            return None
        answer = cats[vals.index(best)]
        others = sorted((c for c in cats if c != answer), key=lambda c: abs(vals[cats.index(c)] - best))
        options = lettered(rng, answer, others)
        return {"which": which}, options, f"{_where(p)}, which {p['x_name']} has the {which} value?"
    a, b = rng.sample(cats, 2)
    if kind == "diff":
        if vals[cats.index(a)] == vals[cats.index(b)]:
            return None
        a, b = sorted((a, b), key=lambda c: -vals[cats.index(c)])
        return {"a": a, "b": b}, None, f"{_where(p)}, how much greater is the value for {a} than the value for {b}?"
    return {"a": a, "b": b}, None, f"{_where(p)}, what is the sum of the values for {a} and {b}?"


def sample(rng: random.Random, kind: str) -> tuple[dict, str]:
    """A chart and a question of ``kind`` with a unique answer."""
    while True:
        program = _scene(rng)
        asked = program and _ask(rng, kind, program)
        if asked:
            query, options, question = asked
            meta = {"program": program, "query": query}
            if options:
                meta["options"] = options
            return meta, question


# ---- composed questions


def _compose_top2(rng, p):
    vals = sorted(p["values"], reverse=True)
    value = vals[0] + vals[1]
    options = number_options(
        rng, value, [2 * vals[0], vals[0] + vals[-1], vals[0] + vals[2], vals[1] + vals[2]], step=p["tick_step"]
    )
    return {"name": "sum_top2"}, options, f"{_where(p)}, what is the sum of the two largest values?"


def _compose_range(rng, p):
    hi, lo = max(p["values"]), min(p["values"])
    second = sorted(p["values"], reverse=True)[1]
    options = number_options(rng, hi - lo, [hi, lo, hi + lo, hi - second], step=p["tick_step"])
    return (
        {"name": "range"},
        options,
        f"{_where(p)}, what is the difference between the largest and the smallest value?",
    )


def _compose_above(rng, p):
    cats, vals = p["categories"], p["values"]
    candidates = [c for c, v in zip(cats, vals) if v != max(vals)]
    if not candidates:
        return None
    c = rng.choice(candidates)
    v = vals[cats.index(c)]
    above = sum(x > v for x in vals)
    not_below = sum(x >= v for x in vals)
    below = sum(x < v for x in vals)
    options = number_options(rng, above, [not_below, below, len(vals) - above])
    question = f"{_where(p)}, how many {p['x_name']}s have a greater value than {c}?"
    return {"name": "count_above", "category": c}, options, question


_COMPOSE = {"sum_top2": _compose_top2, "range": _compose_range, "count_above": _compose_above}


def compose(rng: random.Random, meta: dict) -> tuple[dict, list[str], str] | None:
    """A harder question about ``meta``'s chart merging two or more of its values."""
    names = list(_COMPOSE)
    rng.shuffle(names)
    for name in names:
        made = _COMPOSE[name](rng, meta["program"])
        if made:
            return made
    return None


# ---- solutions


def _mark(p: dict) -> str:
    return "bar" if p["chart"] == "bar" else "point"


def _reading(p: dict, c: str) -> str:
    v = p["values"][p["categories"].index(c)]
    mark = _mark(p)
    if p["value_labels"]:
        return f"{c}: the value printed at its {mark} reads {v}"
    return f"{c}: its {mark} reaches the gridline at {v} ({v // p['tick_step']} steps of {p['tick_step']})"


def _facts(p: dict, cats: list[str]) -> list[str]:
    return [
        f'A {p["chart"]} chart titled "{p["title"]}"; the y-axis runs from 0 to {p["y_max"]} with '
        f'gridlines every {p["tick_step"]}, and the x-axis lists {", ".join(p["categories"])}.'
    ] + [_reading(p, c) for c in cats]


def _check_readings(p: dict) -> str:
    if p["value_labels"]:
        return "each value matches the label printed on the chart"
    return f"each value is a whole number of gridline steps, consistent with where each {_mark(p)} ends"


def _value(p: dict, c: str) -> int:
    return p["values"][p["categories"].index(c)]


def _solve_read(meta):
    p, c = meta["program"], meta["query"]["category"]
    v = _value(p, c)
    return {
        "facts": _facts(p, [c]),
        "setup": f"Find {c} on the x-axis and read the height of its {_mark(p)} on the y-axis.",
        "steps": [f"The value for {c} is {v}."],
        "check": f"{v} lies between 0 and {p['y_max']} and {_check_readings(p)}.",
        "answer": str(v),
    }


def _solve_extreme(meta):
    p, which = meta["program"], meta["query"]["which"]
    cats, vals = p["categories"], p["values"]
    best = (max if which == "largest" else min)(vals)
    answer = cats[vals.index(best)]
    letter = letter_of(meta["options"], answer)
    ranked = sorted(zip(cats, vals), key=lambda cv: -cv[1] if which == "largest" else cv[1])
    return {
        "facts": _facts(p, cats),
        "setup": f"Compare all {len(cats)} values and pick the {which}; then match it to an option.",
        "steps": [
            "Ordered: " + ", ".join(f"{c} {v}" for c, v in ranked) + ".",
            f"The {which} is {answer} with {best}; '{answer}' is option {letter}.",
        ],
        "check": f"No other {p['x_name']} ties with {best} (the runner-up is {ranked[1][0]} with {ranked[1][1]}).",
        "answer": letter,
    }


def _solve_pair(meta):
    p, q = meta["program"], meta["query"]
    a, b = q["a"], q["b"]
    va, vb = _value(p, a), _value(p, b)
    if meta["kind"] == "diff":
        value, op, check = va - vb, "-", f"{vb} + {va - vb} = {va}"
        setup = f"Read the values for {a} and {b}, then subtract the smaller from the larger."
    else:
        value, op, check = va + vb, "+", f"{va + vb} - {vb} = {va}"
        setup = f"Read the values for {a} and {b}, then add them."
    return {
        "facts": _facts(p, [a, b]),
        "setup": setup,
        "steps": [f"{a} = {va}, {b} = {vb}.", f"{va} {op} {vb} = {value}."],
        "check": f"Reversing the operation: {check}; {_check_readings(p)}.",
        "answer": str(value),
    }


def _solve_top2(meta):
    p = meta["program"]
    ranked = sorted(zip(p["categories"], p["values"]), key=lambda cv: -cv[1])
    (c1, v1), (c2, v2) = ranked[:2]
    letter = letter_of(meta["options"], str(v1 + v2))
    return {
        "facts": _facts(p, p["categories"]),
        "setup": "Rank the values, take the two largest and add them.",
        "steps": [
            "Ordered: " + ", ".join(f"{c} {v}" for c, v in ranked) + ".",
            f"Two largest: {c1} ({v1}) and {c2} ({v2}).",
            f"{v1} + {v2} = {v1 + v2}, which is option {letter}.",
        ],
        "check": f"Every other value is at most {v2}, so no other pair has a larger sum.",
        "answer": letter,
    }


def _solve_range(meta):
    p = meta["program"]
    ranked = sorted(zip(p["categories"], p["values"]), key=lambda cv: -cv[1])
    (ch, hi), (cl, lo) = ranked[0], ranked[-1]
    letter = letter_of(meta["options"], str(hi - lo))
    return {
        "facts": _facts(p, p["categories"]),
        "setup": "Find the largest and the smallest value and subtract.",
        "steps": [
            "Ordered: " + ", ".join(f"{c} {v}" for c, v in ranked) + ".",
            f"Largest: {ch} ({hi}); smallest: {cl} ({lo}).",
            f"{hi} - {lo} = {hi - lo}, which is option {letter}.",
        ],
        "check": f"{lo} + {hi - lo} = {hi}, and every value lies between {lo} and {hi}.",
        "answer": letter,
    }


def _solve_above(meta):
    p, c = meta["program"], meta["recipe"]["category"]
    v = _value(p, c)
    above = [(x, w) for x, w in zip(p["categories"], p["values"]) if w > v]
    letter = letter_of(meta["options"], str(len(above)))
    return {
        "facts": _facts(p, p["categories"]),
        "setup": f"Read the value for {c}, then count the {p['x_name']}s whose value is strictly greater.",
        "steps": [
            f"{c} = {v}.",
            "Greater: " + (", ".join(f"{x} ({w})" for x, w in above) or "none") + ".",
            f"Count: {len(above)}, which is option {letter}.",
        ],
        "check": f"The other {plural(len(p['values']) - len(above), 'value')} (including {c} itself) are at most {v}.",
        "answer": letter,
    }


_SOLVE = {
    "read": _solve_read,
    "extreme": _solve_extreme,
    "diff": _solve_pair,
    "sum": _solve_pair,
    "sum_top2": _solve_top2,
    "range": _solve_range,
    "count_above": _solve_above,
}


def solve(meta: dict) -> dict:
    """The worked solution of a simple or composed chart question."""
    return _SOLVE[meta["kind"]](meta)


def describe(program: dict) -> dict:
    """A structured caption of a chart."""
    p = program
    cats, vals = p["categories"], p["values"]
    mark = _mark(p)
    ranked = sorted(zip(cats, vals), key=lambda cv: -cv[1])
    trends = [
        f"{'rises' if b > a else 'falls' if b < a else 'stays level'} from {c} ({a}) to {d} ({b})"
        for (c, a), (d, b) in zip(zip(cats, vals), zip(cats[1:], vals[1:]))
    ]
    return {
        "category": f"{p['chart']} chart",
        "summary": f'A {p["chart"]} chart titled "{p["title"]}" showing one {p["color"]} {mark} for each of '
        f"{plural(len(cats), p['x_name'])} against a y-axis from 0 to {p['y_max']}.",
        "components": [
            f'Title "{p["title"]}" at the top centre.',
            f"Y-axis on the left with tick labels "
            + ", ".join(str(t) for t, _ in p["ticks"])
            + " and light gridlines.",
            "X-axis labels from left to right: " + ", ".join(cats) + ".",
        ]
        + [f"{mark} for {c} at {tuple(xy)} with value {v}" for c, v, xy in zip(cats, vals, p["marks"])]
        + ([f"value labels printed next to each {mark}"] if p["value_labels"] else []),
        "interactions": [f"Highest: {ranked[0][0]} ({ranked[0][1]}); lowest: {ranked[-1][0]} ({ranked[-1][1]})."]
        + ([f"The line {t}." for t in trends] if p["chart"] == "line" else []),
        "implicit": [
            f"Total of all values: {sum(vals)}.",
            f"Range: {ranked[0][1] - ranked[-1][1]}.",
            f"Order from largest to smallest: {', '.join(c for c, _ in ranked)}.",
        ],
        "ambiguities": (
            [f"None: every value is printed next to its {mark}."]
            if p["value_labels"]
            else [f"Values are read against gridlines every {p['tick_step']}; every {mark} ends exactly on one."]
        ),
    }
