"""Puzzles: number grids with a row/column rule and one '?' cell; panel sequences that change by a rule.

Grid program: ``{"width", "height", "font", "puzzle": "grid", "rows", "cols", "cells" (None at the '?'),
"missing": [row, col], "origin": [x, y], "cell_size", "rule": {"name", "axis"}}``. The rule is the
only one of ``RULES`` (along rows or columns) that fits every complete line, so the answer is unique.

Sequence program: ``{"width", "height", "font", "puzzle": "sequence", "rule": {...}, "panels":
[{"box": [x0, y0, x1, y1], "content": {...}}]}``; the last panel is the '?'.
"""

from __future__ import annotations

import math
import random

from PIL import Image

from mmfr.demo.synth.draw import COLORS, HIGHLIGHT, INK, arrow, canvas, canvas_size, font_size, label, polygon_points, shape
from mmfr.options import letter_of, lettered, number_options, plural

KINDS = ("grid", "sequence")
ANSWER_TYPES = {"grid": "number", "sequence": "choice"}
DOMAIN = "puzzle"
RULES = ("sum", "difference", "product", "arithmetic", "constant_total")
THREE_ONLY = ("sum", "difference", "product")  # rules relating the first two numbers to the third
RULE_TEXT = {
    "sum": "the last number is the sum of the first two",
    "difference": "the last number is the first minus the second",
    "product": "the last number is the product of the first two",
    "arithmetic": "consecutive numbers differ by the same step",
    "constant_total": "the numbers add up to the same total",
}
POLYGONS = {
    3: "triangle",
    4: "square",
    5: "pentagon",
    6: "hexagon",
    7: "heptagon",
    8: "octagon",
    9: "nonagon",
    10: "decagon",
}
DIRECTIONS = {
    0: "up",
    45: "up-right",
    90: "right",
    135: "down-right",
    180: "down",
    225: "down-left",
    270: "left",
    315: "up-left",
}
SHAPES = ("circle", "square", "triangle")


# ---- number grids


def _fits(rule: str, line: list[int], total: int) -> bool:
    if rule in THREE_ONLY and len(line) != 3:
        return False
    if rule == "sum":
        return line[2] == line[0] + line[1]
    if rule == "difference":
        return line[2] == line[0] - line[1]
    if rule == "product":
        return line[2] == line[0] * line[1]
    if rule == "arithmetic":
        return len({b - a for a, b in zip(line, line[1:])}) == 1
    return sum(line) == total


def _predict(rule: str, line: list[int | None], total: int) -> int | None:
    """The value that makes ``line`` (one None) follow ``rule``, or None if no integer does."""
    pos = line.index(None)
    known = [(i, v) for i, v in enumerate(line) if v is not None]
    if rule == "constant_total":
        value = total - sum(v for _, v in known)
    elif rule == "arithmetic":
        (i, a), (j, b) = known[:2]
        if (b - a) % (j - i):
            return None
        value = a + (pos - i) * (b - a) // (j - i)
    elif rule in THREE_ONLY and len(line) == 3:
        x, y, z = line
        value = {
            ("sum", 2): lambda: x + y,
            ("sum", 0): lambda: z - y,
            ("sum", 1): lambda: z - x,
            ("difference", 2): lambda: x - y,
            ("difference", 0): lambda: z + y,
            ("difference", 1): lambda: x - z,
            ("product", 2): lambda: x * y,
            ("product", 0): lambda: z // y if y and z % y == 0 else None,
            ("product", 1): lambda: z // x if x and z % x == 0 else None,
        }[rule, pos]()
    else:
        return None
    if value is None:
        return None
    filled = [value if v is None else v for v in line]
    return value if _fits(rule, filled, total) else None


def _lines(cells: list[list], axis: str) -> list[list]:
    return [list(r) for r in cells] if axis == "row" else [list(c) for c in zip(*cells)]


def _line_of_missing(cells: list[list], missing: list[int], axis: str) -> tuple[list, list[list]]:
    """(the line holding '?', the complete lines) along ``axis``."""
    lines = _lines(cells, axis)
    k = missing[0] if axis == "row" else missing[1]
    return lines[k], [l for i, l in enumerate(lines) if i != k]


def _predictions(cells: list[list], missing: list[int]) -> set[int]:
    """Every answer some rule of RULES, along rows or columns, would give."""
    out = set()
    for axis in ("row", "col"):
        line, complete = _line_of_missing(cells, missing, axis)
        total = sum(complete[0])
        for rule in RULES:
            if all(_fits(rule, l, total) for l in complete):
                value = _predict(rule, line, total)
                if value is not None:
                    out.add(value)
    return out


