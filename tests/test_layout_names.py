"""One home for each tenancy name: no platform module writes a tenancy prefix or suffix
(`run-`, `client-`, `-batch-data`, `inputs/`, `outputs/`, `-sub`, `_READY`) as a literal;
they come from stacks/layout.py (`EnvironmentSettings.layout`, the module's constants).

String constants are read from the syntax tree (docstrings and comments do not count; f-string
parts do), so `f"run-{client}"`, `"gs://" + b + "/inputs/"` and a workflow expression
`'${"run-" + client}'` are found, and "run-time" is not. PENDING lists the modules still to
move, with who moves them; the integrator empties it, and a listed module that no longer has a
literal fails too (take it off the list).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYOUT = REPO / "stacks" / "layout.py"
PACKAGES = ("tfjson", "jobs", "stacks", "policies", "local", "submit", "examples")
# A tenancy name built from a literal: an identity prefix right before the client (end of a
# constant part, or quoted inside a workflow expression), a bucket or subscription suffix right
# after an interpolated name, an object prefix as a path segment, the old batch marker.
LITERALS = re.compile(
    r"""(?<![A-Za-z0-9_-])(?:run|client)-(?=$|["'])"""  # f"run-{c}", '"client-" + c'
    r"|^-batch-data|^-sub(?![a-z])|[}\"']-sub(?![a-z])"  # f"{p}-batch-data", f"{t}-sub"
    r"|(?<![A-Za-z0-9_.-])(?:inputs|outputs)/"  # "inputs/", f"gs://{b}/outputs/{j}/"
    r"|_READY"
)
# module -> who moves its literals to stacks/layout.py (the integrator empties this table).
PENDING: dict[str, str] = {}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)):
            found.add(id(body[0].value))
    return found


def literals_in(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every tenancy-name literal in the string constants of `source`."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return sorted(
        (node.lineno, m.group(0))
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        for m in LITERALS.finditer(node.value)
    )


def _modules() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    return [p for p in [*files, REPO / "main.py"] if p != LAYOUT]


def test_no_module_writes_a_tenancy_name_literal() -> None:
    found = {}
    for path in _modules():
        rel = str(path.relative_to(REPO))
        hits = literals_in(path.read_text(encoding="utf-8"))
        if hits and rel not in PENDING:
            found[rel] = hits
    assert not found, "use stacks/layout.py names instead of literals: " + "; ".join(
        f"{rel} {hits[:4]}" for rel, hits in found.items())


def test_the_pending_list_holds_only_modules_with_literals() -> None:
    done = [rel for rel in PENDING
            if not (REPO / rel).is_file() or not literals_in((REPO / rel).read_text("utf-8"))]
    assert not done, f"no literal left in {done}: take them off PENDING"


@pytest.mark.parametrize(("source", "expected"), [
    ('x = f"run-{client}"', ["run-"]),
    ('x = f"client-{c}@{p}"', ["client-"]),
    ("x = '${\"run-\" + client + domain}'", ["run-"]),
    ('x = f"{project}-batch-data"', ["-batch-data"]),
    ('x = f"{topic}-sub"', ["-sub"]),
    ('x = "projects/p/subscriptions/" + t + "-sub"', ["-sub"]),
    ('x = f"gs://{b}/inputs/{job}/"', ["inputs/"]),
    ('x = "outputs/"', ["outputs/"]),
    ('x = "inputs/_READY"', ["_READY", "inputs/"]),
])
def test_the_finder_sees_each_kind_of_literal(source: str, expected: list[str]) -> None:
    assert sorted(lit for _, lit in literals_in(source)) == sorted(expected)


@pytest.mark.parametrize("source", [
    '"""Docstring: run-<client>, inputs/<job>/ and the _READY marker."""',
    'x = "check the run-time identity"',
    'x = {"run-key": 1, "run-identities": 2}',
    'x = "-subnet"',
    'x = "my_inputs/ and .outputs/ and fixed-inputs/"',
    'x = "pre-client-x"',
])
def test_the_finder_ignores_what_is_not_a_tenancy_name(source: str) -> None:
    assert literals_in(source) == []
