"""The package's import graph: at most 6 floors (cli on the top one), no cycles, function-level
imports counted too (docs/architecture.md)."""

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mapbench"
MAX_FLOORS = 6


def modules() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports."""
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                deps |= {t for t in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if t in paths}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in paths}
        graph[name] = deps - {name, "mapbench"}  # the root package holds only the version
    return graph


def test_the_import_graph_has_no_cycle_and_at_most_six_floors():
    graph = modules()

    @functools.cache
    def floor(name: str, path: tuple = ()) -> int:
        assert name not in path, "import cycle: " + " -> ".join((*path, name))
        return 1 + max((floor(d, (*path, name)) for d in graph[name]), default=0)

    floors = {name: floor(name) for name in graph}
    assert max(floors.values()) <= MAX_FLOORS, sorted(floors.items(), key=lambda kv: -kv[1])[:5]
    assert floors["mapbench.cli"] == max(floors.values())


def test_engines_import_nothing_back_from_the_registry():
    graph = modules()
    for name in graph:
        if name.startswith("mapbench.measure.engines."):
            assert "mapbench.measure.runner" not in graph[name], name