def _rule_line(rng: random.Random, rule: str, length: int, total: int) -> list[int]:
    if rule == "sum":
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        return [a, b, a + b]
    if rule == "difference":
        a = rng.randint(5, 30)
        b = rng.randint(1, a - 1)
        return [a, b, a - b]
    if rule == "product":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return [a, b, a * b]
    if rule == "arithmetic":
        while True:
            a, d = rng.randint(1, 20), rng.choice([-4, -3, -2, 2, 3, 4, 5, 6])
            if a + (length - 1) * d >= 0:
                return [a + i * d for i in range(length)]
    cuts = sorted(rng.sample(range(1, total), length - 1))
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def _grid(rng: random.Random) -> dict:
    while True:
        rule, axis = rng.choice(RULES), rng.choice(("row", "col"))
        length = 3 if rule in THREE_ONLY else rng.choice((3, 4))
        total = rng.randint(12, 40)
        lines = [_rule_line(rng, rule, length, total) for _ in range(3)]
        full = lines if axis == "row" else [list(c) for c in zip(*lines)]
        missing = [rng.randrange(len(full)), rng.randrange(len(full[0]))]
        answer = full[missing[0]][missing[1]]
        cells = [[None if [r, c] == missing else v for c, v in enumerate(row)] for r, row in enumerate(full)]
        if _predictions(cells, missing) == {answer}:
            break
    rows, cols = len(cells), len(cells[0])
    width, height = canvas_size(rng, aspect=(0.75, 1.0), landscape=cols > rows)
    size = min((width - 24) // cols, (height - 24) // rows)
    origin = [(width - size * cols) // 2, (height - size * rows) // 2]
    return {
        "width": width,
        "height": height,
        "font": max(11, min(48, round(size * 0.36))),
        "puzzle": "grid",
        "rows": rows,
        "cols": cols,
        "cells": cells,
        "missing": missing,
        "origin": origin,
        "cell_size": size,
        "rule": {"name": rule, "axis": axis},
    }


# ---- panel sequences


def _content(rule: dict, t: int) -> dict:
    """What panel ``t`` (0-based) shows under ``rule``."""
    name = rule["name"]
    if name == "count":
        return {"count": rule["start"] + t * rule["step"]}
    if name == "sides":
        return {"sides": rule["start"] + t}
    if name == "rotate":
        return {"direction": (rule["start"] + t * rule["step"]) % 360}
    return {"color": rule["cycle"][t % len(rule["cycle"])]}


def _describe_content(rule: dict, content: dict) -> str:
    """The option text for a panel's content: '5 circles', 'pentagon', 'arrow pointing left'."""
    if "count" in content:
        return plural(content["count"], rule["shape"])
    if "sides" in content:
        return POLYGONS[content["sides"]]
    if "direction" in content:
        return f"arrow pointing {DIRECTIONS[content['direction']]}"
    return f"{content['color']} {rule['shape']}"


def _sequence_rule(rng: random.Random) -> tuple[dict, int]:
    name = rng.choice(("count", "sides", "rotate", "color"))
    shown = rng.randint(3, 4)
    if name == "count":
        step = rng.randint(1, 2)
        rule = {
            "name": name,
            "shape": rng.choice(SHAPES),
            "color": rng.choice(list(COLORS)),
            "start": rng.randint(1, 9 - shown * step),
            "step": step,
        }
    elif name == "sides":
        rule = {"name": name, "color": rng.choice(list(COLORS)), "start": rng.randint(3, 8 - shown)}
    elif name == "rotate":
        rule = {"name": name, "start": rng.randrange(0, 360, 45), "step": rng.choice((45, 90, -45, -90))}
    else:
        period = rng.choice((2, 3))
        shown = 2 * period if period == 2 else 5
        rule = {"name": name, "shape": rng.choice(SHAPES), "cycle": rng.sample(list(COLORS), period)}
    return rule, shown


def _sequence(rng: random.Random) -> dict:
    rule, shown = _sequence_rule(rng)
    n = shown + 1
    width = rng.randint(360, 640)
    fs = font_size(width, width, 30)
    gap, margin = rng.randint(6, 16), rng.randint(6, 14)
    size = (width - 2 * margin - (n - 1) * gap) // n
    height = size + 2 * margin + round(1.8 * fs)
    panels = []
    for t in range(n):
        x0 = margin + t * (size + gap)
        box = [x0, margin, x0 + size, margin + size]
        content = _content(rule, t) if t < shown else {}
        if "count" in content:
            k = content["count"]
            cols = math.ceil(math.sqrt(k))
            cell = 0.84 * size / cols
            top = margin + (size - cell * math.ceil(k / cols)) / 2
            content["items"] = [
                [
                    round(x0 + 0.08 * size + cell * (i % cols + 0.5)),
                    round(top + cell * (i // cols + 0.5)),
                    round(0.42 * cell),
                ]
                for i in range(k)
            ]
        panels.append({"box": box, "content": content})
    return {
        "width": width,
        "height": height,
        "font": fs,
        "puzzle": "sequence",
        "rule": rule,
        "shown": shown,
        "panels": panels,
    }


def _sequence_options(rng: random.Random, rule: dict, t: int) -> tuple[str, list[str]]:
    """(correct text, plausible wrong texts) for panel ``t`` (0-based)."""
    name, correct = rule["name"], _content(rule, t)
    if name == "count":
        v, s = correct["count"], rule["step"]
        wrong = [{"count": c} for c in (v - s, v + s, v + 1, v - 1, v + 2 * s) if c > 0]
    elif name == "sides":
        v = correct["sides"]
        wrong = [{"sides": c} for c in (v - 1, v + 1, v + 2, v - 2) if c in POLYGONS]
    elif name == "rotate":
        v, s = correct["direction"], rule["step"]
        wrong = [{"direction": (v + d) % 360} for d in (-s, s, 180, -2 * s, 90)]
    else:
        wrong = [{"color": c} for c in rule["cycle"] + rng.sample(list(COLORS), len(COLORS))]
    return _describe_content(rule, correct), [_describe_content(rule, w) for w in wrong]


def sample(rng: random.Random, kind: str) -> tuple[dict, str]:
    """A grid ('?' cell, number answer) or a panel sequence ('which comes next', choice answer)."""
    if kind == "grid":
        program = _grid(rng)
        what = "row" if program["rule"]["axis"] == "row" else "column"
        return (
            {"program": program, "query": {}},
            f"The numbers in every {what} of the grid follow the same rule. What number replaces the '?'?",
        )
    program = _sequence(rng)
    correct, wrong = _sequence_options(rng, program["rule"], program["shown"])
    options = lettered(rng, correct, wrong)
    return (
        {"program": program, "query": {}, "options": options},
        "The panels change from left to right according to a rule. What belongs in the panel marked '?'?",
    )


def render(program: dict) -> Image.Image:
    p = program
    image, draw = canvas(p["width"], p["height"])
    if p["puzzle"] == "grid":
        (ox, oy), size = p["origin"], p["cell_size"]
        for r, row in enumerate(p["cells"]):
            for c, value in enumerate(row):
                box = (ox + c * size, oy + r * size, ox + (c + 1) * size, oy + (r + 1) * size)
                draw.rectangle(box, fill=HIGHLIGHT if value is None else None, outline=INK, width=2)
                label(draw, (box[0] + size / 2, box[1] + size / 2), "?" if value is None else str(value), p["font"])
        return image
    rule = p["rule"]
    for t, panel in enumerate(p["panels"]):
        x0, y0, x1, y1 = panel["box"]
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 0.36 * (x1 - x0)
        draw.rectangle(panel["box"], outline=INK, width=2)
        label(draw, (cx, y1 + 0.9 * p["font"]), str(t + 1) if panel["content"] else "?", p["font"])
        content = panel["content"]
        if not content:
            label(draw, (cx, cy), "?", 2 * p["font"], COLORS["red"])
        elif "items" in content:
            for x, y, ir in content["items"]:
                shape(draw, rule["shape"], x, y, ir, COLORS[rule["color"]])
        elif "sides" in content:
            n = content["sides"]
            draw.polygon(
                polygon_points(cx, cy, r, n, -90 + (180 / n if n % 2 == 0 else 0)),
                fill=COLORS[rule["color"]],
                outline=INK,
                width=2,
            )
        elif "direction" in content:
            arrow(draw, cx, cy, r, content["direction"])
        else:
            shape(draw, rule["shape"], cx, cy, r, COLORS[content["color"]])
    return image


# ---- composed questions


def _completed(p: dict) -> tuple[list[list[int]], int]:
    """The grid with its '?' filled in, and the filled value."""
    r, c = p["missing"]
    axis = p["rule"]["axis"]
    line, complete = _line_of_missing(p["cells"], p["missing"], axis)
    value = _predict(p["rule"]["name"], line, sum(complete[0]))
    return [[value if [i, j] == [r, c] else v for j, v in enumerate(row)] for i, row in enumerate(p["cells"])], value


def compose(rng: random.Random, meta: dict) -> tuple[dict, list[str], str]:
    """A harder question that needs the puzzle's rule and one more step."""
    p = meta["program"]
    if p["puzzle"] == "grid":
        full, value = _completed(p)
        axis = p["rule"]["axis"]
        what = "row" if axis == "row" else "column"
        if rng.random() < 0.5:
            total = sum(_line_of_missing(full, p["missing"], axis)[0])
            options = number_options(rng, total, [total - value, value, 2 * total - value])
            return (
                {"name": "line_total"},
                options,
                f"After the '?' is filled in by the grid's rule, what is the sum of the {what} that contained it?",
            )
        total = sum(map(sum, full))
        options = number_options(rng, total, [total - value, total + value, value])
        return (
            {"name": "grid_total"},
            options,
            "After the '?' is filled in by the grid's rule, what is the sum of all numbers in the grid?",
        )
    rule, target = p["rule"], p["shown"] + 2
    correct, wrong = _sequence_options(rng, rule, target)
    if rule["name"] in ("count", "sides"):
        key = "count" if rule["name"] == "count" else "sides"
        value = _content(rule, target)[key]
        plausible = [_content(rule, t)[key] for t in (p["shown"], p["shown"] + 1, target + 1)]
        options = number_options(rng, value, plausible, minimum=1)
        question = (
            f"If the pattern continued, how many {rule['shape']}s would panel {target + 1} contain?"
            if key == "count"
            else f"If the pattern continued, how many sides would the polygon in panel {target + 1} have?"
        )
    else:
        options = lettered(rng, correct, wrong)
        question = (
            f"If the pattern continued, which way would the arrow in panel {target + 1} point?"
            if rule["name"] == "rotate"
            else f"If the pattern continued, what would the shape in panel {target + 1} be?"
        )
    return {"name": "extrapolate", "panel": target + 1}, options, question


# ---- solutions


def _grid_facts(p: dict) -> list[str]:
    return [
        f"A {p['rows']} x {p['cols']} grid of numbers; the '?' is in row {p['missing'][0] + 1}, "
        f"column {p['missing'][1] + 1}."
    ] + [f"Row {i + 1}: " + ", ".join("?" if v is None else str(v) for v in row) for i, row in enumerate(p["cells"])]


def _rule_steps(p: dict) -> tuple[str, list[str], int]:
    """(rule sentence, verification + computation steps, missing value) for a grid."""
    rule, axis = p["rule"]["name"], p["rule"]["axis"]
    what = "row" if axis == "row" else "column"
    line, complete = _line_of_missing(p["cells"], p["missing"], axis)
    total = sum(complete[0])
    value = _predict(rule, line, total)
    text = RULE_TEXT[rule] + (f" ({total})" if rule == "constant_total" else "")
    order = "left to right" if axis == "row" else "top to bottom"
    steps = [f"Complete {what} {', '.join(map(str, l))}: {text} - holds." for l in complete]
    shown = ", ".join("?" if v is None else str(v) for v in line)
    steps.append(f"The {what} with the '?' reads {shown}; applying the rule gives ? = {value}.")
    return f"In every {what}, read {order}, {text}.", steps, value


def _solve_grid(meta):
    p = meta["program"]
    sentence, steps, value = _rule_steps(p)
    what = "row" if p["rule"]["axis"] == "row" else "column"
    return {
        "facts": _grid_facts(p),
        "setup": f"Find a rule that every complete {what} obeys and apply it to the {what} with the '?'. "
        f"Rule: {sentence}",
        "steps": steps,
        "check": f"With {value} in place every {what} follows the rule, and no other simple rule (sum, difference, "
        "product, constant step, constant total) fits the complete lines with a different answer.",
        "answer": str(value),
    }


def _sequence_facts(p: dict) -> list[str]:
    rule = p["rule"]
    return [f"{p['shown']} panels are shown, then a panel marked '?'."] + [
        f"Panel {t + 1}: {_describe_content(rule, panel['content'])}" for t, panel in enumerate(p["panels"][:-1])
    ]


def _rule_sentence(rule: dict) -> str:
    name = rule["name"]
    if name == "count":
        return (
            f"each panel has {rule['step']} more {rule['shape']}{'s' if rule['step'] > 1 else ''} than the one before"
        )
    if name == "sides":
        return "each polygon has one more side than the one before"
    if name == "rotate":
        turn = "clockwise" if rule["step"] > 0 else "counterclockwise"
        return f"the arrow turns {abs(rule['step'])}° {turn} from each panel to the next"
    return "the colours repeat in the cycle " + " -> ".join(rule["cycle"])


def _solve_sequence(meta):
    p = meta["program"]
    rule, t = p["rule"], p["shown"]
    correct = _describe_content(rule, _content(rule, t))
    letter = letter_of(meta["options"], correct)
    last = _describe_content(rule, _content(rule, t - 1))
    return {
        "facts": _sequence_facts(p),
        "setup": f"Find what changes from panel to panel and apply it once more. Rule: {_rule_sentence(rule)}.",
        "steps": [
            f"Panel {t} shows {last}; one more step of the rule gives {correct}.",
            f"'{correct}' is option {letter}.",
        ],
        "check": f"The rule reproduces every shown panel from panel 1, so panel {t + 1} must be {correct}.",
        "answer": letter,
    }


def _solve_composed(meta):
    p, recipe = meta["program"], meta["recipe"]
    if p["puzzle"] == "grid":
        sentence, steps, value = _rule_steps(p)
        full, _ = _completed(p)
        if recipe["name"] == "line_total":
            line = _line_of_missing(full, p["missing"], p["rule"]["axis"])[0]
            total = sum(line)
            steps.append(f"Completed line: {' + '.join(map(str, line))} = {total}.")
        else:
            total = sum(map(sum, full))
            steps.append("Row sums: " + ", ".join(str(sum(r)) for r in full) + f"; grid total = {total}.")
        correct = str(total)
        facts, setup = _grid_facts(p), f"{sentence} Fill the '?' by this rule, add the numbers asked for"
        check = f"Without the filled value the sum would be {total - value}; adding {value} gives {total}."
    else:
        rule, target = p["rule"], recipe["panel"] - 1
        content = _content(rule, target)
        described = _describe_content(rule, content)
        correct = str(content.get("count", content.get("sides", described)))
        if "sides" in content:
            described += f" ({content['sides']} sides)"
        facts, setup = (
            _sequence_facts(p),
            f"Rule: {_rule_sentence(rule)}. Apply it up to panel {recipe['panel']}",
        )
        steps = [f"Panel {t + 1}: {_describe_content(rule, _content(rule, t))}." for t in range(p["shown"], target)]
        steps.append(f"Panel {target + 1}: {described}.")
        check = (
            f"Counting from panel 1, panel {target + 1} is {target} rule steps later, which again gives {described}."
        )
    letter = letter_of(meta["options"], correct)
    return {
        "facts": facts,
        "setup": setup + " and match the result to an option.",
        "steps": steps + [f"'{correct}' is option {letter}."],
        "check": check,
        "answer": letter,
    }


def solve(meta: dict) -> dict:
    """The worked solution of a simple or composed puzzle question."""
    if meta["family"] == "composed":
        return _solve_composed(meta)
    return _solve_grid(meta) if meta["kind"] == "grid" else _solve_sequence(meta)


def describe(program: dict) -> dict:
    """A structured caption of a puzzle image."""
    p = program
    if p["puzzle"] == "grid":
        sentence, _, value = _rule_steps(p)
        return {
            "category": "puzzle grid",
            "summary": f"A {p['rows']} x {p['cols']} grid of whole numbers with one highlighted cell marked '?'.",
            "components": _grid_facts(p)[1:] + ["The '?' cell is shaded yellow."],
            "interactions": [sentence],
            "implicit": [f"The '?' stands for {value}."],
            "ambiguities": [
                "Only one rule of the usual kinds (sum, difference, product, constant step, constant "
                "total) fits every complete line, so the missing number is determined."
            ],
        }
    rule = p["rule"]
    return {
        "category": "puzzle sequence",
        "summary": f"A row of {p['shown'] + 1} numbered panels; the last is marked '?'.",
        "components": [
            f"panel {t + 1} at x = {panel['box'][0]}..{panel['box'][2]}: "
            + (_describe_content(rule, panel["content"]) if panel["content"] else "'?'")
            for t, panel in enumerate(p["panels"])
        ],
        "interactions": [f"From left to right, {_rule_sentence(rule)}."],
        "implicit": [f"Panel {p['shown'] + 1} should show {_describe_content(rule, _content(rule, p['shown']))}."],
        "ambiguities": ["None: the change between consecutive panels is the same every time."],
    }
