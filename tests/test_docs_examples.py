"""Every ```python and shell block in README.md, docs/*.md and images/README.md runs as-is
from the repository root, or says why it cannot.

Python: a block whose first line is `# doc: no-run` is skipped (sketches, snippets that need
credentials, servers or more than a few seconds). Each block runs in a fresh interpreter,
`.venv/bin/python -c <block>` with the repository root as the working directory.

Shell (```bash, ```sh, ```shell): a block whose first line is `# doc: no-run: <reason>` is
skipped, and the reason is required. Every other block runs with `bash -euo pipefail` on the
local backend: a synth made by `main.py` (GPUB_SYNTH_DIR) and a temporary backend root
(GPUB_LOCAL_ROOT), so a block may use `bin/submit ... --local` freely.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_RUN = "# doc: no-run"
NO_RUN_SHELL = re.compile(r"^# doc: no-run: \S")  # the reason is required
TIMEOUT_S = 120
SHELL_TIMEOUT_S = 300
# An opening fence (up to 3 spaces of indent) naming python, up to the matching closing fence.
FENCE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,})[ \t]*python[ \t]*\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
SHELL_FENCE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,})[ \t]*(?:bash|sh|shell)[ \t]*\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def doc_pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             ROOT / "images" / "README.md"]
    return [p for p in pages if p.is_file()]


def python_blocks(text: str, fence: re.Pattern[str] = FENCE) -> list[tuple[int, str]]:
    """(1-based line of the opening fence, code) of every ```python block."""
    blocks = []
    for m in fence.finditer(text):
        indent = len(m["indent"])
        lines = [line[indent:] if line[:indent].isspace() else line
                 for line in m["body"].splitlines()]  # fmt: skip
        blocks.append((text.count("\n", 0, m.start()) + 1, "\n".join(lines) + "\n"))
    return blocks


def collect() -> list[Any]:
    params = []
    for page in doc_pages():
        rel = page.relative_to(ROOT).as_posix()
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            first = code.lstrip("\n").split("\n", 1)[0].strip()
            if first == NO_RUN:
                continue
            params.append(pytest.param(rel, line, code, id=f"{rel}:{line}"))
    return params


def interpreter() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def test_fence_parser() -> None:
    text = "x\n```python\nprint(1)\n```\n\n```bash\nls\n```\n  ```python\n  a = 1\n  ```\n"
    assert python_blocks(text) == [(2, "print(1)\n"), (9, "a = 1\n")]


@pytest.mark.parametrize(("page", "line", "code"), collect())
def test_python_block_runs(page: str, line: int, code: str) -> None:
    try:
        out = subprocess.run(
            [interpreter(), "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{page}:{line}: the block ran over {TIMEOUT_S} s; mark it `{NO_RUN}`")
    assert out.returncode == 0, (
        f"{page}:{line}: the block exited {out.returncode} "
        f"(fix it, or make `{NO_RUN}` its first line)\n{out.stderr[-3000:]}"
    )


# ------------------------------------------------------------------------------ shell


def shell_blocks(text: str) -> list[tuple[int, str]]:
    return python_blocks(text, SHELL_FENCE)


def _first_line(code: str) -> str:
    return code.lstrip("\n").split("\n", 1)[0].strip()


def all_shell_blocks() -> list[tuple[str, int, str]]:
    return [(page.relative_to(ROOT).as_posix(), line, code) for page in doc_pages()
            for line, code in shell_blocks(page.read_text(encoding="utf-8"))]


def test_shell_fence_parser() -> None:
    text = "```bash\nls\n```\n```python\nx = 1\n```\n```sh\n# doc: no-run: why\nrm\n```\n"
    assert shell_blocks(text) == [(1, "ls\n"), (7, "# doc: no-run: why\nrm\n")]


def test_every_shell_block_runs_or_says_why_not() -> None:
    unexplained = [f"{page}:{line}" for page, line, code in all_shell_blocks()
                   if _first_line(code).startswith(NO_RUN)
                   and not NO_RUN_SHELL.match(_first_line(code))]
    assert not unexplained, f"`{NO_RUN}: <reason>` needs its reason: {unexplained}"
    assert any(not _first_line(c).startswith(NO_RUN) for _, _, c in all_shell_blocks()), \
        "no shell block runs at all"


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from local.backend import LocalBackend

    tmp = tmp_path_factory.mktemp("docs-shell")
    synth = subprocess.run([interpreter(), str(ROOT / "main.py")], cwd=tmp, text=True,
                           capture_output=True, timeout=SHELL_TIMEOUT_S,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert synth.returncode == 0, synth.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST", "GPUB_ENV")}
    env.update(GPUB_SYNTH_DIR=str(tmp / "cdktf.out"), GPUB_LOCAL_ROOT=str(tmp / "local"),
               GPUB_SUBMITTER="docs-test")
    try:
        yield env
    finally:
        LocalBackend(root=tmp / "local").stop()


def collect_shell() -> list[Any]:
    return [pytest.param(page, line, code, id=f"{page}:{line}", marks=pytest.mark.slow)
            for page, line, code in all_shell_blocks()
            if not _first_line(code).startswith(NO_RUN)]


@pytest.mark.parametrize(("page", "line", "code"), collect_shell())
def test_shell_block_runs(page: str, line: int, code: str, local_env: dict[str, str]) -> None:
    try:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=ROOT, env=local_env,
                             capture_output=True, text=True, timeout=SHELL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{page}:{line}: the block ran over {SHELL_TIMEOUT_S} s")
    assert out.returncode == 0, (
        f"{page}:{line}: the block exited {out.returncode} (fix it, or make "
        f"`{NO_RUN}: <reason>` its first line)\n{out.stderr[-3000:]}")
