"""The package's layout, as the README draws it: the layers of `fsvid` import downward only,
no import circle between modules (imports inside functions count), and no module or function
too long to hold in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fsvid"

#: Top-level parts of fsvid, by row of the README's picture: a part may import only from rows above its own.
LAYERS = [
    {"files", "paths"},
    {"data", "backbones", "heads"},
    {"config", "losses"},
    {"prepare", "features", "convert"},
    {"models"},
    {"engine"},
    {"demo"},
    {"experiments", "notebooks"},
    {"notebook_plots"},
    {"cli"},
    {"__main__"},
]
MAX_MODULE_LINES = 900
MAX_FUNCTION_LINES = 130


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("fsvid",) + path.relative_to(PACKAGE).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The fsvid modules a file imports anywhere in it (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name in known}


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "fsvid"


def test_every_part_has_a_layer() -> None:
    placed = set().union(*LAYERS) | {"fsvid", "__init__"}
    assert {part(m) for m in modules()} <= placed, "add new parts of fsvid to LAYERS and to the README's picture"


def test_parts_import_downward_only() -> None:
    row = {name: i for i, names in enumerate(LAYERS) for name in names}
    known = modules()
    upward = []
    for module, path in known.items():
        source = part(module)
        for target in imported(path, known):
            if part(target) in ("fsvid", source) or part(target) not in row or source not in row:
                continue
            if row[part(target)] >= row[source]:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_circle_between_modules() -> None:
    known = modules()
    graph = {m: {t for t in imported(p, known) if t != m and not m.startswith(t + ".") and not t.startswith(m + ".")}
             for m, p in known.items()}
    circles = []

    def visit(start: str, node: str, trail: tuple[str, ...]) -> None:
        for nxt in graph[node]:
            if nxt == start:
                circles.append(" -> ".join(trail + (start,)))
            elif nxt not in trail and nxt > start:  # each circle found once, from its smallest module
                visit(start, nxt, trail + (nxt,))

    for module in sorted(graph):
        visit(module, module, (module,))
    assert not circles, "import circles:\n" + "\n".join(circles[:10])


@pytest.mark.parametrize("module", sorted(modules()))
def test_module_and_function_lengths(module: str) -> None:
    path = modules()[module]
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{path}: {len(source.splitlines())} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_method_math_lives_in_the_heads() -> None:
    """The scoring of the four methods (their precomputed forms included) is defined only under fsvid/heads."""
    math_names = {"PrecomputedPrototypes", "PrecomputedTRX", "PrecomputedSTRM", "tuple_distance_logits",
                  "project_video_tuples", "TemporalCrossTransformer", "QueryClassSimilarity", "MetaLearner"}
    outside = []
    for module, path in modules().items():
        if part(module) == "heads":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in math_names:
                outside.append(f"{module}.{node.name}")
    assert not outside, f"method math defined outside fsvid/heads: {outside}"
