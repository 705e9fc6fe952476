"""Geometry: triangles with marked angles, right triangles, circles and rectangles, drawn to scale.

Program: ``{"width", "height", "font", "figure", ...}`` with, per figure,
- ``triangle``: ``vertices`` {A, B, C: [x, y]}, ``marked`` {vertex: degrees} (two of them),
  ``unknown`` (the vertex marked "?"), ``arcs`` {vertex: [radius, start°, end°]}, ``angle_labels`` and
  ``vertex_labels`` {vertex: [x, y]};
- ``right_triangle``: ``vertices`` (right angle at C), ``legs`` {"CA": int, "CB": int},
  ``leg_labels`` {"CA"|"CB": [x, y]}, ``hypotenuse_label`` [x, y], ``right_mark`` (polygon);
- ``circle``: ``center``, ``radius_px``, ``given`` ("radius"|"diameter"), ``value`` (its length),
  ``segment`` [[x, y], [x, y]], ``label_at``;
- ``rectangle``: ``box`` [x0, y0, x1, y1], ``sides`` {"width": int, "height": int}, ``labels``.
"""

from __future__ import annotations

import math
import random

from PIL import Image

from mmfr.demo.synth.draw import COLORS, INK, MAX_SIDE, MIN_SIDE, canvas, font_size, label, text_width
from mmfr.options import letter_of, lettered, number_options, radical_latex, radical_text

KINDS = ("triangle_angle", "hypotenuse", "circle", "rectangle")
ANSWER_TYPES = {"triangle_angle": "number", "hypotenuse": "expression", "circle": "expression", "rectangle": "number"}
DOMAIN = "math"
VERTICES = ("A", "B", "C")


def _fit(points: list[tuple[float, float]], width: int, height: int, margin: float) -> list[list[int]]:
    """Scale and centre math-style points (y up) into the canvas, keeping ``margin`` px free."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    s = min((width - 2 * margin) / span_x, (height - 2 * margin) / span_y)
    ox = (width - s * span_x) / 2 - s * min(xs)
    oy = (height + s * span_y) / 2 + s * min(ys)
    return [[round(ox + s * x), round(oy - s * y)] for x, y in points]


def _canvas_for(rng: random.Random, points: list[tuple[float, float]]) -> tuple[int, int, int]:
    """(width, height, font size): the longest side in [224, 640], shaped like the figure's bounding box."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ratio = min(1.6, max(0.625, (max(xs) - min(xs)) / (max(ys) - min(ys)) * rng.uniform(0.9, 1.1)))
    longest = rng.randint(MIN_SIDE, MAX_SIDE)
    width, height = (longest, round(longest / ratio)) if ratio >= 1 else (round(longest * ratio), longest)
    return width, height, font_size(width, height, 22)


def _unit(dx: float, dy: float) -> tuple[float, float]:
    n = math.hypot(dx, dy)
    return dx / n, dy / n


def _box_reach(nx: float, ny: float, text: str, fs: int) -> float:
    """How far a centred label extends along the unit direction (nx, ny)."""
    return abs(nx) * text_width(text, fs) / 2 + abs(ny) * fs / 2


