"""Imports run downward: the library's packages form no cycle, the lower layers never import the
upper ones, and the library never imports Prefect or the flows (read from the source's imports,
so a function-level import counts too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "colorize_core"

# What each lower layer may import of the library (besides itself).
MAY_IMPORT = {
    "bt601": set(),
    "settings": set(),
    "storage": {"bt601", "settings"},
    "monochrome": {"bt601"},
    "model": {"bt601", "settings", "storage"},
    # The archive pipeline (listing, planning, shards) under the training data that builds on its listing.
    "archive": {"bt601", "settings", "storage", "model", "monochrome"},
}


def _unit(path: Path) -> str:
    """A file's unit: its package under colorize_core, or its own name for a top-level module."""
    rel = path.relative_to(LIBRARY)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> Iterator[str]:
    """Every module `path` imports (absolute names; `from colorize_core import x` gives
    colorize_core.x), wherever in the file the import is."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "colorize_core":
                yield from (f"colorize_core.{a.name}" for a in node.names)
            else:
                yield node.module


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in LIBRARY.rglob("*.py"):
        if path.parent == LIBRARY and path.stem == "__init__":
            continue
        unit = _unit(path)
        edges = graph.setdefault(unit, set())
        edges.update(m.split(".")[1] for m in _imports(path) if m.startswith("colorize_core."))
        edges.discard(unit)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_library_s_packages_form_no_cycle() -> None:
    assert _cycle(_graph()) is None


def test_the_lower_layers_import_only_what_lies_below_them() -> None:
    graph = _graph()
    for unit, allowed in MAY_IMPORT.items():
        assert graph[unit] <= allowed, f"{unit} imports {sorted(graph[unit] - allowed)}"


def test_the_library_never_imports_prefect_or_the_flows() -> None:
    for path in LIBRARY.rglob("*.py"):
        outside = {m for m in _imports(path) if m.split(".")[0] in ("prefect", "flows")}
        assert not outside, f"{path.relative_to(LIBRARY.parent)} imports {sorted(outside)}"


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
