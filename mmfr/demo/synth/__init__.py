"""Seeded synthetic visual reasoning sources drawn with Pillow: the embedded offline demo data.

Every record comes from a *scene program* (``metadata["program"]``): everything drawn, with
coordinates and values. The answer is computed from that program by ``solution``, so it is always
verifiable, and the image is rendered from it, so the same seed gives byte-identical records.

Each family module provides ``KINDS``, ``ANSWER_TYPES`` (kind -> answer type), ``DOMAIN``,
``sample(rng, kind) -> (metadata, question)``, ``render(program) -> Image``, ``solve(metadata)``,
``describe(program)`` and ``compose(rng, metadata) -> (recipe, options, question) | None``.
"""

from __future__ import annotations

import hashlib
import json
import random

from mmfr import grounded
from mmfr.demo.synth import charts, counting, geometry, puzzle
from mmfr.demo.synth.draw import to_png
from mmfr.schema import seed_for

FAMILIES = ("counting", "charts", "geometry", "puzzle")
SPLITS = ("train", "test")
_MODULES = {"counting": counting, "charts": charts, "geometry": geometry, "puzzle": puzzle}
_COMPOSE_ATTEMPTS = 200


def split_of(program: dict) -> str:
    """The only split a scene may appear in: one bit of the hash of its program.

    Train and test draw from separate seed namespaces *and* keep only scenes whose hash falls in
    their half, so whatever the seeds, no test record shares its image (let alone its question,
    answer and program) with a train record.
    """
    digest = hashlib.sha256(json.dumps(program, sort_keys=True).encode()).hexdigest()
    return SPLITS[int(digest[-1], 16) % 2]


def _record(family: str, split: str, index: int, seed: int) -> dict:
    module = _MODULES[family]
    kind = module.KINDS[index % len(module.KINDS)]
    rng = random.Random(seed_for(seed, f"synth/{family}/{split}", index=index))
    while True:
        meta, question = module.sample(rng, kind)
        if split_of(meta["program"]) == split:
            break
    meta = {"family": family, "kind": kind, **meta}
    return {
        "original_id": f"{family}-{split}-{index:06d}",
        "question": question,
        "answer": module.solve(meta)["answer"],
        "answer_type": module.ANSWER_TYPES[kind],
        "choices": list(meta.get("options", [])),
        "image": to_png(module.render(meta["program"])),
        "metadata": meta,
        "domain": module.DOMAIN,
    }


def generate(family: str, split: str, n: int, seed: int) -> list[dict]:
    """``n`` records of one family; question kinds alternate so every kind is represented.

    Record ``i`` depends only on (family, split, seed, i): a longer run extends a shorter one.
    ``split`` is "train" or "test"; the two are disjoint by construction (see ``split_of``).
    """
    if family not in _MODULES:
        raise ValueError(f"unknown synthetic family {family!r} (one of {', '.join(FAMILIES)})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (train or test)")
    return [_record(family, split, i, seed) for i in range(n)]


def detections(n: int, seed: int, split: str = "train", dense_captions: bool = False) -> list[dict]:
    """``n`` images of counting scenes with their labelled boxes, in the layout of a detection
    dataset such as detection-datasets/coco: the demo's stand-in for Long Grounded Thoughts' images
    with metadata (adapter ``grounded_mcq`` writes the questions). ``dense_captions``: each image also
    gets a prose description (column ``caption``), as a dense-caption dataset stores one, from which
    a question writer works (adapter ``caption_mcq``)."""
    rows = []
    for i in range(n):
        rng = random.Random(seed_for(seed, f"synth/detection/{split}", index=i))
        while split_of(program := counting.scene(rng)) != split:
            pass
        rows.append({"image_id": f"detection-{split}-{i:06d}", "image": {"bytes": to_png(counting.render(program)),
                     "path": None}, "width": program["width"], "height": program["height"],
                     "objects": counting.objects(program)})
        if dense_captions:
            rows[-1]["caption"] = dense_caption(rows[-1]["objects"], program["width"], program["height"])
    return rows


