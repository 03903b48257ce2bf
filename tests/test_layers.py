"""The package import graph: no cycles between modules, and layers only import downwards.

Function-local imports count too: a cycle hidden inside a function is still a cycle.
Layers, lowest first: `jobs` (the job model) and `tfjson` (the one Terraform-JSON reader, which
imports no project package) <- `stacks` (infrastructure, settings) <- `policies`, `local`,
`submit` <- `examples` <- `bench` (the benchmarks and the fakes they share with the tests,
which nothing of the platform imports). `jobs` never imports `stacks`, `submit`, `local` or
`policies`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("tfjson", "jobs", "stacks", "policies", "local", "submit", "examples", "bench")
# What each package may import from the others (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "tfjson": set(),
    "jobs": set(),
    "stacks": {"jobs", "tfjson"},
    "policies": {"jobs", "stacks", "tfjson"},
    "local": {"jobs", "stacks", "tfjson"},
    "submit": {"jobs", "stacks", "local", "policies", "tfjson"},
    "examples": {"jobs", "stacks", "local", "submit", "policies", "tfjson"},
    "bench": {"jobs", "stacks", "local", "submit", "policies", "tfjson", "examples"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules `module` imports (absolute and relative, anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            # The longest known module that prefixes the imported name.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(p, m, known) for m, p in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    # A package importing its own submodules from __init__ is the normal re-export, not a
    # cycle; only module-to-module edges between non-package modules and packages count.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in _graph().items()}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("package", PACKAGES)
def test_layers_import_downwards(package: str) -> None:
    bad = sorted(
        f"{m} imports {d}"
        for m, deps in _graph().items()
        if m.split(".")[0] == package
        for d in deps
        if d.split(".")[0] != package and d.split(".")[0] not in ALLOWED[package]
    )
    assert not bad, "\n".join(bad)


def test_cycle_finder_notices_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
