"""The package's layering: no import cycle among mmfr modules (imports inside functions included;
a package's ``__init__`` is a module of its own), and no module takes another's ``_private`` name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmfr"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported mmfr module, names taken from it, line) for every import statement in the module,
    wherever it stands. ``from mmfr.x import y`` where ``mmfr.x.y`` is a module imports that module."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "mmfr"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mmfr":
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            rest = [n for n in names if f"{target}.{n}" not in known]
            found += [(m, [], node.lineno) for m in submodules]
            if rest or not submodules:
                found.append((target, rest, node.lineno))
    return found


def graph() -> tuple[dict[str, set[str]], list[str]]:
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for name, path in mods.items():
        for target, names, line in imports(name, path, known):
            while target not in known and "." in target:  # mmfr.x.y where y is a name of mmfr.x
                target = target.rsplit(".", 1)[0]
            if target != name:
                edges[name].add(target)
            private += [f"{path.relative_to(PACKAGE.parent)}:{line} takes {target}.{n}" for n in names
                        if n.startswith("_") and not n.startswith("__") and target != name]
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_imports_inside_functions_and_packages(tmp_path):
    edges, _ = graph()
    assert "mmfr.provenance" in edges["mmfr.snake"]
    assert edges["mmfr.cli"]  # cli imports its commands inside functions


def test_no_import_cycle_in_the_package():
    found = cycles(graph()[0])
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_module_takes_another_s_private_name():
    _, private = graph()
    assert not private, "\n".join(private)


# The stages in the order data flows through them; a stage may import an earlier one, never a later
STAGES = ["mmfr.adapters", "mmfr.questions", "mmfr.sources", "mmfr.dedup", "mmfr.clean", "mmfr.annotate", "mmfr.verify",
          "mmfr.student", "mmfr.difficulty", "mmfr.subsets", "mmfr.rewards", "mmfr.train", "mmfr.benchmarks.rules",
          "mmfr.benchmarks.protocols", "mmfr.benchmarks", "mmfr.evaluate",
          "mmfr.summary", "mmfr.report"]
# The layers under the stages: none of them imports a stage (config compiles subset filters, lazily)
LOWER = {"mmfr.answers", "mmfr.schema", "mmfr.provenance", "mmfr.prompts", "mmfr.options", "mmfr.images",
         "mmfr.exclusions", "mmfr.models", "mmfr.generate", "mmfr.generate.core", "mmfr.generate.journal",
         "mmfr.generate.hf", "mmfr.generate.vllm", "mmfr.generate.openai", "mmfr.grounded", "mmfr.release", "mmfr.nearhash"}


def test_no_stage_imports_a_later_stage_and_no_lower_layer_imports_a_stage():
    edges, _ = graph()
    later = [f"{a} imports {b}" for i, a in enumerate(STAGES) for b in edges[a] if b in STAGES[i + 1:]]
    assert not later, later
    upward = [f"{a} imports {b}" for a in LOWER for b in edges[a] if b in STAGES or b.startswith("mmfr.demo")]
    assert not upward, upward


def test_production_reaches_the_demo_only_through_its_registries():
    """No module outside mmfr.demo imports it: the backend registry, sources.GENERATOR and
    checkpoints.BUILDER name it by string."""
    edges, _ = graph()
    found = [f"{a} imports {b}" for a, bs in edges.items() if not a.startswith("mmfr.demo")
             for b in bs if b.startswith("mmfr.demo")]
    assert not found, found


@pytest.mark.parametrize("module", ["mmfr.answers"])
def test_the_bottom_layer_imports_no_other_mmfr_module(module):
    edges, _ = graph()
    inside = {m for m in edges if m == module or m.startswith(module + ".")}
    assert inside, f"{module} does not exist"
    outside = {m: sorted(t for t in edges[m] if t not in inside) for m in inside}
    assert not any(outside.values()), outside
