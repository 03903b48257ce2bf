"""The platform is an installable package: `pip install -e .` (bin/_bootstrap) makes stacks,
jobs, submit, policies, local, tfjson, examples, the benchmarks (bench) and gpub_runner
importable from anywhere, so no code edits `sys.path` or `PYTHONPATH` to find them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLATFORM_PACKAGES = ("tfjson", "jobs", "stacks", "policies", "local", "submit")
INSTALLED_PACKAGES = (*PLATFORM_PACKAGES, "examples", "bench")
# Shell wrappers set PYTHONPATH for the interpreter they start; none may.
PYTHONPATH_RE = re.compile(r"\bPYTHONPATH=")


def _edits_sys_path(path: Path) -> list[int]:
    """Lines of `path` that assign to or call a method of `sys.path`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t.value if isinstance(t, ast.Subscript) else t for t in targets), None)
        if (isinstance(target, ast.Attribute) and target.attr == "path"
                and isinstance(target.value, ast.Name) and target.value.id == "sys"):
            lines.append(node.lineno)
    return sorted(lines)


def _sets_pythonpath(path: Path) -> list[int]:
    """Lines of `path` that give a (child) environment a PYTHONPATH: `env["PYTHONPATH"] = ...`,
    `{"PYTHONPATH": ...}`, `dict(PYTHONPATH=...)` / `env.update(PYTHONPATH=...)`,
    `os.environ.setdefault("PYTHONPATH", ...)`, `os.putenv("PYTHONPATH", ...)`."""
    def named(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value == "PYTHONPATH"

    def sets(node: ast.AST) -> bool:
        if isinstance(node, ast.Subscript):
            return isinstance(node.ctx, ast.Store) and named(node.slice)
        if isinstance(node, ast.Dict):
            return any(map(named, node.keys))
        if not isinstance(node, ast.Call):
            return False
        setter = isinstance(node.func, ast.Attribute) and node.func.attr in (
            "setdefault", "putenv", "__setitem__")
        return (any(k.arg == "PYTHONPATH" for k in node.keywords)
                or (setter and bool(node.args) and named(node.args[0])))

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sorted(n.lineno for n in ast.walk(tree) if isinstance(n, ast.expr) and sets(n))


def _bin_python() -> list[Path]:
    """The Python files of bin/ (bin/lib's helpers)."""
    return sorted(p for p in (REPO / "bin").rglob("*.py") if p.is_file())


def test_the_install_lists_every_platform_package() -> None:
    conf = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = conf["tool"]["setuptools"]["packages"]["find"]["include"]
    for pkg in INSTALLED_PACKAGES:
        assert (REPO / pkg / "__init__.py").is_file(), pkg
        assert f"{pkg}*" in include, f"pyproject.toml does not install {pkg}"


def test_no_platform_module_benchmark_or_test_edits_sys_path() -> None:
    """Every installed package (policies/checks, bench/ included), bin/'s Python, the tests."""
    files = [p for pkg in INSTALLED_PACKAGES for p in (REPO / pkg).rglob("*.py")]
    files += [*(REPO / "tests").glob("*.py"), *(REPO / "tests" / "_helpers").glob("*.py"),
              *_bin_python(), REPO / "main.py"]
    bad = [f"{p.relative_to(REPO)}:{n}" for p in files for n in _edits_sys_path(p)]
    assert not bad, "sys.path edited at " + ", ".join(bad)


def test_the_finder_notices_a_sys_path_edit(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import sys\nsys.path.insert(0, 'a')\nsys.path[:0] = ['b']\n")
    assert _edits_sys_path(sample) == [2, 3]


def test_no_benchmark_rule_or_bin_helper_sets_pythonpath() -> None:
    """The benchmarks start their subprocesses (`python -m bench.synth`, the runner with
    `bench.noop_handler`), checkov loads policies/checks, bin/lib serves the wrappers: all
    through the install, none by handing a child a PYTHONPATH."""
    files = [*(REPO / "bench").rglob("*.py"), *(REPO / "policies" / "checks").rglob("*.py"),
             *_bin_python()]
    bad = [f"{p.relative_to(REPO)}:{n}" for p in files for n in _sets_pythonpath(p)]
    assert not bad, "PYTHONPATH set at " + ", ".join(bad)


def test_the_finder_notices_a_pythonpath(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import os\nenv = dict(os.environ)\nenv['PYTHONPATH'] = 'a'\n"
                      "b = {'PYTHONPATH': 'b'}\nenv.update(PYTHONPATH='c')\n"
                      "os.environ.setdefault('PYTHONPATH', 'd')\nenv.pop('PYTHONPATH', None)\n")
    assert _sets_pythonpath(sample) == [3, 4, 5, 6]


def test_no_wrapper_sets_pythonpath() -> None:
    wrappers = [p for p in (REPO / "bin").rglob("*") if p.is_file()]
    bad = [f"{p.relative_to(REPO / 'bin')}:{i}" for p in wrappers
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           if PYTHONPATH_RE.search(line) and not line.lstrip().startswith("#")]
    assert not bad, "PYTHONPATH set in bin/: " + ", ".join(bad)


def test_checkov_loads_the_rule_files_without_a_path_edit(tmp_path: Path) -> None:
    """checkov execs each file of policies/checks as a top-level module by its path; from a
    directory outside the checkout, with the cwd off sys.path (-P) and PYTHONPATH ignored (-E),
    the rules' `policies` imports resolve through the install alone."""
    code = (
        "import importlib.util, sys\n"
        "for path in sys.argv[1:]:\n"
        "    spec = importlib.util.spec_from_file_location(path.rsplit('/', 1)[-1][:-3], path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "import gpub_runner, policies, tfjson\n"
        "print(policies.__file__)\n"
    )
    files = sorted(str(p) for p in (REPO / "policies" / "checks").glob("gpub_*.py"))
    proc = subprocess.run([sys.executable, "-P", "-E", "-c", code, *files], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(REPO / "policies" / "__init__.py")  # this checkout's