def dense_caption(objects: dict, width: int, height: int) -> str:
    """A prose description of a scene from its labelled boxes: how many of each kind, which shape
    lies furthest to each side, and where some shapes are relative to others (only what the boxes
    settle by a clear margin)."""
    boxes = grounded.boxes_from(objects)
    counts = {label: sum(b.label == label for b in boxes) for label in dict.fromkeys(b.label for b in boxes)}
    text = [f"A {width} by {height} drawing of {len(boxes)} flat shapes on a plain background, none of them "
            "overlapping."]
    text += [f"There {'is' if n == 1 else 'are'} {n} {label if n == 1 else grounded.plural(label)}."
             for label, n in counts.items()]
    unique = [b for b in boxes if counts[b.label] == 1]
    margin = grounded.MARGIN * width
    for side, key in (("left", lambda b: b.cx), ("right", lambda b: -b.cx)):
        first, *rest = sorted(boxes, key=key)
        if counts[first.label] == 1 and all(key(b) - key(first) >= margin for b in rest):
            text.append(f"The {first.label} is the shape furthest to the {side}.")
    for a, b in zip(unique, unique[1:]):
        if abs(a.cx - b.cx) >= 2 * margin:
            text.append(f"The {a.label} is to the {'left' if a.cx < b.cx else 'right'} of the {b.label}.")
    return " ".join(text)


def compose(records: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` harder multiple-choice questions, each merging two or more facts of one record's scene.

    The "complexity" step of Long Grounded Thoughts: a composed record reuses its parent's image,
    keeps its program, and records the parent's id and the recipe in ``metadata``.
    """
    parents = [r for r in records if r["metadata"]["family"] in _MODULES]
    if n and not parents:
        raise ValueError("compose needs simple synthetic records (family in FAMILIES)")
    out = []
    for i in range(n):
        rng = random.Random(seed_for(seed, "synth/composed", index=i))
        for _ in range(_COMPOSE_ATTEMPTS):
            parent = parents[rng.randrange(len(parents))]
            made = _MODULES[parent["metadata"]["family"]].compose(rng, parent["metadata"])
            if made:
                break
        else:
            raise ValueError(f"no composable record among {len(parents)} after {_COMPOSE_ATTEMPTS} tries")
        recipe, options, question = made
        pm = parent["metadata"]
        meta = {
            "family": "composed",
            "kind": recipe["name"],
            "parent_family": pm["family"],
            "parent_kind": pm["kind"],
            "parent_id": parent["original_id"],
            "program": pm["program"],
            "recipe": recipe,
            "options": options,
        }
        out.append(
            {
                "original_id": f"composed-{parent['original_id']}-{i:06d}",
                "question": question,
                "answer": solution(meta)["answer"],
                "answer_type": "choice",
                "choices": list(options),
                "image": parent["image"],
                "metadata": meta,
                "domain": parent["domain"],
            }
        )
    return out


def _module(metadata: dict):
    family = metadata["family"]
    return _MODULES[metadata["parent_family"] if family == "composed" else family]


def solution(metadata: dict) -> dict:
    """A careful solver's write-up for the scripted teacher, from the scene program alone:
    ``{"facts", "setup", "steps", "check", "answer"}``; ``answer`` equals the record's answer.
    A question written from labelled boxes (``grounded_mcq``) is solved from its facts."""
    if "lgt_kind" in metadata:
        return grounded.solve(metadata)
    return _module(metadata).solve(metadata)


def describe(metadata: dict) -> dict:
    """A structured caption of the scene for the scripted captioner: ``{"category", "summary",
    "components", "interactions", "implicit", "ambiguities"}``."""
    if "lgt_kind" in metadata:
        return grounded.describe(metadata)
    return _module(metadata).describe(metadata["program"])
