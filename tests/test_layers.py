"""The package's import layers: nothing imports upward, and no two modules import each other.

Every import is read from the source (function-level, lazy ones too: they are dependencies all the
same), so a cycle hidden inside a function is caught as well as one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "officescore"

# Lowest first. A module may import its own unit and units of a lower layer; units in one layer may
# import each other only one way (the unit graph is checked for cycles too).
LAYERS: list[set[str]] = [
    {"officescore", "errors"},  # `officescore` = the root package's constants (DEFAULT_CLASSES, version)
    {"config", "files", "progress", "masks", "devices"},
    {"images", "runs", "distributed", "attributes"},
    {"model", "attribute_head", "dataset", "sample"},
    {"infer"},  # Predictor, Detection, drawing, score, the fast path
    {"scrape", "ingest", "evaluate", "export"},
    {"train"},
    {"label"},
    {"curate"},
    {"app"},
    {"cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The officescore modules `name` imports: `from a.b import c` is a.b.c when c is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name.split(".")[0] == "officescore")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "officescore":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    return targets - {name}


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None (iterative DFS, white/grey/black)."""
    state: dict[str, int] = {}
    for start in sorted(edges):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(edges.get(start, ())))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop()
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(edges.get(nxt, ()))))
    return None


def _layer_of(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"officescore.{unit} has no layer: add it to LAYERS in {Path(__file__).name}")


def test_every_import_points_down_or_sideways() -> None:
    upward = []
    for module, targets in _graph().items():
        mine = _layer_of(_unit(module))
        upward += [f"{module} -> {t}" for t in sorted(targets) if _layer_of(_unit(t)) > mine]
    assert upward == [], "imports that point up a layer:\n" + "\n".join(upward)


def test_no_cycle_between_modules() -> None:
    # A package's __init__ re-exporting its own modules is not a cycle: skip those edges.
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    edges = {
        module: {t for t in targets if not (module in packages and t.startswith(module + "."))}
        for module, targets in _graph().items()
    }
    assert _cycle(edges) is None, "import cycle: " + " -> ".join(_cycle(edges) or [])


def test_no_cycle_between_stage_packages() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        units.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    assert _cycle(units) is None, "units import each other: " + " -> ".join(_cycle(units) or [])


def test_the_checker_sees_cycles_and_lazy_imports() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    # A function-level import counts: officescore.cli imports the commands lazily.
    assert any(t.startswith("officescore.train") for t in _graph()["officescore.cli.train"])
