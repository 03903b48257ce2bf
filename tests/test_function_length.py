"""Size limits (issue 25): no function or method over 60 lines but a declarative step list, no
module over 400 lines, in the repository's own Python (tests excepted).

The exceptions are the tables of docs/contracts.md, "Size limits": "Long functions
(declarative step lists)" (module, function, lines, why) and "Long modules (to split)"
(module, lines, why). A long function or module missing from its table fails, and so does a
row that no longer needs to be there (its function or module is gone or back under the
limit), so the tables stay the true list. The `lines` column is what the row's author
measured; the test reads only the names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = REPO / "docs" / "contracts.md"
FUNCTION_MAX = 60
MODULE_MAX = 400
PACKAGES = ("stacks", "jobs", "submit", "policies", "local", "tfjson", "bench", "examples")
FUNCTIONS_TABLE = "Long functions (declarative step lists)"
MODULES_TABLE = "Long modules (to split)"


def sources() -> list[Path]:
    """The modules the limits cover: the packages, every image's src/, bin/'s Python (by
    suffix or shebang) and main.py."""
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    files += (REPO / "images").glob("*/src/**/*.py")
    for path in (REPO / "bin").rglob("*"):
        if path.is_file() and (path.suffix == ".py" or _python_script(path)):
            files.append(path)
    files.append(REPO / "main.py")
    return sorted(set(files))


def _python_script(path: Path) -> bool:
    with path.open("rb") as fh:
        first = fh.readline(200)
    return first.startswith(b"#!") and b"python" in first


def functions(path: Path) -> dict[str, int]:
    """Qualified name (`Class.method`, `outer.inner`) -> lines, from `def` to its last line."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                out[name] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def table(heading: str, text: str | None = None) -> list[list[str]]:
    """The rows (cells without backticks) of the first table under the heading `heading` of
    docs/contracts.md."""
    text = CONTRACTS.read_text(encoding="utf-8") if text is None else text
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith("#") and line.lstrip("#").strip() == heading]
    assert starts, f"docs/contracts.md has no heading {heading!r}"
    rows: list[list[str]] = []
    for line in lines[starts[0] + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) >= 2 and re.fullmatch(r"[-: |]+", "|".join(rows[1])), \
        f"docs/contracts.md {heading!r}: no table"
    return rows[2:]


def long_functions() -> dict[tuple[str, str], int]:
    return {(_rel(p), name): n for p in sources() for name, n in functions(p).items()
            if n > FUNCTION_MAX}


def long_modules() -> dict[str, int]:
    sizes = {_rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in sources()}
    return {m: n for m, n in sizes.items() if n > MODULE_MAX}


def test_every_long_function_is_a_listed_declarative_list() -> None:
    listed = {(row[0], row[1]) for row in table(FUNCTIONS_TABLE)}
    found = long_functions()
    unlisted = sorted(f"{m} {f} ({n} lines)" for (m, f), n in found.items()
                      if (m, f) not in listed)
    assert not unlisted, (
        f"functions over {FUNCTION_MAX} lines: split them, or (a declarative step list) add "
        f"them to docs/contracts.md {FUNCTIONS_TABLE!r}: " + "; ".join(unlisted))
    stale = sorted(f"{m} {f}" for m, f in listed - set(found))
    assert not stale, (f"docs/contracts.md {FUNCTIONS_TABLE!r} lists what is gone or back "
                       f"under {FUNCTION_MAX} lines: remove " + "; ".join(stale))


def test_no_module_is_over_400_lines_unless_listed_to_split() -> None:
    listed = {row[0] for row in table(MODULES_TABLE)}
    found = long_modules()
    unlisted = sorted(f"{m} ({n} lines)" for m, n in found.items() if m not in listed)
    assert not unlisted, f"modules over {MODULE_MAX} lines: split them: " + "; ".join(unlisted)
    stale = sorted(listed - set(found))
    assert not stale, (f"docs/contracts.md {MODULES_TABLE!r} lists what is gone or back under "
                       f"{MODULE_MAX} lines: remove " + "; ".join(stale))


def test_every_listed_row_says_why() -> None:
    for heading, width in ((FUNCTIONS_TABLE, 4), (MODULES_TABLE, 3)):
        for row in table(heading):
            assert len(row) == width and all(row), f"{heading}: incomplete row {row}"


def test_the_measures_see_methods_nested_functions_and_the_table(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("class A:\n    def m(self):\n        def inner():\n            pass\n"
                      "        return inner\n\n\nasync def f():\n    pass\n")
    assert functions(sample) == {"A.m": 4, "A.m.inner": 2, "f": 2}
    doc = ("## Long functions (declarative step lists)\n\ntext\n\n"
           "| module | function | lines | why |\n| --- | --- | --- | --- |\n"
           "| `a.py` | `A.m` | 70 | steps |\n\n## Next\n| x |\n| --- |\n| y |\n")
    assert table(FUNCTIONS_TABLE, doc) == [["a.py", "A.m", "70", "steps"]]
    with pytest.raises(AssertionError, match="no heading"):
        table(MODULES_TABLE, doc)


def test_the_sources_cover_the_packages_images_bin_and_main() -> None:
    names = {_rel(p) for p in sources()}
    assert "main.py" in names and "bin/lib/gcp_preflight.py" in names
    assert "images/runner/src/gpub_runner/contract.py" in names
    assert {n.split("/")[0] for n in names} >= {*PACKAGES, "images", "bin"}
    assert not any(n.startswith(("tests/", ".venv/", "node_modules/", "cdktf.out/"))
                   for n in names)