def _orientation(rng: random.Random, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Rotate by a small random angle and maybe mirror, so figures do not all sit the same way."""
    t = math.radians(rng.uniform(-25, 25))
    flip = -1 if rng.random() < 0.5 else 1
    return [(flip * (x * math.cos(t) - y * math.sin(t)), x * math.sin(t) + y * math.cos(t)) for x, y in points]


def _triangle(rng: random.Random) -> dict:
    while True:
        a, b = rng.randint(30, 115), rng.randint(30, 115)
        if 180 - a - b >= 30:
            break
    angles = {"A": a, "B": b, "C": 180 - a - b}
    side_b = math.sin(math.radians(b)) / math.sin(math.radians(angles["C"]))
    pts = _orientation(rng, [(0, 0), (1, 0), (side_b * math.cos(math.radians(a)), side_b * math.sin(math.radians(a)))])
    width, height, fs = _canvas_for(rng, pts)
    vertices = dict(zip(VERTICES, _fit(pts, width, height, 2 * fs + 6)))
    unknown = rng.choice(VERTICES)
    cx, cy = (sum(v[i] for v in vertices.values()) / 3 for i in (0, 1))
    arcs, angle_labels, vertex_labels = {}, {}, {}
    for name, (vx, vy) in vertices.items():
        p, q = (vertices[o] for o in VERTICES if o != name)
        a1, a2 = (math.degrees(math.atan2(o[1] - vy, o[0] - vx)) % 360 for o in (p, q))
        start, end = (a1, a2) if (a2 - a1) % 360 < 180 else (a2, a1)
        shortest = min(math.dist((vx, vy), p), math.dist((vx, vy), q))
        radius = min(0.2 * shortest, 2.2 * fs)
        arcs[name] = [round(radius, 1), round(start, 1), round(end, 1)]
        mid = math.radians(start + ((end - start) % 360) / 2)
        text = "?" if name == unknown else f"{angles[name]}°"
        reach = (text_width(text, fs) / 2 + 3) / math.sin(math.radians(angles[name] / 2))
        dist = max(radius + 0.9 * fs, reach)
        angle_labels[name] = [round(vx + dist * math.cos(mid)), round(vy + dist * math.sin(mid))]
        ux, uy = _unit(vx - cx, vy - cy)
        vertex_labels[name] = [round(vx + ux * (fs + 2)), round(vy + uy * (fs + 2))]
    return {
        "width": width,
        "height": height,
        "font": fs,
        "figure": "triangle",
        "vertices": vertices,
        "marked": {v: angles[v] for v in VERTICES if v != unknown},
        "unknown": unknown,
        "arcs": arcs,
        "angle_labels": angle_labels,
        "vertex_labels": vertex_labels,
    }


def _right_triangle(rng: random.Random) -> dict:
    while True:
        p, q = rng.randint(2, 15), rng.randint(2, 15)
        if max(p, q) / min(p, q) <= 2.5:
            break
    sx, sy = rng.choice((1, -1)), rng.choice((1, -1))
    corners = [(0, 0), (sx * p, 0), (0, sy * q)]
    width, height, fs = _canvas_for(rng, corners)
    c, a, b = _fit(corners, width, height, 2.5 * fs + 8)
    (ux, uy), (vx, vy) = _unit(a[0] - c[0], a[1] - c[1]), _unit(b[0] - c[0], b[1] - c[1])
    m = max(8, min(16, 0.12 * min(math.dist(c, a), math.dist(c, b))))
    mark = [
        [round(c[0] + ux * m), round(c[1] + uy * m)],
        [round(c[0] + (ux + vx) * m), round(c[1] + (uy + vy) * m)],
        [round(c[0] + vx * m), round(c[1] + vy * m)],
    ]
    leg_labels = {}
    for key, (end, (nx, ny)), value in (("CA", (a, (-vx, -vy)), p), ("CB", (b, (-ux, -uy)), q)):
        off = _box_reach(nx, ny, str(value), fs) + 6
        leg_labels[key] = [round((c[0] + end[0]) / 2 + nx * off), round((c[1] + end[1]) / 2 + ny * off)]
    hx, hy = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    nx, ny = _unit(hx - c[0], hy - c[1])
    off = _box_reach(nx, ny, "?", fs) + 6
    return {
        "width": width,
        "height": height,
        "font": fs,
        "figure": "right_triangle",
        "vertices": {"A": a, "B": b, "C": c},
        "legs": {"CA": p, "CB": q},
        "leg_labels": leg_labels,
        "hypotenuse_label": [round(hx + nx * off), round(hy + ny * off)],
        "right_mark": mark,
    }


def _circle(rng: random.Random) -> dict:
    given = rng.choice(("radius", "diameter"))
    r = rng.randint(2, 20)
    value = r if given == "radius" else 2 * r
    width, height, fs = _canvas_for(rng, [(-1, -1), (1, 1)])
    cx, cy, radius = width // 2, height // 2, min(width, height) // 2 - 10
    phi = math.radians(rng.randrange(0, 360, 15))
    dx, dy = math.cos(phi), math.sin(phi)
    end = [round(cx + radius * dx), round(cy + radius * dy)]
    start = [cx, cy] if given == "radius" else [round(cx - radius * dx), round(cy - radius * dy)]
    text = f"{'r' if given == 'radius' else 'd'} = {value}"
    off = _box_reach(-dy, dx, text, fs) + 5
    at = [round(cx + radius * dx / 2 - dy * off), round(cy + radius * dy / 2 + dx * off)]
    return {
        "width": width,
        "height": height,
        "font": fs,
        "figure": "circle",
        "center": [cx, cy],
        "radius_px": radius,
        "given": given,
        "value": value,
        "segment": [start, end],
        "label_at": at,
    }


def _rectangle(rng: random.Random) -> dict:
    while True:
        w, h = rng.randint(2, 30), rng.randint(2, 30)
        if w != h and max(w, h) / min(w, h) <= 3:
            break
    width, height, fs = _canvas_for(rng, [(0, 0), (w, h)])
    margin = text_width(str(h), fs) + 14
    (x0, y0), (x1, y1) = _fit([(0, 0), (w, h)], width, height, margin)
    x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    return {
        "width": width,
        "height": height,
        "font": fs,
        "figure": "rectangle",
        "box": [x0, y0, x1, y1],
        "sides": {"width": w, "height": h},
        "labels": {"width": [(x0 + x1) // 2, y1 + fs], "height": [x1 + 7, (y0 + y1) // 2]},
    }


_FIGURES = {"triangle_angle": _triangle, "hypotenuse": _right_triangle, "circle": _circle, "rectangle": _rectangle}


def sample(rng: random.Random, kind: str) -> tuple[dict, str]:
    """A figure drawn to scale and a question of ``kind`` about it."""
    program = _FIGURES[kind](rng)
    query = {}
    if kind == "triangle_angle":
        question = f"Two angles of triangle ABC are marked. What is the measure of ∠{program['unknown']} in degrees?"
    elif kind == "hypotenuse":
        question = (
            "The legs of the right triangle are labelled with their lengths. "
            "What is the exact length of the hypotenuse marked '?'?"
        )
    elif kind == "circle":
        query["ask"] = rng.choice(("area", "circumference"))
        question = (
            f"The circle's {program['given']} is labelled. What is the exact {query['ask']} of the circle? "
            "Give the answer in terms of π."
        )
    else:
        query["ask"] = rng.choice(("area", "perimeter"))
        question = f"The side lengths of the rectangle are labelled. What is its {query['ask']}?"
    return {"program": program, "query": query}, question


def render(program: dict) -> Image.Image:
    p = program
    image, draw = canvas(p["width"], p["height"])
    fs, figure, accent = p["font"], p["figure"], COLORS["blue"]
    if figure == "triangle":
        draw.polygon([tuple(p["vertices"][v]) for v in VERTICES], outline=INK, width=2)
        for v in VERTICES:
            (x, y), (radius, start, end) = p["vertices"][v], p["arcs"][v]
            color = COLORS["red"] if v == p["unknown"] else accent
            draw.arc((x - radius, y - radius, x + radius, y + radius), start, end, fill=color, width=2)
            label(draw, p["angle_labels"][v], "?" if v == p["unknown"] else f"{p['marked'][v]}°", fs, color)
            label(draw, p["vertex_labels"][v], v, fs + 1)
    elif figure == "right_triangle":
        draw.polygon([tuple(p["vertices"][v]) for v in VERTICES], outline=INK, width=2)
        draw.line([tuple(xy) for xy in p["right_mark"]], fill=INK, width=1)
        for key, xy in p["leg_labels"].items():
            label(draw, xy, str(p["legs"][key]), fs, accent)
        label(draw, p["hypotenuse_label"], "?", fs, COLORS["red"])
    elif figure == "circle":
        (cx, cy), radius = p["center"], p["radius_px"]
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=INK, width=2)
        draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=INK)
        draw.line([tuple(xy) for xy in p["segment"]], fill=accent, width=2)
        label(draw, p["label_at"], f"{'r' if p['given'] == 'radius' else 'd'} = {p['value']}", fs, accent)
    else:
        x0, y0, x1, y1 = p["box"]
        draw.rectangle((x0, y0, x1, y1), outline=INK, width=2)
        m = 8
        for x, y, sx, sy in ((x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1), (x1, y1, -1, -1)):
            draw.line(((x + sx * m, y), (x + sx * m, y + sy * m), (x, y + sy * m)), fill=INK, width=1)
        label(draw, p["labels"]["width"], str(p["sides"]["width"]), fs, accent)
        label(draw, p["labels"]["height"], str(p["sides"]["height"]), fs, accent, anchor="lm")
    return image


# ---- shared derived quantities


def _angles(p: dict) -> dict[str, int]:
    """All three angles: the two marked ones and the unknown one from the angle sum."""
    known = dict(p["marked"])
    return {v: known.get(v, 180 - sum(known.values())) for v in VERTICES}


def _radius(p: dict) -> int:
    return p["value"] if p["given"] == "radius" else p["value"] // 2


def _root_step(symbol: str, n: int) -> str:
    """'c = √50 = 5√2.' (or 'c = √13.' when the root does not simplify)."""
    text = radical_text(n)
    return f"{symbol} = √{n}" + ("" if text == f"√{n}" else f" = {text}") + "."


def _num(x: float) -> str:
    """An exact decimal without a trailing '.0'."""
    return str(int(x)) if x == int(x) else str(x)


# ---- composed questions


def _compose_triangle(rng, p):
    angles = _angles(p)
    z = p["unknown"] if rng.random() < 0.5 else rng.choice(VERTICES)
    x, y = (v for v in VERTICES if v != z)
    recipe = rng.choice(("angle_compare", "largest_angle", "exterior_angle"))
    if recipe == "angle_compare":
        total, third = angles[x] + angles[y], angles[z]
        correct = f"∠{x} + ∠{y}" if total > third else f"∠{z}" if total < third else "They are equal"
        options = lettered(rng, correct, [f"∠{x} + ∠{y}", f"∠{z}", "They are equal", "It cannot be determined"])
        return (
            {"name": recipe, "pair": [x, y], "single": z},
            options,
            f"In triangle ABC, which is larger: ∠{x} + ∠{y} or ∠{z}?",
        )
    if recipe == "largest_angle":
        best = max(angles.values())
        if list(angles.values()).count(best) > 1:
            return None
        correct = f"∠{max(angles, key=angles.get)}"
        options = lettered(rng, correct, [f"∠{v}" for v in VERTICES] + ["All three angles are equal"])
        return {"name": recipe}, options, "Which angle of triangle ABC is the largest?"
    value = 180 - angles[z]
    options = number_options(
        rng, value, [angles[z], 180 - angles[x], 180 - angles[y], 360 - value], step=10, fmt="{}°"
    )
    return (
        {"name": recipe, "vertex": z},
        options,
        f"What is the measure of the exterior angle of triangle ABC at vertex {z}?",
    )


def _compose_right(rng, p):
    a, b = p["legs"]["CA"], p["legs"]["CB"]
    if rng.random() < 0.5:
        options = lettered(
            rng,
            _perimeter_text(a, b, a * a + b * b),
            [str(a + b), str(2 * (a + b)), _perimeter_text(a, b, abs(a * a - b * b)), str(a + b + a * a + b * b)],
        )
        return {"name": "right_perimeter"}, options, "What is the exact perimeter of the right triangle?"
    options = lettered(rng, _num(a * b / 2), [_num(a * b), _num(a + b), _num(a * b / 4), _num(a * b / 2 + 1)])
    return {"name": "right_area"}, options, "What is the area of the right triangle?"


def _perimeter_text(a: int, b: int, hyp_squared: int) -> str:
    hyp = radical_text(hyp_squared)
    return str(a + b + int(hyp)) if hyp.isdigit() else f"{a + b} + {hyp}"


def _compose_circle(rng, p):
    r = _radius(p)
    if rng.random() < 0.5:
        options = lettered(rng, f"{4 * r * r}π", [f"{k}π" for k in (2 * r * r, r * r, 4 * r, 8 * r * r, 16 * r * r)])
        return (
            {"name": "doubled_area"},
            options,
            "If the radius of the circle were doubled, what would its area be? Give the answer in terms of π.",
        )
    options = lettered(rng, _num(r / 2), [_num(x) for x in (r, 2 * r, r / 4, r * r, r / 2 + 1)])
    return {"name": "area_to_circumference"}, options, "What is the ratio of the circle's area to its circumference?"


def _compose_rectangle(rng, p):
    w, h = p["sides"]["width"], p["sides"]["height"]
    if (w + h) % 2 == 0 and rng.random() < 0.5:
        side = (w + h) // 2
        options = number_options(rng, side * side, [w * h, 2 * (w + h), side, (w + h) ** 2], minimum=1)
        return (
            {"name": "square_same_perimeter"},
            options,
            "A square has the same perimeter as this rectangle. What is the area of the square?",
        )
    options = lettered(
        rng,
        radical_text(w * w + h * h),
        [str(w + h), radical_text(abs(w * w - h * h)), str(w * w + h * h), radical_text(w * h)],
    )
    return {"name": "diagonal"}, options, "What is the exact length of the rectangle's diagonal?"


_COMPOSE = {
    "triangle": _compose_triangle,
    "right_triangle": _compose_right,
    "circle": _compose_circle,
    "rectangle": _compose_rectangle,
}


def compose(rng: random.Random, meta: dict) -> tuple[dict, list[str], str] | None:
    """A harder question about ``meta``'s figure combining two or more of its measures."""
    return _COMPOSE[meta["program"]["figure"]](rng, meta["program"])


# ---- solutions


def _facts(p: dict) -> list[str]:
    figure = p["figure"]
    if figure == "triangle":
        return (
            ["Triangle ABC is drawn with vertices labelled A, B and C."]
            + [f"The arc at {v} is labelled {d}°, so ∠{v} = {d}°." for v, d in p["marked"].items()]
            + [f"The arc at {p['unknown']} is labelled '?': ∠{p['unknown']} is unknown."]
        )
    if figure == "right_triangle":
        return [
            "A right triangle is drawn; the small square marks the right angle between the two legs.",
            f"The legs are labelled {p['legs']['CA']} and {p['legs']['CB']}.",
            "The hypotenuse, opposite the right angle, is marked '?'.",
        ]
    if figure == "circle":
        return [
            f"A circle with its centre marked; a {p['given']} is drawn and labelled "
            f"{'r' if p['given'] == 'radius' else 'd'} = {p['value']}."
        ]
    s = p["sides"]
    return [
        "A rectangle with right angles marked at the corners.",
        f"The bottom side is labelled {s['width']} and the right side {s['height']}.",
    ]


def _solve_triangle(meta):
    p = meta["program"]
    (x, dx), (y, dy) = p["marked"].items()
    z, dz = p["unknown"], 180 - dx - dy
    return {
        "facts": _facts(p),
        "setup": f"The interior angles of a triangle sum to 180°, so ∠{z} = 180° - ∠{x} - ∠{y}.",
        "steps": [f"∠{x} + ∠{y} = {dx}° + {dy}° = {dx + dy}°.", f"∠{z} = 180° - {dx + dy}° = {dz}°."],
        "check": f"{dx}° + {dy}° + {dz}° = 180°, and {dz}° is positive, matching the drawn angle at {z}.",
        "answer": str(dz),
    }


def _solve_hypotenuse(meta):
    p = meta["program"]
    a, b = p["legs"]["CA"], p["legs"]["CB"]
    n = a * a + b * b
    text = radical_text(n)
    steps = [
        f"c² = {a}² + {b}² = {a * a} + {b * b} = {n}.",
        _root_step("c", n),
    ]
    return {
        "facts": _facts(p),
        "setup": "By the Pythagorean theorem the hypotenuse c satisfies c² = a² + b² for legs a and b; "
        "simplify the square root exactly.",
        "steps": steps,
        "check": f"({text})² = {n} = {a * a} + {b * b}, and {text} is longer than either leg, as it must be.",
        "answer": radical_latex(n),
    }


def _solve_circle(meta):
    p, ask = meta["program"], meta["query"]["ask"]
    r = _radius(p)
    steps = [] if p["given"] == "radius" else [f"r = d / 2 = {p['value']} / 2 = {r}."]
    if ask == "area":
        value, setup = r * r, "The area of a circle is A = πr²."
        steps.append(f"A = π · {r}² = {value}π.")
        check = f"{value}π ÷ π = {value} = {r}², consistent with radius {r}."
    else:
        value, setup = 2 * r, "The circumference of a circle is C = 2πr."
        steps.append(f"C = 2π · {r} = {value}π.")
        check = f"{value}π ÷ (2π) = {r}, the radius again."
    return {
        "facts": _facts(p),
        "setup": setup + " Keep π symbolic for an exact answer.",
        "steps": steps,
        "check": check,
        "answer": f"{value}\\pi",
    }


def _solve_rectangle(meta):
    p, ask = meta["program"], meta["query"]["ask"]
    w, h = p["sides"]["width"], p["sides"]["height"]
    if ask == "area":
        value, setup, step = w * h, "The area of a rectangle is width × height.", f"A = {w} × {h} = {w * h}."
        check = f"{w * h} ÷ {w} = {h}, the other side."
    else:
        value, setup = 2 * (w + h), "The perimeter of a rectangle is 2 × (width + height)."
        step, check = (
            f"P = 2 × ({w} + {h}) = 2 × {w + h} = {value}.",
            f"{w} + {h} + {w} + {h} = {value}, going around all four sides.",
        )
    return {"facts": _facts(p), "setup": setup, "steps": [step], "check": check, "answer": str(value)}


def _solve_composed(meta):
    p, recipe = meta["program"], meta["recipe"]
    name = recipe["name"]
    if p["figure"] == "triangle":
        angles = _angles(p)
        z = p["unknown"]
        known = [f"∠{v} = {d}°" for v, d in p["marked"].items()]
        steps = [f"∠{z} = 180° - " + " - ".join(f"{d}°" for d in p["marked"].values()) + f" = {angles[z]}°."]
        if name == "angle_compare":
            (x, y), s = recipe["pair"], recipe["single"]
            total = angles[x] + angles[y]
            correct = f"∠{x} + ∠{y}" if total > angles[s] else f"∠{s}" if total < angles[s] else "They are equal"
            setup = f"Find all three angles from the angle sum, then compare ∠{x} + ∠{y} with ∠{s}."
            steps.append(f"∠{x} + ∠{y} = {angles[x]}° + {angles[y]}° = {total}° versus ∠{s} = {angles[s]}°.")
            check = f"Equivalently ∠{x} + ∠{y} = 180° - ∠{s}, which exceeds ∠{s} exactly when ∠{s} < 90°."
        elif name == "largest_angle":
            correct = f"∠{max(angles, key=angles.get)}"
            setup = "Find all three angles from the angle sum and take the largest."
            steps.append("Angles: " + ", ".join(f"∠{v} = {d}°" for v, d in angles.items()) + ".")
            check = f"{' + '.join(f'{d}°' for d in angles.values())} = 180°, and the largest is unique."
        else:
            v = recipe["vertex"]
            correct = f"{180 - angles[v]}°"
            setup = f"The exterior angle at {v} is 180° - ∠{v}; it also equals the sum of the two remote angles."
            steps.append(f"Exterior angle at {v} = 180° - {angles[v]}° = {180 - angles[v]}°.")
            others = [d for u, d in angles.items() if u != v]
            check = f"The remote interior angles give {others[0]}° + {others[1]}° = {sum(others)}°, the same."
        facts = _facts(p) + [f"Known: {', '.join(known)}."]
    elif p["figure"] == "right_triangle":
        a, b = p["legs"]["CA"], p["legs"]["CB"]
        facts = _facts(p)
        if name == "right_perimeter":
            correct = _perimeter_text(a, b, a * a + b * b)
            setup = "Find the hypotenuse with the Pythagorean theorem, then add all three sides."
            steps = [
                f"c² = {a}² + {b}² = {a * a + b * b}.",
                _root_step("c", a * a + b * b),
                f"P = {a} + {b} + {radical_text(a * a + b * b)} = {correct}.",
            ]
            check = "The hypotenuse is longer than each leg but shorter than their sum, as it must be."
        else:
            correct = _num(a * b / 2)
            setup = (
                "The legs are perpendicular, so one is the base and the other the height: area = base × height / 2."
            )
            steps = [f"Area = {a} × {b} / 2 = {a * b} / 2 = {correct}."]
            check = f"Two copies of the triangle form a {a} × {b} rectangle of area {a * b}."
    elif p["figure"] == "circle":
        r = _radius(p)
        facts = _facts(p)
        steps = [] if p["given"] == "radius" else [f"r = {p['value']} / 2 = {r}."]
        if name == "doubled_area":
            correct = f"{4 * r * r}π"
            setup = "Doubling the radius gives radius 2r; the area π(2r)² is four times the original."
            steps.append(f"New radius {2 * r}; area = π · {2 * r}² = {4 * r * r}π.")
            check = f"The original area is {r * r}π, and 4 × {r * r}π = {4 * r * r}π."
        else:
            correct = _num(r / 2)
            setup = "Area πr² divided by circumference 2πr simplifies to r / 2."
            steps.append(f"πr² / (2πr) = r / 2 = {r} / 2 = {correct}.")
            check = f"Directly: {r * r}π / {2 * r}π = {correct}."
    else:
        w, h = p["sides"]["width"], p["sides"]["height"]
        facts = _facts(p)
        if name == "square_same_perimeter":
            side = (w + h) // 2
            correct = str(side * side)
            setup = "Compute the rectangle's perimeter, divide by 4 for the square's side, then square it."
            steps = [
                f"P = 2 × ({w} + {h}) = {2 * (w + h)}.",
                f"Side = {2 * (w + h)} / 4 = {side}.",
                f"Area = {side}² = {side * side}.",
            ]
            check = f"The square's perimeter 4 × {side} = {4 * side} equals the rectangle's {2 * (w + h)}."
        else:
            correct = radical_text(w * w + h * h)
            setup = "The diagonal is the hypotenuse of a right triangle with the two sides as legs."
            steps = [f"d² = {w}² + {h}² = {w * w + h * h}.", _root_step("d", w * w + h * h)]
            check = f"The diagonal {correct} is longer than {max(w, h)} and shorter than {w + h}, as it must be."
    letter = letter_of(meta["options"], correct)
    return {
        "facts": facts,
        "setup": setup,
        "steps": steps + [f"'{correct}' is option {letter}."],
        "check": check,
        "answer": letter,
    }


_SOLVE = {
    "triangle_angle": _solve_triangle,
    "hypotenuse": _solve_hypotenuse,
    "circle": _solve_circle,
    "rectangle": _solve_rectangle,
}


def solve(meta: dict) -> dict:
    """The worked solution of a simple or composed geometry question."""
    if meta["family"] == "composed":
        return _solve_composed(meta)
    return _SOLVE[meta["kind"]](meta)


def describe(program: dict) -> dict:
    """A structured caption of a geometry figure."""
    p = program
    figure = p["figure"]
    if figure == "triangle":
        angles = _angles(p)
        components = [f"vertex {v} at ({x}, {y})" for v, (x, y) in p["vertices"].items()] + [
            f"arc at {v} labelled {'?' if v == p['unknown'] else str(angles[v]) + '°'}" for v in VERTICES
        ]
        summary = "Triangle ABC with two interior angles marked by their measures and the third marked '?'."
        interactions = [
            "Segments AB, BC and CA form the triangle.",
            "Each arc sits inside the triangle at its vertex.",
        ]
        implicit = [
            f"∠{p['unknown']} = 180° - "
            + " - ".join(f"{d}°" for d in p["marked"].values())
            + f" = {angles[p['unknown']]}°."
        ]
    elif figure == "right_triangle":
        a, b = p["legs"]["CA"], p["legs"]["CB"]
        components = [f"vertex {v} at ({x}, {y})" for v, (x, y) in p["vertices"].items()] + [
            f"leg CA labelled {a}",
            f"leg CB labelled {b}",
            "hypotenuse AB labelled '?'",
            "right-angle mark at C",
        ]
        summary = "A right triangle with both legs labelled by their lengths and the hypotenuse marked '?'."
        interactions = ["The legs CA and CB meet at a right angle at C.", "AB lies opposite the right angle."]
        implicit = [f"AB = √({a}² + {b}²) = {radical_text(a * a + b * b)}.", f"Area = {_num(a * b / 2)}."]
    elif figure == "circle":
        r = _radius(p)
        components = [
            f"circle centred at ({p['center'][0]}, {p['center'][1]}), {p['radius_px']} px radius",
            "dot at the centre",
            f"{p['given']} drawn from {tuple(p['segment'][0])} to {tuple(p['segment'][1])}",
            f"label '{'r' if p['given'] == 'radius' else 'd'} = {p['value']}' beside it",
        ]
        summary = f"A circle with its {p['given']} drawn and labelled {p['value']}."
        interactions = [
            f"The {p['given']} {'starts at the centre' if p['given'] == 'radius' else 'passes through the centre'}"
            " and ends on the circle."
        ]
        implicit = [f"Radius {r}, diameter {2 * r}.", f"Area {r * r}π, circumference {2 * r}π."]
    else:
        w, h = p["sides"]["width"], p["sides"]["height"]
        components = [
            f"rectangle with corners ({p['box'][0]}, {p['box'][1]}) and ({p['box'][2]}, {p['box'][3]})",
            f"bottom side labelled {w}",
            f"right side labelled {h}",
            "right-angle marks in all four corners",
        ]
        summary = f"A {w} by {h} rectangle with two adjacent sides labelled."
        interactions = ["Opposite sides are parallel and equal; adjacent sides are perpendicular."]
        implicit = [f"Area {w * h}, perimeter {2 * (w + h)}, diagonal {radical_text(w * w + h * h)}."]
    return {
        "category": "plane geometry diagram",
        "summary": summary,
        "components": components,
        "interactions": interactions,
        "implicit": implicit,
        "ambiguities": ["The figure is drawn to scale, but only the labelled values should be used in calculations."],
    }
