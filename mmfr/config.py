"""Checks on the config that a JSON schema cannot express. Run at parse time, before any job,
so a config error never costs work; every message names the config key at fault."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    pass


def _unique(items: list[dict], key: str, where: str) -> None:
    seen = set()
    for i, item in enumerate(items):
        if item[key] in seen:
            raise ConfigError(f"{where}[{i}].{key}: {item[key]!r} appears twice")
        seen.add(item[key])


def check_config(config: dict) -> None:
    _unique(config["sources"], "name", "sources")
    _unique(config["benchmarks"], "name", "benchmarks")
    _unique(config["subsets"], "name", "subsets")
    _unique(config["students"], "size", "students")
    rl = config["selection"]["rl"]["name"]
    if rl in {s["name"] for s in config["subsets"]}:
        raise ConfigError(f"selection.rl.name: {rl!r} is also the name of an SFT subset")
    families = set()
    for i, s in enumerate(config["sources"]):
        if s["kind"] == "synthetic":
            families.add(s["family"])
    known = {"counting", "charts", "geometry", "puzzle"}
    for i, s in enumerate(config["sources"]):
        for fam in [s.get("family")] if s["kind"] == "synthetic" else s.get("families", []):
            if fam not in known:
                raise ConfigError(f"sources[{i}] ({s['name']}): unknown synthetic family {fam!r}; known: {sorted(known)}")
    _check_exclusions(config)
    unpinned = [s["name"] for s in config["sources"] + config["benchmarks"] if s["kind"] == "hf" and not s.get("revision")]
    if unpinned:
        log.warning("%d datasets have no pinned revision (downloads are not reproducible): %s",
                    len(unpinned), ", ".join(unpinned))
    sizes = {s["size"] for s in config["students"]}
    for role, spec in config["models"].items():
        if not spec:
            continue
        path = spec["model"]
        if path.startswith("models/"):
            parts = path.split("/")
            if len(parts) != 3 or parts[1] != "base" or parts[2] not in sizes:
                raise ConfigError(f"models.{role}.model: {path!r} is not a model this workflow builds "
                                  f"(models/base/<size> with size in {sorted(sizes)})")
        if spec["backend"] == "scripted" and role not in ("caption", "trace", "clean", "extract", "expand"):
            raise ConfigError(f"models.{role}.backend: the scripted backend can only caption, trace, clean, extract "
                              "and expand")
    for i, sub in enumerate(config["subsets"]):
        where = sub.get("where", "true")
        if ";" in where:
            raise ConfigError(f"subsets[{i}].where: {where!r} must be a single SQL expression")


def _check_exclusions(config: dict) -> None:
    """A source the recipe excludes as a whole (say a FineVision config named in exclude.origins)
    is a config mistake: it would download only to drop every record."""
    from mmfr.exclusions import Exclusions

    exclusions = Exclusions.from_config(config.get("exclude") or {})
    for i, s in enumerate(config["sources"]):
        if hit := exclusions.origin_match(s["name"], s.get("config")):
            raise ConfigError(f"sources[{i}] ({s['name']}): matches exclude.origins entry {hit!r}; "
                              "remove the source or the exclusion")
