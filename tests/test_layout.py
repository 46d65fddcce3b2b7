"""The package's shape, as docs/ARCHITECTURE.md draws it: layers that only import downwards, the
two halves (drain, ingest) apart, no import circles, and no module holding two jobs' worth of
lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "s3drain"
MAX_LINES = 400

# Lower numbers are lower layers; a module may import only from its own group or a lower layer.
LAYERS = {
    "version": 0,
    "errors": 0,
    "units": 0,
    "records": 0,
    "output": 0,
    "checksums": 0,
    "collector": 0,
    "config": 1,
    "s3": 2,
    "local": 2,
    "drain": 3,
    "ingest": 3,
    "events": 3,
    "watch": 4,  # joins events/ and drain/ (the watch loop)
    "api": 5,
    "cli": 5,
    "__init__": 6,
    "__main__": 6,
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield ".".join(parts), path


def _group(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("s3drain"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("s3drain"))
    return found


def test_every_group_has_a_layer() -> None:
    assert {_group(m) for m, _ in _modules()} <= set(LAYERS)


def test_imports_only_point_down_and_the_halves_stay_apart() -> None:
    wrong = []
    for module, path in _modules():
        for target in _imports(path):
            source_group, target_group = _group(module), _group(target)
            if source_group == target_group:
                continue
            if LAYERS[target_group] >= LAYERS[source_group]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_import_circles() -> None:
    graph = {module: _imports(path) for module, path in _modules()}
    graph = {m: {t for t in targets if t in graph} for m, targets in graph.items()}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            raise AssertionError(" -> ".join([*trail[trail.index(module) :], module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_no_module_holds_two_jobs_worth_of_lines() -> None:
    long = {m: n for m, path in _modules() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
