"""The package's shape: no import cycles (imports inside functions included), every emoflow
import names something that exists, no module over 400 lines, no private names across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "emoflow"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (definitions, assignments, imports)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def imports_of(module: str, path: Path | None = None) -> list[tuple[int, str, str | None]]:
    """Every ``emoflow`` import of a module (or of the file ``path``), at any depth:
    (line, target module, name)."""
    path = path or MODULES[module]
    text = path.read_text("utf-8")
    if path.suffix == ".smk":  # Snakemake syntax: keep its one-line emoflow imports only
        keep = ("from emoflow", "import emoflow")
        text = "\n".join(x if x.startswith(keep) else "" for x in text.splitlines())
    tree = ast.parse(text)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, None) for a in node.names if a.name.startswith("emoflow")
            ]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.split(".")[0] != "emoflow":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append(
                    (node.lineno, sub, None) if sub in MODULES else (node.lineno, base, a.name)
                )
    return found


def import_graph() -> dict[str, set[str]]:
    return {m: {t for _, t, _ in imports_of(m) if t != m} for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_including_imports_inside_functions() -> None:
    graph = import_graph()
    assert sum(len(v) for v in graph.values()) > 200  # the walk sees the real imports
    assert cycles(graph) == []


def test_every_emoflow_import_names_something_that_exists() -> None:
    """In the package, the tests, the benchmarks and the workflow's helper code."""
    names = {m: top_level_names(ast.parse(p.read_text("utf-8"))) for m, p in MODULES.items()}
    root = SRC.parent
    files: dict[str, Path] = dict(MODULES)
    for folder in ("tests", "bench"):
        files |= {str(p.relative_to(root)): p for p in sorted((root / folder).rglob("*.py"))}
    files |= {str(p.relative_to(root)): p for p in sorted((root / "workflow").rglob("*.smk"))}
    missing = [
        f"{module}:{line} {target}.{name}" if name else f"{module}:{line} {target}"
        for module, path in files.items()
        for line, target, name in imports_of(module, path)
        if target not in MODULES or (name is not None and name not in names[target])
    ]
    assert len(files) > len(MODULES) + 30
    assert missing == []


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{module}:{line} {target}.{name}"
        for module in MODULES
        for line, target, name in imports_of(module)
        if name and name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    lines = MODULES[module].read_text("utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES})"
